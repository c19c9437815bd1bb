// Command cgibridge is a FastCGI server that runs CGI programs for nginx,
// Apache, lighttpd or Caddy: a safe, fast replacement for fcgiwrap. This
// file declares its command line (kong) and turns it into the daemon's
// options; the work and the policies are in the packages under bridge/.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/cgibridge/cgibridge/bridge/cgi"
	"github.com/cgibridge/cgibridge/bridge/daemon"
	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/manpage"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/spawn"
	"github.com/cgibridge/cgibridge/cgienv"
	"github.com/hashicorp/go-hclog"
)

// version is the release; overridden with -ldflags "-X main.version=…".
var version = "0.1.0"

// startEUID is the effective uid the bridge started with: a reload after
// the privilege drop decides as the start did.
var startEUID = os.Geteuid()

// CLI is the whole command line.
type CLI struct {
	Version_ kong.VersionFlag `name:"version" env:"-" help:"Print the version and exit."`
	Config   kong.ConfigFlag  `help:"Read options from a JSON file whose keys are flag names, e.g. {\"root\": \"/srv/cgi-bin\", \"listen\": [\"unix:/run/cgibridge.sock\"], \"max-procs\": 32}. Flags and environment variables override it; unknown keys are refused." placeholder:"FILE"`

	Serve   ServeCmd   `cmd:"" help:"Run the FastCGI server."`
	Spawn   SpawnCmd   `cmd:"" envprefix:"CGIBRIDGE_SPAWN_" help:"Run N copies of a FastCGI program on one shared socket and keep them running: spawn-fcgi and multiwatch in one, with spawn-fcgi's flags. Flags can also be set as CGIBRIDGE_SPAWN_<FLAG>."`
	Version VersionCmd `cmd:"" help:"Print the version."`
	Man     ManCmd     `cmd:"" hidden:"" help:"Print the man page (roff), generated from this command line."`
}

// ManCmd prints cgibridge(8), generated from the command line above.
type ManCmd struct{}

// Run writes the man page to stdout.
func (ManCmd) Run(k *kong.Context) error {
	return manpage.Write(os.Stdout, k.Model, version)
}

