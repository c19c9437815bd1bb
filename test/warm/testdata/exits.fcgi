#!/usr/bin/perl
# exits.fcgi: a CGI::Fast program that answers every request in full, and
# after every third one exits with the status ?code=N asks for (0 if none),
# as programs that recycle themselves do: gitweb after 100 requests (0),
# munin-cgi-html after a fatal error (1).
use strict;
use warnings;
use CGI::Fast;

my $served = 0;
while (my $q = CGI::Fast->new) {
    $served++;
    my $code = $q->param('code') // 0;
    print "Content-Type: text/plain\r\n\r\n";
    print "pid=$$ request=$served\n";
    exit($code) if $served % 3 == 0;
}
