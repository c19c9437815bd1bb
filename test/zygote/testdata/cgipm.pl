#!/usr/bin/perl
use strict;
use warnings;
use CGI;
my $q = CGI->new;
print $q->header(-type => 'text/plain', -charset => 'utf-8');
print "name=", ($q->param('name') // ''), "\n";
print "method=", $q->request_method, "\n";
print "posted=", ($q->param('posted') // ''), "\n";
sub greeting { return "hello " . ($q->param('name') // 'nobody') }
print greeting(), "\n";
