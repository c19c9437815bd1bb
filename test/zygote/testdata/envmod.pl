#!/usr/bin/perl
use strict;
use FindBin;
use lib $FindBin::Bin;
use PerlEnvMod;
print "Content-Type: text/plain\n\nmode $PerlEnvMod::MODE\n";
