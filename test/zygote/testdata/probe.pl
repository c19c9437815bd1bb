#!/usr/bin/perl -w
# Prints what a CGI script can observe of its process, as JSON, so that
# exec mode and warm mode can be compared field by field.
use strict;
use Cwd ();
use Digest::SHA ();
use JSON::PP ();
use POSIX ();
use FindBin ();
use lib $FindBin::Bin;
use PerlProbeMod;

our $counter;
$counter++;
my $file_lexical = 0;
$file_lexical++;
sub lexical_seen { return $file_lexical }
push @PerlProbeMod::hits, 1;
my %q = map { split /=/, $_, 2 } grep { /=/ } split /&/, ($ENV{QUERY_STRING} || '');
if ($q{leave}) {
    $ENV{LEFT_BY_EARLIER_REQUEST} = 1;
    push @PerlProbeMod::hits, 1, 1;
    $main::left_behind = 1;
}
binmode STDIN;
my $body = do { local $/; <STDIN> };
$body = '' unless defined $body;
my $warned = '';
{
    local $SIG{__WARN__} = sub { $warned = $_[0] };
    my $undef;
    my $x = "a" . $undef;    # -w: "Use of uninitialized value"
}
my @fds;
if (opendir(my $d, '/proc/self/fd')) {
    my $own = fileno($d);
    @fds = sort { $a <=> $b } grep { /^\d+$/ && (!defined $own || $_ != $own) } readdir $d;
    closedir $d;
}
my @data = <DATA>;
no strict 'refs';
my @subs = sort grep { defined &{"main::$_"} } keys %main::;
use strict 'refs';
my %out = (
    file         => __FILE__,
    line         => __LINE__,
    package      => __PACKAGE__,
    dollar0      => $0,
    argv         => [@ARGV],
    cwd          => Cwd::getcwd(),
    findbin      => $FindBin::Bin,
    counter      => $counter,
    lexical      => lexical_seen(),
    module_hits  => scalar(@PerlProbeMod::hits),
    module_load  => $PerlProbeMod::loaded,
    left_behind  => defined($main::left_behind) ? 1 : 0,
    env          => {%ENV},
    subprocess_env => [sort split /\n/, `env`],
    body_sha     => Digest::SHA::sha256_hex($body),
    body_len     => length($body),
    tz           => POSIX::strftime('%Z', localtime(0)),
    locale       => POSIX::setlocale(POSIX::LC_CTYPE()),
    fds          => [@fds],
    inc          => [sort keys %INC],
    subs         => [@subs],
    data         => [@data],
    warnings     => $^W,
    warned       => $warned =~ /uninitialized/ ? 1 : 0,
    pgrp_is_pid  => getpgrp() == $$ ? 1 : 0,
    pid_is_real  => (readlink('/proc/self') || '') eq $$ ? 1 : 0,
    start_recent => (time - $^T) < 10 ? 1 : 0,
    autoflush    => $|,
    errno        => $! + 0 ? 'set' : 'clear',
    random       => rand(),
);
print "Content-Type: application/json\n\n";
print JSON::PP->new->canonical->encode(\%out), "\n";
my $how = $q{exit} || '';
if ($q{end}) {
    eval 'END { print "END ran\n" } 1' or die $@;
}
exit($q{code} || 0) if $how eq 'exit';
die "uncaught on purpose\n" if $how eq 'die';
die "with a line" if $how eq 'dieline';
if ($how eq 'errno') {
    $! = 5;
    die "errno 5\n";
}
END { print "script END\n" if $q{end} }
__END__
data line one
data line two