// SpawnCmd holds the flags of "cgibridge spawn"; the one-letter ones are
// spawn-fcgi's. Their variables are CGIBRIDGE_SPAWN_<FLAG>, so that one
// meant for serve (CGIBRIDGE_USER) does not change who spawn's children are.
type SpawnCmd struct {
	Socket              string        `short:"s" env:"SOCKET" help:"Listen on this unix socket (a stale socket file is replaced, a live one refused)." placeholder:"PATH" group:"Socket"`
	SocketOutsideChroot bool          `short:"S" env:"SOCKET_OUTSIDE_CHROOT" help:"With -c, -s is a path outside the chroot (by default, as in spawn-fcgi, it is inside)." group:"Socket"`
	Addr                string        `short:"a" env:"ADDR" help:"Listen on this TCP address, with -p (default 127.0.0.1, not spawn-fcgi's 0.0.0.0)." placeholder:"ADDR" group:"Socket"`
	Port                int           `short:"p" env:"PORT" help:"Listen on this TCP port." group:"Socket"`
	AllowFrom           []string      `env:"ALLOW_FROM" help:"Web servers (IP or CIDR, repeatable) that may connect over non-loopback TCP: set as FCGI_WEB_SERVER_ADDRS for the children, which enforce it (libfcgi, php-cgi). Required for a non-loopback -a unless FCGI_WEB_SERVER_ADDRS is set." placeholder:"CIDR" group:"Socket"`
	SocketUser          string        `short:"U" env:"SOCKET_USER" help:"Owner of the unix socket (default: -u's user)." placeholder:"USER" group:"Socket"`
	SocketGroup         string        `short:"G" env:"SOCKET_GROUP" help:"Group of the unix socket (default: the children's group when -u or -g is given), e.g. www-data." placeholder:"GROUP" group:"Socket"`
	SocketMode          string        `short:"M" env:"SOCKET_MODE" help:"Permissions of the unix socket, octal." default:"0660" placeholder:"MODE" group:"Socket"`
	Backlog             int           `short:"b" env:"BACKLOG" help:"Listen backlog." default:"1024" group:"Socket"`
	Children            int           `short:"F" env:"CHILDREN" help:"Copies of the program to run." default:"1" placeholder:"N" group:"Children"`
	User                string        `short:"u" env:"USER" help:"Run the children as this user (needs root). Started as root without -u, they run as nobody." group:"Children"`
	Group               string        `short:"g" env:"GROUP" help:"Run the children with this group (default: the user's primary group)." group:"Children"`
	AllowRoot           bool          `env:"ALLOW_ROOT" help:"Allow the children to run as root." group:"Children"`
	Dir                 string        `short:"d" env:"DIR" help:"Working directory of the children (inside the chroot with -c)." placeholder:"DIR" group:"Children"`
	Chroot              string        `short:"c" env:"CHROOT" help:"Root directory of the children (needs root); PROGRAM is a path inside it." placeholder:"DIR" group:"Children"`
	PHPChildren         int           `short:"C" name:"php-children" env:"PHP_CHILDREN" help:"Set PHP_FCGI_CHILDREN=N in the children's environment (php-cgi then forks N workers of its own)." default:"-1" placeholder:"N" group:"Children"`
	KillGrace           time.Duration `env:"KILL_GRACE" help:"Time between SIGTERM and SIGKILL when the children are stopped." default:"3s" group:"Children"`
	DrainTimeout        time.Duration `env:"DRAIN_TIMEOUT" help:"On a rolling restart, how long an old child may take to finish its request before it gets SIGTERM." default:"10s" group:"Children"`
	RestartDelay        time.Duration `env:"RESTART_DELAY" help:"Delay before restarting a child that ended; doubled after each quick death (a crash within 10s of its start). A clean exit (status 0, as php-cgi after PHP_FCGI_MAX_REQUESTS) never backs off." default:"100ms" group:"Children"`
	RestartDelayMax     time.Duration `env:"RESTART_DELAY_MAX" help:"The restart delay stops doubling here; a slot is never given up." default:"30s" group:"Children"`
	Watch               bool          `env:"WATCH" help:"Replace the children one at a time (as on SIGHUP) when PROGRAM's file changes."`
	PIDFile             string        `short:"P" name:"pid-file" env:"PID_FILE" help:"Write the supervisor's pid to this file (also with -n)." placeholder:"FILE"`
	Foreground          bool          `short:"n" env:"FOREGROUND" help:"Stay in the foreground (systemd, daemontools, runit). Without it spawn detaches and returns once the children are up."`
	LogFile             string        `env:"LOG_FILE" help:"Append the log (and the children's output) to this file. Default: stderr with -n, syslog when detached." placeholder:"FILE" group:"Logging"`
	LogFormat           string        `env:"LOG_FORMAT" help:"Log format." enum:"text,json" default:"text" group:"Logging"`
	LogLevel            string        `env:"LOG_LEVEL" help:"Log level." enum:"trace,debug,info,warn,error" default:"info" group:"Logging"`
	Program             []string      `arg:"" passthrough:"partial" help:"-- PROGRAM [ARGS...]: the FastCGI program and its arguments, passed as they are. Flags end at --, or at the program's name." placeholder:"PROGRAM"`
}

// Run runs the supervisor (see bridge/spawn).
func (s *SpawnCmd) Run() error {
	prog := s.Program
	if len(prog) > 0 && prog[0] == "--" {
		prog = prog[1:]
	}
	return spawn.Run(&spawn.Config{
		Socket:              s.Socket,
		SocketOutsideChroot: s.SocketOutsideChroot,
		Addr:                s.Addr,
		Port:                s.Port,
		AllowFrom:           s.AllowFrom,
		Children:            s.Children,
		User:                s.User,
		Group:               s.Group,
		AllowRoot:           s.AllowRoot,
		SocketUser:          s.SocketUser,
		SocketGroup:         s.SocketGroup,
		SocketMode:          s.SocketMode,
		Backlog:             s.Backlog,
		PIDFile:             s.PIDFile,
		Foreground:          s.Foreground,
		Dir:                 s.Dir,
		Chroot:              s.Chroot,
		PHPChildren:         s.PHPChildren,
		Watch:               s.Watch,
		KillGrace:           s.KillGrace,
		DrainTimeout:        s.DrainTimeout,
		RestartDelay:        s.RestartDelay,
		RestartDelayMax:     s.RestartDelayMax,
		LogFile:             s.LogFile,
		LogFormat:           s.LogFormat,
		LogLevel:            s.LogLevel,
		Program:             prog,
	})
}

