#!/usr/bin/perl
# form.pl: a classic Perl CGI.pm form. GET shows the form, POST echoes the submitted
# fields back (HTML-escaped). Needs CGI.pm, which is no longer in core Perl: on
# Debian/Ubuntu install the package libcgi-pm-perl.
use strict;
use warnings;
use CGI qw(-utf8);

my $q = CGI->new;
print $q->header(-type => 'text/html', -charset => 'utf-8');
print $q->start_html('form.pl');
if ($q->request_method eq 'POST') {
    print $q->h1('You sent');
    print "<dl>\n";
    for my $name ($q->param) {
        for my $value ($q->multi_param($name)) {
            printf "<dt>%s</dt><dd>%s</dd>\n", $q->escapeHTML($name), $q->escapeHTML($value);
        }
    }
    print "</dl>\n";
} else {
    print $q->h1('Tell us');
    print $q->start_form(-method => 'POST');
    print 'Name: ', $q->textfield(-name => 'name'), $q->br;
    print 'Colour: ', $q->popup_menu(-name => 'colour', -values => [qw(red green blue)]), $q->br;
    print $q->submit(-value => 'Send');
    print $q->end_form;
}
print $q->end_html, "\n";
