#!/usr/bin/perl -T
use strict;
use POSIX ();
print "Content-Type: text/plain\n\ntainted ok\n";
