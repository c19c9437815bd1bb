package PerlProbeMod;
# State a module keeps: each request must see it as freshly loaded.
our @hits;
our $loaded = 0;
$loaded++;
END { print "module END\n" if ($ENV{QUERY_STRING} || '') =~ /end=1/ }
1;
