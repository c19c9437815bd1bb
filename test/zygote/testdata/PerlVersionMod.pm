package PerlVersionMod;
our $VERSION = "m1";
1;