// usageError is a command line or configuration that cannot be used: it
// exits 2, as Go's flag package and most Unix tools do; failures at run
// time exit 1.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
func (usageError) ExitCode() int   { return 2 }

// usage marks err, when not nil, as a usage error.
func usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// ServeCmd holds the flags of "cgibridge serve".
type ServeCmd struct {
	Listen             []string      `help:"Where to listen (repeatable): unix:/path, tcp:HOST:PORT, HOST:PORT or fd:N. With none: the listening socket on fd 0 (spawn-fcgi, lighttpd, mod_fcgid) or systemd socket activation." placeholder:"ADDR" group:"Listening"`
	SocketMode         string        `help:"Permissions of a unix socket the bridge creates (octal)." default:"0660" group:"Listening"`
	SocketOwner        string        `help:"Owner (user name or uid) of a unix socket the bridge creates." group:"Listening"`
	SocketGroup        string        `help:"Group (name or gid) of a unix socket the bridge creates." group:"Listening"`
	AllowFrom          []string      `help:"Web-server addresses (IP or CIDR, repeatable) allowed to connect over non-loopback TCP; defaults to $FCGI_WEB_SERVER_ADDRS. Required to listen on a non-loopback address." placeholder:"CIDR" group:"Listening"`
	MaxConns           int           `help:"Open FastCGI connections at most; more are closed at once." default:"1024" group:"Listening"`
	HTTP               string        `name:"http" help:"Also serve HTTP on ADDR, forwarding to the bridge as nginx would: a development aid, not a production web server. Loopback only unless --public-endpoints." placeholder:"ADDR" group:"Listening"`
	Status             string        `help:"Serve the status page (/status, /status?json), /ping and Prometheus /metrics on ADDR. Loopback only unless --public-endpoints." placeholder:"ADDR" group:"Listening"`
	PublicEndpoints    bool          `help:"Let --http and --status bind a non-loopback address. They have no access control: anyone who reaches them uses them." group:"Listening"`
	ParamsTimeout      time.Duration `help:"How long a request may take to send its headers (FastCGI params); a connection that sends nothing or stalls is closed after it." default:"10s" group:"Listening"`
	IdleTimeout        time.Duration `help:"How long a kept connection may wait for its next request, and a request for the next part of its body." default:"2m" group:"Listening"`
	Root               string        `help:"The cgi-bin root: SCRIPT_NAME/SCRIPT_FILENAME are resolved under it and nothing outside it runs." type:"path" placeholder:"DIR" group:"Programs"`
	Allow              []string      `help:"A program or directory outside the root that may run (repeatable), e.g. /usr/lib/git-core/git-http-backend." type:"path" placeholder:"PATH" group:"Programs"`
	AllowPackagedLinks bool          `help:"Follow a symlink in the root to a program outside it when root owns the link, every link it leads through and the program, and nobody else can write to them or to any directory on the way outside the root: how Debian installs /usr/lib/cgi-bin (mapserv -> /usr/bin/mapserv). Other links out of the root stay refused (403)." group:"Programs"`
	Interpreter        []string      `help:"Run files with extension EXT through CMD, no shebang or exec bit needed (repeatable; EXT= with no command removes a default). Defaults: .py=python3 .pl=perl .sh=sh .php=php-cgi .rb=ruby." placeholder:"EXT=CMD" group:"Programs"`
	PassEnv            []string      `help:"Pass this variable of the bridge's own environment to programs (repeatable; NAME_* patterns allowed). LANG, LC_* and TZ always pass; PATH only when named here (programs otherwise get PATH=/usr/local/bin:/usr/bin:/bin)." placeholder:"NAME" group:"Programs"`
	SetEnv             []string      `help:"Set NAME=VALUE in every program's environment (repeatable)." sep:"none" placeholder:"NAME=VALUE" group:"Programs"`
	FastCGI            []string      `name:"fastcgi" help:"Programs that speak FastCGI themselves, served by a pool of persistent children (repeatable): a shell pattern on the path under --root ('*' does not match '/'), or an absolute one for an --allow path. Scripts run through an interpreter match by their own path; *.php runs one pool of php-cgi for every PHP script." placeholder:"GLOB" group:"Warm mode"`
	FastCGIProcs       int           `name:"fastcgi-procs" help:"Children per FastCGI program at most; more requests wait in the queue (--queue-timeout), then 503. Default: the number of CPUs, at least 2." group:"Warm mode"`
	FastCGIMaxReqs     int           `name:"fastcgi-max-requests" help:"Replace a FastCGI child after this many requests (0: never)." group:"Warm mode"`
	FastCGIIdle        time.Duration `name:"fastcgi-idle" help:"Stop a FastCGI child idle this long (0: never)." default:"5m" group:"Warm mode"`
	FastCGIEnv         []string      `name:"fastcgi-env" help:"Set NAME=VALUE in the start environment of the FastCGI programs matching GLOB (repeatable), for configuration read before their accept loop, e.g. mapserv:MAPSERVER_CONFIG_FILE=/etc/mapserver.map. They start with --pass-env's variables and --set-env otherwise." sep:"none" placeholder:"GLOB:NAME=VALUE" group:"Warm mode"`
	Warm               []string      `help:"Python and Perl CGI scripts (by #! line or extension) served through a preloaded interpreter that forks a fresh child per request (repeatable): a shell pattern on the path under --root, as --fastcgi takes. Scripts that cannot be warmed safely run in exec mode." placeholder:"GLOB" group:"Warm mode"`
	WarmSpares         int           `help:"Forked children each interpreter helper keeps ready." default:"2" group:"Warm mode"`
	WarmMaxHelpers     int           `help:"Interpreter helpers alive at most (one per script and user); past it the least recently used idle one stops." default:"16" group:"Warm mode"`
	WarmIdle           time.Duration `help:"Stop an interpreter helper unused this long (0: never)." default:"10m" group:"Warm mode"`
	WarmMaxRequests    uint64        `help:"Start a new interpreter helper after this many requests (0: never)." default:"10000" group:"Warm mode"`
	WarmMaxAge         time.Duration `help:"Start a new interpreter helper after this long (0: never)." default:"1h" group:"Warm mode"`
	WarmMaxMemory      byteSize      `help:"Start a new interpreter helper when its resident memory passes this (0: no cap)." default:"256M" group:"Warm mode"`
	Stderr             string        `help:"Where programs' standard error goes: log (the bridge's log), fcgi (FastCGI STDERR records: the web server's error log) or both." enum:"log,fcgi,both" default:"both" group:"Programs"`
	Timeout            time.Duration `help:"Per-request time limit; then SIGTERM to the program's process group, a grace period, SIGKILL, and 504. 0 disables." default:"60s" group:"Limits"`
	KillGrace          time.Duration `help:"Time between SIGTERM and SIGKILL." default:"3s" group:"Limits"`
	MaxProcs           int           `help:"Programs running at once; further requests wait up to --queue-timeout, then 503." default:"64" group:"Limits"`
	QueueTimeout       time.Duration `help:"How long a request waits for a free slot before 503." default:"10s" group:"Limits"`
	MaxBody            byteSize      `help:"Largest request body (413 beyond); 0 for no limit. Units K, M, G." default:"1G" group:"Limits"`
	MaxHeader          byteSize      `help:"Largest response header block a program may write (502 beyond). nginx itself refuses more than fastcgi_buffer_size (4K by default)." default:"32K" group:"Limits"`
	MaxParams          byteSize      `help:"Largest FastCGI params block of a request (431 beyond)." default:"256K" group:"Limits"`
	MaxSpool           byteSize      `help:"Request bodies held by the bridge at once, in memory and in --temp-dir together (503 beyond)." default:"4G" group:"Limits"`
	Slow               time.Duration `help:"Log requests that take longer than this, and count them as slow. 0 disables." default:"10s" group:"Limits"`
	LimitCPU           uint64        `help:"CPU seconds per program (RLIMIT_CPU). 0: unlimited." group:"Limits"`
	LimitMemory        byteSize      `help:"Address space per program (RLIMIT_AS). 0: unlimited." group:"Limits"`
	LimitFiles         uint64        `help:"Open files per program (RLIMIT_NOFILE). 0: inherited." group:"Limits"`
	LimitProcs         uint64        `help:"Processes of the program's user (RLIMIT_NPROC; does not bind root). 0: unlimited." group:"Limits"`
	LimitFsize         byteSize      `help:"Largest file a program may write (RLIMIT_FSIZE). 0: unlimited." group:"Limits"`
	Cgroup             string        `help:"Put each program in its own cgroup v2 under this parent (relative to the bridge's cgroup, or absolute), for --cgroup-memory and --cgroup-pids." placeholder:"DIR" group:"Limits"`
	CgroupMemory       byteSize      `help:"memory.max of each program's cgroup." group:"Limits"`
	CgroupPids         uint64        `help:"pids.max of each program's cgroup." group:"Limits"`
	User               string        `help:"Run programs as this user; when started as root, the bridge itself also switches to it after binding its sockets (unless --owner-mode)." group:"Privileges"`
	Group              string        `help:"Run programs with this group (default: the user's primary group)." group:"Privileges"`
	OwnerMode          bool          `help:"Run each program as the owner of its file, after suexec-like checks (see docs/security.md). Needs root." group:"Privileges"`
	MinUID             uint32        `name:"min-uid" help:"Lowest uid --owner-mode will run programs as." default:"100" group:"Privileges"`
	AllowRoot          bool          `help:"Allow running programs as root." group:"Privileges"`
	LogFormat          string        `help:"Log format." enum:"text,json" default:"text" group:"Logging"`
	LogLevel           string        `help:"Log level (SIGHUP re-reads it)." enum:"trace,debug,info,warn,error" default:"info" group:"Logging"`
	TempDir            string        `help:"Directory for request bodies larger than 64 KiB (unlinked files)." type:"path" placeholder:"DIR"`
	ShutdownTimeout    time.Duration `help:"On SIGTERM, how long requests in flight may finish before they are cancelled." default:"30s"`
	WatchConfig        bool          `help:"Reload (as on SIGHUP) when the --config file changes."`
	Pprof              string        `help:"Serve Go's net/http/pprof profiles on ADDR (diagnostics; keep it on loopback)." hidden:"" placeholder:"ADDR"`

	configFile string // the --config path, for --watch-config
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	fmt.Println(versionString())
	return nil
}

