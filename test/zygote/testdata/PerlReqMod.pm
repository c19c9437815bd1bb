package PerlReqMod;
# Reads a request variable while loaded: it cannot be preloaded.
our $MODE = $ENV{HTTP_X_MODE} || 'none';
1;
