#!/usr/bin/perl
use strict;
use threads;
print "Content-Type: text/plain\n\nthreads ok\n";