// versionString is the release and, from the build information Go records,
// the module version and the VCS revision the binary was built from.
func versionString() string {
	s := "cgibridge " + version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return s
	}
	var parts []string
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		parts = append(parts, "module "+v)
	}
	settings := map[string]string{}
	for _, kv := range bi.Settings {
		settings[kv.Key] = kv.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		r := "revision " + rev[:min(len(rev), 12)]
		if settings["vcs.modified"] == "true" {
			r += "+modified"
		}
		parts = append(parts, r)
	}
	if t := settings["vcs.time"]; t != "" {
		parts = append(parts, t)
	}
	parts = append(parts, bi.GoVersion)
	return s + " (" + strings.Join(parts, ", ") + ")"
}

// byteSize is a size flag: 1048576, 64K, 1M, 2G.
type byteSize int64

// UnmarshalText parses a size with an optional K, M or G suffix (powers of 1024).
func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(strings.ToUpper(string(text)))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B")
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size (e.g. 512K, 64M, 1G)", text)
	}
	*b = byteSize(n * mult)
	return nil
}

// Run starts the server and blocks until it has drained.
func (s *ServeCmd) Run(cli *CLI) error {
	// Base: one P per four of the CPUs Go would use (at least one), since
	// idle Ps cost CPU on every request when requests come one at a time.
	// Exec mode raises it (to at least 4) while programs start concurrently:
	// each start holds a P through its vfork (bridge/execrun/procs.go,
	// docs/performance.md). GOMAXPROCS in the environment still decides.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)/4))
	}
	s.configFile = string(cli.Config)
	opts, log, err := s.options()
	if err != nil {
		return usage(err)
	}
	d, err := daemon.New(opts, log)
	if err != nil {
		return err
	}
	log.Info("cgibridge started", "version", version, "root", opts.CGI.Env.Root, "max_procs", opts.Exec.MaxProcs, "timeout", opts.CGI.Timeout)
	return d.Run(func() (*daemon.Options, error) {
		next, err := parseServe(os.Args[1:])
		if err != nil {
			return nil, err
		}
		o, _, err := next.options()
		return o, err
	})
}

