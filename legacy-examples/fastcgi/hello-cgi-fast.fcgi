#!/usr/bin/perl
# hello-cgi-fast.fcgi: a Perl FastCGI program with CGI::Fast (Debian:
# libcgi-fast-perl), as many legacy ones are written. Served warm
#
#   cgibridge serve --root DIR --fastcgi 'hello-cgi-fast.fcgi'
#
# one process answers request after request: the pid stays, the count goes
# up, and what the loop set up once (here $started) is not paid per request.
# Run with no listening socket on fd 0, CGI::Fast serves one request as plain
# CGI, so the same file works in exec mode too.
use strict;
use warnings;
use CGI::Fast;

my $started = time;
my $served  = 0;
while (my $q = CGI::Fast->new) {
    $served++;
    my $name = $q->param('name') // 'world';
    $name =~ s/[^\w .-]//g;
    print $q->header(-type => 'text/plain', -charset => 'utf-8');
    print "hello $name from pid $$, request $served, up since $started\n";
}
