#!/usr/bin/perl
use strict;
use FindBin;
use lib $FindBin::Bin;
use PerlFdMod;
print "Content-Type: text/plain\n\nfd ok\n";