// options turns the flags into the bridge's options, refusing bad values
// with the flag's name.
func (s *ServeCmd) options() (*daemon.Options, hclog.Logger, error) {
	level := hclog.LevelFromString(s.LogLevel)
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "cgibridge",
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: s.LogFormat == "json",
		TimeFormat: "2006-01-02T15:04:05.000Z0700",
	})

	if err := s.checkNumbers(); err != nil {
		return nil, nil, err
	}
	mode, err := strconv.ParseUint(s.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return nil, nil, fmt.Errorf("--socket-mode %q: want an octal mode such as 0660", s.SocketMode)
	}
	allowFrom := s.AllowFrom
	if len(allowFrom) == 0 && os.Getenv("FCGI_WEB_SERVER_ADDRS") != "" {
		allowFrom = strings.Split(os.Getenv("FCGI_WEB_SERVER_ADDRS"), ",")
	}
	prefixes, err := listen.ParseAllowFrom(allowFrom)
	if err != nil {
		return nil, nil, fmt.Errorf("--allow-from: %w", err)
	}
	interps, err := interpreters(s.Interpreter)
	if err != nil {
		return nil, nil, err
	}
	stderrMode, err := cgi.ParseStderrMode(s.Stderr)
	if err != nil {
		return nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find own executable (for the limits shim): %w", err)
	}

	opts := &daemon.Options{
		Listen: s.Listen,
		ListenOpts: listen.Options{
			SocketMode:  os.FileMode(mode),
			SocketOwner: s.SocketOwner,
			SocketGroup: s.SocketGroup,
			AllowFrom:   prefixes,
		},
		CGI: cgi.Config{
			Env: cgienv.Config{
				Root:           s.Root,
				Allow:          s.Allow,
				Interpreters:   interps,
				PassEnv:        append(cgienv.DefaultPassEnv(), s.PassEnv...),
				SetEnv:         s.SetEnv,
				ServerSoftware: "cgibridge/" + version,
				PackagedLinks:  s.AllowPackagedLinks,
			},
			Timeout:        s.Timeout,
			MaxHeaderBytes: int(s.MaxHeader),
			Stderr:         stderrMode,
			Slow:           s.Slow,
			OwnerMode:      s.OwnerMode,
			MinUID:         s.MinUID,
			AllowRoot:      s.AllowRoot,
		},
		Exec: daemon.ExecOptions{
			MaxProcs:  s.MaxProcs,
			QueueWait: s.QueueTimeout,
			KillGrace: s.KillGrace,
			Limits: sandbox.Limits{
				CPUSeconds:   s.LimitCPU,
				AddressSpace: uint64(s.LimitMemory),
				OpenFiles:    s.LimitFiles,
				Processes:    s.LimitProcs,
				FileSize:     uint64(s.LimitFsize),
			},
			Shim:      self,
			MemoryMax: uint64(s.CgroupMemory),
			PidsMax:   s.CgroupPids,
		},
		FastCGI: daemon.FastCGIOptions{
			Globs:       s.FastCGI,
			Procs:       cmp.Or(s.FastCGIProcs, max(runtime.NumCPU(), 2)),
			MaxRequests: s.FastCGIMaxReqs,
			Idle:        s.FastCGIIdle,
			Env:         s.FastCGIEnv,
		},
		Warm: daemon.WarmOptions{
			Globs:       s.Warm,
			Spares:      s.WarmSpares,
			MaxHelpers:  s.WarmMaxHelpers,
			Idle:        s.WarmIdle,
			MaxRequests: s.WarmMaxRequests,
			MaxAge:      s.WarmMaxAge,
			MaxMemory:   uint64(s.WarmMaxMemory),
		},
		MaxConns:        s.MaxConns,
		MaxBodyBytes:    int64(s.MaxBody),
		MaxParamsBytes:  int(s.MaxParams),
		MaxSpoolBytes:   int64(s.MaxSpool),
		TempDir:         s.TempDir,
		ParamsTimeout:   s.ParamsTimeout,
		IdleTimeout:     s.IdleTimeout,
		HTTP:            s.HTTP,
		Status:          s.Status,
		Pprof:           s.Pprof,
		PublicEndpoints: s.PublicEndpoints,
		ShutdownTimeout: s.ShutdownTimeout,
		LogLevel:        level,
	}
	if s.WatchConfig {
		if s.configFile == "" {
			return nil, nil, errors.New("--watch-config needs --config FILE")
		}
		opts.WatchFiles = []string{s.configFile}
	}
	decided, err := daemon.Decide(daemon.Privileges{
		User: s.User, Group: s.Group, OwnerMode: s.OwnerMode, AllowRoot: s.AllowRoot, Cgroup: s.Cgroup,
	}, startEUID, &opts.ListenOpts, log)
	if err != nil {
		return nil, nil, err
	}
	opts.CGI.Identity, opts.DropTo, opts.DefaultIdentity = decided.Identity, decided.DropTo, decided.Default
	if err := opts.CGI.Validate(); err != nil {
		return nil, nil, err
	}
	if opts.Exec.Cgroups, err = daemon.OpenCgroups(s.Cgroup, uint64(s.CgroupMemory), s.CgroupPids); err != nil {
		return nil, nil, err
	}
	return opts, log, nil
}

