# cgibridge's zygote helper for Perl CGI scripts (see protocol.go).
#
# Started as INTERPRETER [FLAGS] -e <this source> SCRIPT, it compiles the
# script in the helper (which loads the modules its `use` lines name, and
# those its top-level `require Module;` lines name are loaded after), and
# keeps spare forked children. A spare takes one request: its stdin, stdout
# and stderr, its cwd, argv and environment; then it runs the compiled
# script as a fresh `perl SCRIPT` would, and exits through perl's own exit
# (END blocks, global destruction, stdio flushed). The parent only forks
# spares and waits for children (no signal handlers: they cost lost
# requests and deadlocks in the prototypes), reporting each request child's
# exit on the control pipe.
#
# The helper loads no module itself (not even strict), so the children's
# %INC holds what the script loaded and nothing else. Core Perl has no
# recvmsg: the descriptors are received with syscall(SYS_recvmsg) on a
# packed msghdr, so this helper runs on x86_64 Linux only and declines
# (a C line) elsewhere.
#
# Declined (the script runs in exec mode, the reason logged once): taint
# mode and other #! switches than -w, a modulino (`caller` in the script:
# it is the helper's frame, never empty), threads, a BEGIN block or `use`
# of the script reading a request variable, a module reading one at load
# (CGI.pm's IIS and PerlEx probes excepted, checked per request), threads
# or files left open by loading, a script that does not compile.

# The helper's subs live in a package of their own: the script's, compiled
# into package main, must not replace them (a script's own `sub run`).
package CGIBridge::Zygote;

# First, before any lexical of the helper exists: the script's code is
# compiled here and must see none of them.
sub cgb_compile { eval $_[0] }

my $SCRIPT = $ARGV[0];
@ARGV = ();

# The arch check comes before any syscall: the numbers are x86_64's.
{
    my $arch = '';
    if (open(my $f, '<', '/proc/sys/kernel/arch')) {
        $arch = <$f>;
        close $f;
        chomp $arch if defined $arch;
    }
    if ($^O ne 'linux' || !defined $arch || $arch ne 'x86_64' || length(pack('p', 'x')) != 8) {
        open(my $ctl, '>&=', 1) or CORE::exit(0);
        syswrite($ctl, "C the Perl helper needs x86_64 Linux (recvmsg by syscall)\n");
        CORE::exit(0);
    }
}

my %SYS = (read => 0, write => 1, close => 3, lseek => 8, pread => 17, dup2 => 33,
    recvmsg => 47, fcntl => 72, prctl => 157, exit_group => 231, accept4 => 288,
    memfd_create => 319, statx => 332, pidfd_open => 434, close_range => 436);
my $F_DUPFD_CLOEXEC = 1030;
my $SOCK_CLOEXEC = 0x80000;
my $MSG_CMSG_CLOEXEC = 0x40000000;
my $MSG_CTRUNC = 0x8;

sub exit_now { syscall($SYS{exit_group}, $_[0] || 0); }

my $BRIDGE_UID = delete $ENV{CGIBRIDGE_ZYGOTE_UID};
my $SPARES = delete $ENV{CGIBRIDGE_ZYGOTE_SPARES};
$SPARES = 2 unless defined $SPARES && $SPARES =~ /^\d+$/;
$SPARES = 1 if $SPARES < 1;
my %START_ENV = %ENV;
my $PARENT = $$;

# The control pipe comes on fd 1; it moves out of the way, and fd 1 becomes
# the helper's log, so a module that prints while loaded cannot garble it.
my $cfd = syscall($SYS{fcntl}, 1, $F_DUPFD_CLOEXEC, 3);
exit_now(0) if $cfd < 0;
open(my $CONTROL, '>&=', $cfd) or exit_now(0);
syscall($SYS{dup2}, 2, 1);

my $REQUEST_VARS = qr/^(?:HTTP_|REQUEST_|QUERY_STRING$|CONTENT_|SCRIPT_|PATH_INFO$|PATH_TRANSLATED$|REMOTE_|SERVER_|GATEWAY_INTERFACE$|DOCUMENT_|REDIRECT_|HTTPS$|AUTH_TYPE$)/;
# Request variables well-known modules read at load, with the values that
# would make them load differently: a request with such a value runs in
# exec mode; any other gets the preloaded state a fresh load would give.
my %KNOWN_READS = (
    'CGI.pm' => { SERVER_SOFTWARE => qr/IIS/, GATEWAY_INTERFACE => qr/^CGI-PerlEx/ },
);
# Read when perl starts, so a request must bring the helper's values.
my $STARTUP_VARS = qr/^(?:PERL|LC_|LANG$|LANGUAGE$)/;

