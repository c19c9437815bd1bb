#!/usr/bin/perl
use strict;
use POSIX ();
my $mode;
BEGIN { $mode = $ENV{HTTP_X_MODE} || 'none' }
print "Content-Type: text/plain\n\nmode $mode\n";