// checkNumbers refuses counts and durations out of their range, with the
// flag's name, as usage errors.
func (s *ServeCmd) checkNumbers() error {
	if s.MaxProcs < 1 {
		return fmt.Errorf("--max-procs %d: must be at least 1", s.MaxProcs)
	}
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"--max-conns", int64(s.MaxConns)}, {"--fastcgi-procs", int64(s.FastCGIProcs)},
		{"--fastcgi-max-requests", int64(s.FastCGIMaxReqs)}, {"--warm-spares", int64(s.WarmSpares)},
		{"--warm-max-helpers", int64(s.WarmMaxHelpers)}, {"--max-header", int64(s.MaxHeader)},
		{"--max-params", int64(s.MaxParams)}, {"--max-body", int64(s.MaxBody)}, {"--max-spool", int64(s.MaxSpool)},
		{"--params-timeout", int64(s.ParamsTimeout)}, {"--idle-timeout", int64(s.IdleTimeout)},
		{"--timeout", int64(s.Timeout)}, {"--kill-grace", int64(s.KillGrace)}, {"--queue-timeout", int64(s.QueueTimeout)},
		{"--shutdown-timeout", int64(s.ShutdownTimeout)}, {"--fastcgi-idle", int64(s.FastCGIIdle)},
		{"--warm-idle", int64(s.WarmIdle)}, {"--warm-max-age", int64(s.WarmMaxAge)},
	} {
		if c.v < 0 {
			return fmt.Errorf("%s: must not be negative", c.name)
		}
	}
	for _, e := range s.FastCGIEnv {
		glob, nv, ok := strings.Cut(e, ":")
		name, _, hasValue := strings.Cut(nv, "=")
		if !ok || glob == "" || !hasValue || name == "" {
			return fmt.Errorf("--fastcgi-env %q: want GLOB:NAME=VALUE, e.g. mapserv:MAPSERVER_CONFIG_FILE=/etc/mapserver.map", e)
		}
	}
	return nil
}