sub control {
    my ($letter, $text) = @_;
    $text =~ s/[\r\n]+/ /g;
    my $line = "$letter $text";
    utf8::encode($line) if utf8::is_utf8($line);
    $line = substr($line, 0, 3999) if length($line) > 3999;
    syswrite($CONTROL, "$line\n");
}

sub decline {
    control('C', $_[0]);
    exit_now(0);
}

# The script's stat signature: dev, inode, size, mtime and ctime in ns.
sub signature {
    my $b = "\0" x 256;
    return '' if syscall($SYS{statx}, -100, $_[0], 0, 0x7ff, $b) < 0;
    my ($ino, $size) = unpack('Q Q', substr($b, 32, 16));
    my ($cs, $cn) = unpack('q L', substr($b, 96, 12));
    my ($ms, $mn) = unpack('q L', substr($b, 112, 12));
    my ($dmaj, $dmin) = unpack('L L', substr($b, 136, 8));
    return join(',', $dmaj, $dmin, $ino, $size, $ms, $mn, $cs, $cn);
}

sub realpath {
    my ($p) = @_;
    $p = "$START_ENV{PWD}/$p" if $p !~ m{^/} && defined $START_ENV{PWD};
    my @todo = grep { length } split m{/}, $p;
    my @done;
    my $hops = 0;
    while (@todo) {
        my $c = shift @todo;
        next if $c eq '.';
        if ($c eq '..') { pop @done; next; }
        my $path = '/' . join('/', @done, $c);
        my $l = readlink($path);
        if (defined $l && $hops++ < 40) {
            @done = () if $l =~ m{^/};
            unshift @todo, grep { length } split m{/}, $l;
            next;
        }
        push @done, $c;
    }
    return '/' . join('/', @done);
}

sub read_source {
    my $f;
    open($f, '<:raw', $SCRIPT) or return (undef, "cannot read the script: $!");
    local $/;
    my $src = <$f>;
    close $f;
    return (defined $src ? $src : '', undef);
}

