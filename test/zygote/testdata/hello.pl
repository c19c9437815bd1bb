#!/usr/bin/perl
use strict;
use POSIX ();
print "Content-Type: text/plain\n\nhello version=v1 pid=$$\n";