// interpreters merges --interpreter EXT=CMD entries over the defaults.
func interpreters(flags []string) (map[string][]string, error) {
	m := cgienv.DefaultInterpreters()
	for _, f := range flags {
		ext, cmd, ok := strings.Cut(f, "=")
		ext = strings.ToLower(strings.TrimSpace(ext))
		if !ok || ext == "" {
			return nil, fmt.Errorf("--interpreter %q: want EXT=CMD, e.g. .py=python3", f)
		}
		if !strings.HasPrefix(ext, ".") {
			ext = "." + ext
		}
		if fields := strings.Fields(cmd); len(fields) > 0 {
			m[ext] = fields
		} else {
			delete(m, ext)
		}
	}
	return m, nil
}

// parser builds the kong parser; every flag can also come from
// CGIBRIDGE_<FLAG> and from the --config file.
func parser(cli *CLI, exit func(int)) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("cgibridge"),
		kong.Description("A FastCGI server that runs CGI programs behind nginx, Apache, lighttpd or Caddy — fcgiwrap's job, without its failures. Every flag can also be set as CGIBRIDGE_<FLAG> (e.g. CGIBRIDGE_ROOT) or in the --config file."),
		kong.DefaultEnvars("CGIBRIDGE"),
		kong.Vars{"version": versionString()},
		kong.Configuration(jsonConfig),
		kong.Exit(exit),
	)
}

// configFile is a --config file: a JSON object whose keys are flag names,
// written "max-procs" or "max_procs". Unknown keys are refused, so a typo
// does not silently leave a default in force.
type configFile map[string]any

func jsonConfig(r io.Reader) (kong.Resolver, error) {
	var c configFile
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config file: not a JSON object of flag names: %w", err)
	}
	return c, nil
}

func configKey(name string) string { return strings.ReplaceAll(name, "_", "-") }

