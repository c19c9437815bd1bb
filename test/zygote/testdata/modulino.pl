#!/usr/bin/perl
use strict;
use POSIX ();
sub main { print "Content-Type: text/plain\n\nmodulino ran\n" }
main() unless caller;
1;
