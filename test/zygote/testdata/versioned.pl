#!/usr/bin/perl
use strict;
use FindBin;
use lib $FindBin::Bin;
use PerlVersionMod;
print "Content-Type: text/plain\n\n";
print "script=s1 module=$PerlVersionMod::VERSION\n";