// Validate refuses keys that name no flag.
func (c configFile) Validate(app *kong.Application) error {
	known := map[string]bool{}
	for _, f := range app.Flags {
		known[f.Name] = true
	}
	for _, cmd := range app.Leaves(true) {
		for _, f := range cmd.Flags {
			known[f.Name] = true
		}
	}
	for k := range c {
		if !known[configKey(k)] {
			return fmt.Errorf("config file: unknown option %q (see cgibridge serve --help)", k)
		}
	}
	return nil
}

// Resolve returns the value the file gives for flag, if any. An option set
// in the environment wins over the file (flag > environment > file >
// default), so the file is not consulted for it.
func (c configFile) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	for _, e := range flag.Envs {
		if _, ok := os.LookupEnv(e); ok {
			return nil, nil
		}
	}
	for k, v := range c {
		if configKey(k) == flag.Name {
			if err := checkConfigType(flag, v); err != nil {
				return nil, fmt.Errorf("config file: %q: %w", k, err)
			}
			if n, ok := v.(json.Number); ok {
				return n.String(), nil
			}
			return v, nil
		}
	}
	return nil, nil
}

// checkConfigType refuses a config value whose JSON type does not fit the
// flag: {"root": 5} is a mistake, not the directory "5". Numbers are for
// numeric flags, booleans for switches, arrays for repeatable flags, and
// strings for the rest (durations and sizes included, "10s", "64M").
func checkConfigType(flag *kong.Flag, v any) error {
	kind := flag.Value.Target.Kind()
	want := ""
	switch v := v.(type) {
	case string:
		// A repeatable flag may be given as one comma-separated string.
		if kind == reflect.Bool {
			want = jsonTypeFor(kind)
		}
	case json.Number:
		switch kind {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float64:
		default:
			want = jsonTypeFor(kind)
		}
	case bool:
		if kind != reflect.Bool {
			want = jsonTypeFor(kind)
		}
	case []any:
		if kind != reflect.Slice {
			want = jsonTypeFor(kind)
		}
		for _, e := range v {
			if _, ok := e.(string); !ok {
				return fmt.Errorf("want an array of strings, got %v", e)
			}
		}
	default:
		want = jsonTypeFor(kind)
	}
	if want != "" {
		return fmt.Errorf("want %s, got %v", want, v)
	}
	return nil
}

func jsonTypeFor(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array of strings"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float64:
		return "a number"
	case reflect.Int64:
		return "a number or a string such as \"10s\" or \"64M\""
	}
	return "a string"
}

// parseServe re-reads the command line, environment and config file, for a
// SIGHUP reload.
func parseServe(args []string) (*ServeCmd, error) {
	var cli CLI
	p, err := parser(&cli, func(int) {})
	if err != nil {
		return nil, err
	}
	p.Stdout, p.Stderr = io.Discard, io.Discard
	if _, err := p.Parse(args); err != nil {
		return nil, err
	}
	cli.Serve.configFile = string(cli.Config)
	return &cli.Serve, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == sandbox.ShimArg {
		sandbox.ShimMain(os.Args) // never returns
	}
	// Descriptors inherited from whoever started us must never reach the
	// programs we start.
	if err := listen.CloseOnExecInherited(); err != nil {
		fmt.Fprintln(os.Stderr, "cgibridge: warning:", err)
	}
	var cli CLI
	p, err := parser(&cli, os.Exit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cgibridge:", err)
		os.Exit(2)
	}
	ctx, err := p.Parse(os.Args[1:])
	if err != nil {
		// One line and a hint, not the whole usage.
		msg := err.Error()
		cmd := ""
		var perr *kong.ParseError
		if errors.As(err, &perr) && perr.Context != nil {
			if c := perr.Context.Command(); c != "" {
				cmd = strings.Fields(c)[0] + " "
			}
			// Name a flag as it is usually written: spawn-fcgi's -F, not --children.
			for _, f := range perr.Context.Flags() {
				if f.Short != 0 && strings.HasPrefix(msg, "--"+f.Name+":") {
					msg = "-" + string(f.Short) + "/" + msg
				}
			}
		}
		fmt.Fprintf(os.Stderr, "cgibridge: %s\n", msg)
		fmt.Fprintf(os.Stderr, "see 'cgibridge %s--help'\n", cmd)
		os.Exit(2)
	}
	if err := ctx.Run(&cli); err != nil {
		fmt.Fprintf(os.Stderr, "cgibridge: %v\n", err)
		code := 1
		var ec kong.ExitCoder
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}
