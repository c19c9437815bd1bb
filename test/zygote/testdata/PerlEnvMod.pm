package PerlEnvMod;
# Reads a variable of the environment while loaded: a request that sets it
# differently must not get the helper's value.
our $MODE = $ENV{APP_MODE} || 'none';
1;
