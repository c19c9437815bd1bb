#!/usr/bin/perl
use POSIX ();
BEGIN { print "Content-Type: text/plain\n\nbye\n"; exit 0 }
print "never\n";
