#!/usr/bin/perl
use strict;
use FindBin;
use lib $FindBin::Bin;
use PerlReqMod;
print "Content-Type: text/plain\n\nmode $PerlReqMod::MODE\n";