# What the script is, found statically: its #! switches, where its code
# ends (__END__, __DATA__), the modules its top-level require lines name,
# and why it cannot be warmed, if it cannot.
sub analyse {
    my ($src) = @_;
    my %a = (w => 0, requires => []);
    if ($src =~ /\A#!([^\n]*)/) {
        my $line = $1;
        if ($line !~ /perl/) {
            $a{declined} = 'the #! line names another interpreter than perl';
            return \%a;
        }
        my ($rest) = $line =~ /perl\S*\s*(.*)$/;
        for my $arg (split ' ', defined $rest ? $rest : '') {
            last if $arg !~ /^-/ || $arg eq '--';
            for my $c (split //, substr($arg, 1)) {
                if ($c eq 'w') { $a{w} = 1; next; }
                if ($c eq 'T' || $c eq 't') { $a{declined} = "taint mode (-$c) is not supported warm"; }
                else { $a{declined} = "perl switch -$c on the #! line is not supported warm"; }
                return \%a;
            }
        }
    }
    my $code = $src;
    if ($src =~ /^__(END|DATA)__\b[^\n]*(?:\n|\z)/mg) {
        my ($which, $end, $data) = ($1, $-[0], $+[0]);
        $code = substr($src, 0, $end);
        my $pkg = 'main';
        if ($which eq 'DATA') {
            while ($code =~ /^\s*package\s+([A-Za-z_][\w:]*)\s*[;{]/mg) { $pkg = $1; }
        }
        $a{data} = [$data, $pkg];
    }
    $a{code} = $code;
    $a{utf8} = $code =~ /^\s*use\s+utf8\b/m ? 1 : 0;
    (my $plain = $code) =~ s/^=[a-zA-Z].*?(?:^=cut\b[^\n]*$|\z)//msg;
    $plain =~ s/(?:^|(?<=\s))#[^\n]*//mg;
    if ($plain =~ /\bcaller\b/) {
        $a{declined} = 'the script calls caller (a modulino?): at its top level caller is the helper, never empty';
    } elsif ($plain =~ /^\s*(?:use|require)\s+(?:threads|forks)\b/m) {
        $a{declined} = 'the script uses threads';
    } elsif ($SCRIPT =~ /["\n]/) {
        $a{declined} = 'the script\'s path has a quote or a newline';
    }
    while ($plain =~ /^require\s+([A-Za-z_][\w:]*)\s*;/mg) { push @{ $a{requires} }, $1; }
    return \%a;
}

# Runs $fn with fd 1 and 2 on memory files; returns what was written there
# (compile-time output and warnings, replayed to each request), then $fn's
# result.
sub captured {
    my ($fn) = @_;
    my ($n1, $n2) = ('cgibridge-out', 'cgibridge-err');
    my ($m1, $m2) = (syscall($SYS{memfd_create}, $n1, 1), syscall($SYS{memfd_create}, $n2, 1));
    my ($s1, $s2) = (syscall($SYS{fcntl}, 1, $F_DUPFD_CLOEXEC, 3), syscall($SYS{fcntl}, 2, $F_DUPFD_CLOEXEC, 3));
    if ($m1 < 0 || $m2 < 0 || $s1 < 0 || $s2 < 0) {
        syscall($SYS{close}, $_) for grep { $_ >= 0 } $m1, $m2, $s1, $s2;
        return ('', '', $fn->());
    }
    flush_stdio();
    syscall($SYS{dup2}, $m1, 1);
    syscall($SYS{dup2}, $m2, 2);
    my @r = $fn->();
    flush_stdio();
    syscall($SYS{dup2}, $s1, 1);
    syscall($SYS{dup2}, $s2, 2);
    my @out;
    for my $m ($m1, $m2) {
        my $n = syscall($SYS{lseek}, $m, 0, 2);
        my $buf = "\0" x ($n > 0 ? $n : 0);
        syscall($SYS{pread}, $m, $buf, $n, 0) if $n > 0;
        push @out, $buf;
    }
    syscall($SYS{close}, $_) for $m1, $m2, $s1, $s2;
    return (@out, @r);
}

sub flush_stdio {
    my $old = select(STDOUT);
    my $was = $|;
    $| = 1;
    $| = $was;
    select($old);
}

sub write_fd {
    my ($fd, $data) = @_;
    while (length $data) {
        my $n = syscall($SYS{write}, $fd, $data, length $data);
        return if $n <= 0;
        substr($data, 0, $n, '');
    }
}

# --- the environment of loading --------------------------------------------

# %ENV while the helper compiles the script: remembers what is read (and by
# which file) and what is written.
package CGIBridge::Zygote::Env;
my (@READS, @WRITES);
sub reader {
    for (my $i = 1; ; $i++) {
        my @c = caller($i);
        return '?' unless @c;
        return $c[1] if $c[1] ne '-e' && $c[1] !~ /^\(eval/;
    }
}
sub TIEHASH  { my ($class, $env) = @_; return bless { env => $env }, $class; }
sub FETCH    { my ($s, $k) = @_; push @READS, [reader(), $k, $s->{env}{$k}]; return $s->{env}{$k}; }
sub EXISTS   { my ($s, $k) = @_; push @READS, [reader(), $k, $s->{env}{$k}]; return exists $s->{env}{$k}; }
sub STORE    { my ($s, $k, $v) = @_; push @WRITES, [$k, $v]; $s->{env}{$k} = $v; }
sub DELETE   { my ($s, $k) = @_; push @WRITES, [$k, undef]; return delete $s->{env}{$k}; }
sub CLEAR    { my ($s) = @_; push @WRITES, [undef, undef]; %{ $s->{env} } = (); }
sub FIRSTKEY { my ($s) = @_; push @READS, [reader(), '*', undef]; keys %{ $s->{env} }; return each %{ $s->{env} }; }
sub NEXTKEY  { my ($s) = @_; return each %{ $s->{env} }; }
sub SCALAR   { my ($s) = @_; push @READS, [reader(), '*', undef]; return scalar %{ $s->{env} }; }
sub traced {
    my ($fn) = @_;
    @READS = ();
    @WRITES = ();
    tie %ENV, __PACKAGE__, {%ENV};
    my @r = eval { $fn->() };
    my $err = $@;
    untie %ENV;
    die $err if $err;
    return ([@READS], [@WRITES], @r);
}
package CGIBridge::Zygote;

# --- compiling -------------------------------------------------------------

my $GEN = 0;

# Compiles the script into a named sub (closures over its file-scoped `my`
# stay right: the sub is called once per child). Returns the state a child
# runs: the sub, the signature, DATA, compile-time output, the environment
# checks; or {declined} / {error}.
sub compile_script {
    my ($in_child, $recompile) = @_;
    my %s = (sig => signature($SCRIPT));
    my ($src, $err) = read_source();
    if (!defined $src) { $s{error} = $err; return \%s; }
    my $a = analyse($src);
    @s{qw(w data utf8)} = @{$a}{qw(w data utf8)};
    if ($a->{declined}) { $s{declined} = $a->{declined}; return \%s; }
    $GEN++;
    my $name = "CGIBridge::Zygote::script_$GEN";
    my $text = "package main; sub $name {\n#line 1 \"$SCRIPT\"\n$a->{code}\n;}\n1;\n";
    my $compile = sub {
        local $^W = $a->{w} ? 1 : $^W;
        local $0 = $SCRIPT;
        local @ARGV = ();
        my $ok = cgb_compile($text);
        return ($ok, $@);
    };
    my ($out, $errout, $reads, $writes, $ok, $cerr);
    if ($in_child) {
        ($out, $errout, $ok, $cerr) = captured($compile);
        ($reads, $writes) = ([], []);
    } else {
        ($out, $errout, $reads, $writes, $ok, $cerr) = captured(sub { CGIBridge::Zygote::Env::traced($compile) });
    }
    $errout =~ s/^Variable "[^"\n]+" will not stay shared at \Q$SCRIPT\E line \d+\.\n//mg;
    $errout =~ s/^(?:Constant s|S)ubroutine [\w:]+ redefined at \Q$SCRIPT\E line \d+\.\n//mg if $recompile;
    if (!$ok) {
        $s{error} = $cerr ne '' ? $cerr : 'the script did not compile';
        $s{errout} = $errout;
        return \%s;
    }
    # Top-level `require Module;` lines: loaded now, as a fresh process
    # loads them when it reaches them.
    if (!$in_child) {
        for my $m (@{ $a->{requires} }) {
            (my $file = "$m.pm") =~ s{::}{/}g;
            next if $INC{$file};
            my ($r2, $w2, $rok, $rerr) = CGIBridge::Zygote::Env::traced(sub { my $ok = eval { require $file; 1 }; return ($ok, $@); });
            if (!$rok) {
                delete $INC{$file};
                control('W', "not preloaded: require $m failed: $rerr");
                next;
            }
            push @$reads, @$r2;
            push @$writes, @$w2;
        }
    }
    $s{sub} = \&{$name};
    $s{out} = $out;
    $s{errout} = $errout;
    $s{writes} = $writes;
    my %checks;
    for my $r (@$reads) {
        my ($file, $key, $value) = @$r;
        my ($base) = $file =~ m{([^/]+)$};
        $base = $file unless defined $base;
        my $who = $file eq $SCRIPT ? 'the script (a BEGIN block or use)' : "module $base";
        if ($key eq '*') {
            $s{declined} = "$who reads the whole environment at compile time";
            last;
        }
        next if exists $checks{$key};
        if ($file eq $SCRIPT && ($key =~ $REQUEST_VARS || !exists $START_ENV{$key})) {
            $s{declined} = "$who reads \$ENV{$key} at compile time";
            last;
        }
        if ($key =~ $REQUEST_VARS) {
            my $known = $KNOWN_READS{$base};
            if (!$known || !$known->{$key}) {
                $s{declined} = "$who reads \$ENV{$key} at load";
                last;
            }
            $checks{$key} = [$who, $known->{$key}];
            next;
        }
        $checks{$key} = [$who, $value];
    }
    $s{checks} = \%checks;
    return \%s;
}

# Threads or files left by loading would be shared by every child: refuse.
sub check_clean {
    opendir(my $t, '/proc/self/task') or return undef;
    my $tasks = grep { /^\d+$/ } readdir($t);
    closedir($t);
    return 'loading started ' . ($tasks - 1) . ' threads' if $tasks > 1;
    opendir(my $d, '/proc/self/fd') or return undef;
    my @fds = grep { /^\d+$/ } readdir($d);
    closedir($d);
    my $extra = grep { $_ > 2 && $_ != $cfd && -e "/proc/self/fd/$_" } @fds;
    return "loading left $extra files open" if $extra;
    return undef;
}

# --- startup -----------------------------------------------------------------

# An exit in a BEGIN block of the script (or a module) ends the helper
# while it compiles: say so. In a child it does nothing.
my $COMPILING = 1;
END { control('C', 'the script exits while it is compiled (exit in a BEGIN block?)') if $$ == $PARENT && $COMPILING; }

decline('the bridge\'s uid is missing') unless defined $BRIDGE_UID;
my $STATE = compile_script(0, 0);
decline($STATE->{declined}) if $STATE->{declined};
if ($STATE->{error}) {
    my $e = $STATE->{error};
    $e =~ s/\s+$//;
    decline("the script does not compile: $e");
}
{
    my $pidfd = syscall($SYS{pidfd_open}, $$, 0);
    decline("pidfd_open: $!") if $pidfd < 0;
    syscall($SYS{close}, $pidfd);
}
{
    my $why = check_clean();
    decline($why) if $why;
}
my %SENT;
for my $f (realpath($SCRIPT), map { realpath($_) } grep { defined && !ref } values %INC) {
    next if $SENT{$f}++;
    control('F', $f);
}
$COMPILING = 0;
$0 = "perl (cgibridge zygote) $SCRIPT";
control('R', scalar(keys %INC));

# --- a request, in a spare child ---------------------------------------------

my ($NOTIFY_R, $NOTIFY);
my (%spares, %busy);    # pid -> pidfd

sub recv_request {
    my ($fd, $conn) = @_;
    my $buf = "\0" x 65536;
    my $cbuf = "\0" x 256;
    my $iov = pack('pQ', $buf, length $buf);
    my $msg = pack('QLx4pQpQix4', 0, 0, $iov, 1, $cbuf, length $cbuf, 0);
    my $n = syscall($SYS{recvmsg}, $fd, $msg, $MSG_CMSG_CLOEXEC);
    die "recvmsg: $!\n" if $n < 0;
    my ($clen) = unpack('Q', substr($msg, 40, 8));
    my ($flags) = unpack('i', substr($msg, 48, 4));
    my @fds;
    my $off = 0;
    while ($off + 16 <= $clen) {
        my ($len, $level, $type) = unpack('Q i i', substr($cbuf, $off, 16));
        last if $len < 16;
        push @fds, unpack('i*', substr($cbuf, $off + 16, $len - 16)) if $level == 1 && $type == 1;
        $off += ($len + 7) & ~7;
    }
    my $data = substr($buf, 0, $n);
    my $ok = eval {
        die "descriptors truncated\n" if $flags & $MSG_CTRUNC;
        die 'want 3 descriptors, got ' . scalar(@fds) . "\n" if @fds != 3;
        while (length($data) < 8) {
            my $r = sysread($conn, $data, 65536, length $data);
            die "short payload\n" unless $r;
        }
        die "bad protocol version\n" if substr($data, 0, 4) ne 'CGB1';
        my ($len) = unpack('N', substr($data, 4, 4));
        die "payload too large\n" if $len > 1 << 20;
        while (length($data) < 8 + $len) {
            my $r = sysread($conn, $data, 65536, length $data);
            die "short payload\n" unless $r;
        }
        $data = substr($data, 8, $len);
        1;
    };
    if (!$ok) {
        syscall($SYS{close}, $_) for @fds;
        die $@;
    }
    my @f = split /\0/, $data, -1;
    pop @f if @f && $f[-1] eq '';
    my ($script, $cwd, $argc) = splice(@f, 0, 3);
    if (!defined $argc || $argc !~ /^\d+$/ || $argc > @f) {
        syscall($SYS{close}, $_) for @fds;
        die "bad payload\n";
    }
    my @argv = splice(@f, 0, $argc);
    my %env;
    for my $kv (@f) {
        my $i = index($kv, '=');
        next if $i < 0;
        $env{ substr($kv, 0, $i) } = substr($kv, $i + 1);
    }
    return (\@fds, $script, $cwd, \@argv, \%env);
}

# Why this request cannot run on this state, if it cannot.
sub refusal {
    my ($st, $env) = @_;
    return $st->{declined} if $st->{declined};
    for my $k (keys %START_ENV, keys %$env) {
        next unless $k =~ $STARTUP_VARS;
        my ($a, $b) = ($START_ENV{$k}, $env->{$k});
        next if !defined $a && !defined $b || defined $a && defined $b && $a eq $b;
        next if $k =~ /^(?:LC_|LANG)/ && defined &POSIX::setlocale;
        return "the request's $k differs from the helper's (perl reads it when it starts)";
    }
    for my $k (sort keys %{ $st->{checks} || {} }) {
        my ($who, $want) = @{ $st->{checks}{$k} };
        my $v = $env->{$k};
        if (ref $want eq 'Regexp') {
            return "$who reads \$ENV{$k} at load, and this request's value changes what it does" if defined $v && $v =~ $want;
            next;
        }
        next if !defined $want && !defined $v || defined $want && defined $v && $want eq $v;
        return "$who reads \$ENV{$k} at load, and this request's differs";
    }
    return undef;
}

sub spare {
    syscall($SYS{prctl}, 1, 9);    # PR_SET_PDEATHSIG, SIGKILL
    exit_now(0) if getppid() != $PARENT;
    my ($fd, $conn);
    while (1) {
        $fd = syscall($SYS{accept4}, 0, 0, 0, $SOCK_CLOEXEC);
        if ($fd < 0) {
            my $e = $! + 0;
            next if $e == 4 || $e == 103;    # EINTR, ECONNABORTED
            exit_now(0);
        }
        open($conn, '+<&=', $fd) or exit_now(0);
        my $cred = getsockopt($conn, 1, 17);    # SOL_SOCKET, SO_PEERCRED
        my (undef, $uid) = defined $cred ? unpack('i3', $cred) : (0, -1);
        last if defined $uid && $uid == $BRIDGE_UID;
        close $conn;
    }
    syswrite($NOTIFY, "T$$\n");
    my ($fds, $script, $cwd, $argv, $env) = eval { recv_request($fd, $conn) };
    if (!$fds) {
        my $e = $@;
        $e =~ s/\s+$//;
        syswrite($conn, "E$e\n");
        exit_now(0);
    }
    my $refuse = sub {
        syscall($SYS{close}, $_) for @$fds;
        syswrite($conn, "E$_[0]\n");
        exit_now(0);
    };
    $refuse->("not this helper's script") if $script ne $SCRIPT;
    my $st = $STATE;
    my $edited = signature($SCRIPT) ne $st->{sig};
    if ($edited) {
        # Edited since the helper compiled it: this child compiles it anew
        # (below, with the request's environment); the helper does too, for
        # the spares to come.
        syswrite($NOTIFY, "S\n");
        my ($src, $err) = read_source();
        $refuse->($err) unless defined $src;
        my $a = analyse($src);
        $refuse->($a->{declined}) if $a->{declined};
        $st = { w => $a->{w}, checks => {} };
    }
    my $why = refusal($st, $env);
    $refuse->($why) if $why;
    setpgrp(0, 0);
    for my $i (0 .. 2) { syscall($SYS{dup2}, $fds->[$i], $i); }
    syswrite($conn, "P$$\n");
    close $conn;
    close $CONTROL;
    close $NOTIFY;
    syscall($SYS{close_range}, 3, 0xffffffff, 0);
    run($st, $cwd, $argv, $env, $edited);
}

sub run {
    my ($st, $cwd, $argv, $env, $edited) = @_;
    chdir($cwd);
    %ENV = %$env;
    for my $w (@{ $st->{writes} || [] }) {
        if (!defined $w->[0]) { %ENV = (); }
        elsif (defined $w->[1]) { $ENV{ $w->[0] } = $w->[1]; }
        else { delete $ENV{ $w->[0] }; }
    }
    if (defined &POSIX::setlocale) {
        for my $k (keys %START_ENV, keys %ENV) {
            next unless $k =~ /^(?:LC_|LANG)/;
            my ($a, $b) = ($START_ENV{$k}, $ENV{$k});
            next if !defined $a && !defined $b || defined $a && defined $b && $a eq $b;
            POSIX::setlocale(POSIX::LC_ALL(), '');
            last;
        }
    }
    $0 = $argv->[0];
    @ARGV = @$argv[1 .. $#$argv];
    $^T = time;
    srand();
    $^W = 1 if $st->{w};
    if ($edited) {
        $st = compile_script(1, 1);
        if ($st->{error}) {
            write_fd(2, $st->{errout}) if defined $st->{errout};
            my $e = $st->{error};
            $e .= "\n" unless $e =~ /\n\z/;
            write_fd(2, $e . ($e =~ /^Can't (?:locate|open)/ ? '' : "Execution of $SCRIPT aborted due to compilation errors.\n"));
            exit_now(255);
        }
    }
    write_fd(1, $st->{out}) if length $st->{out};
    write_fd(2, $st->{errout}) if length $st->{errout};
    if ($st->{data}) {
        my ($at, $pkg) = @{ $st->{data} };
        my $glob = \*{"${pkg}::DATA"};
        if (open($glob, '<:raw', $SCRIPT)) {
            seek($glob, $at, 0);
            binmode($glob, ':utf8') if $st->{utf8};
        }
    }
    my $sub = $st->{sub};
    $! = 0;
    $@ = '';
    $? = 0;
    # Not in an eval: die ends the child as it ends perl (the message on
    # stderr, exit 255 or $!), exit ends it with END blocks.
    $sub->();
    exit 0;
}

# --- the helper ---------------------------------------------------------------

pipe($NOTIFY_R, $NOTIFY) or decline("pipe: $!");

sub fork_spare {
    my $pid = fork();
    if (!defined $pid) {
        select(undef, undef, undef, 0.1);
        return;
    }
    if ($pid == 0) {
        close $NOTIFY_R;
        syscall($SYS{close}, $_) for values %spares, values %busy;
        spare();
        exit_now(0);
    }
    my $pidfd = syscall($SYS{pidfd_open}, $pid, 0);
    if ($pidfd < 0) {
        kill('KILL', $pid);
        waitpid($pid, 0);
        return;
    }
    $spares{$pid} = $pidfd;
}

my $pending = '';
while (1) {
    fork_spare() while keys(%spares) < $SPARES;
    my $rin = '';
    vec($rin, fileno($NOTIFY_R), 1) = 1;
    vec($rin, $_, 1) = 1 for values %spares, values %busy;
    my $rout;
    my $n = select($rout = $rin, undef, undef, undef);
    next if $n <= 0;
    if (vec($rout, fileno($NOTIFY_R), 1)) {
        sysread($NOTIFY_R, $pending, 4096, length $pending);
        while ($pending =~ s/^([^\n]*)\n//) {
            my $line = $1;
            if ($line =~ /^T(\d+)$/) {
                $busy{$1} = delete $spares{$1} if exists $spares{$1};
            } elsif ($line eq 'S') {
                next if signature($SCRIPT) eq $STATE->{sig};
                # Spares forked already compile it themselves when they take
                # a request (they check the signature); the ones to come
                # need not.
                my $new = compile_script(0, 1);
                if ($new->{error}) {
                    my $e = $new->{error};
                    $e =~ s/\s+$//;
                    control('W', "recompiling the script: $e");
                    next;
                }
                control('W', "the edited script runs in exec mode: $new->{declined}") if $new->{declined};
                $STATE = $new;
                for my $f (map { realpath($_) } grep { defined && !ref } values %INC) {
                    control('F', $f) unless $SENT{$f}++;
                }
            }
        }
    }
    for my $pid (keys %spares, keys %busy) {
        my $pidfd = exists $busy{$pid} ? $busy{$pid} : $spares{$pid};
        next unless vec($rout, $pidfd, 1);
        waitpid($pid, 0);
        my $status = $?;
        syscall($SYS{close}, $pidfd);
        if (exists $busy{$pid}) {
            delete $busy{$pid};
            control('X', "$pid $status");
        } else {
            delete $spares{$pid};
        }
    }
}
