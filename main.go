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
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/cgibridge/cgibridge/bridge/cgi"
	"github.com/cgibridge/cgibridge/bridge/daemon"
	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
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
	Config kong.ConfigFlag `help:"Read options from a JSON file whose keys are flag names, e.g. {\"root\": \"/srv/cgi-bin\", \"listen\": [\"unix:/run/cgibridge.sock\"], \"max-procs\": 32}. Flags and environment variables override it; unknown keys are refused." placeholder:"FILE"`

	Serve   ServeCmd   `cmd:"" help:"Run the FastCGI server."`
	Version VersionCmd `cmd:"" help:"Print the version."`
}

// ServeCmd holds the flags of "cgibridge serve".
type ServeCmd struct {
	Listen          []string      `help:"Where to listen (repeatable): unix:/path, tcp:HOST:PORT, HOST:PORT or fd:N. With none: the listening socket on fd 0 (spawn-fcgi, lighttpd, mod_fcgid) or systemd socket activation." placeholder:"ADDR" group:"Listening"`
	SocketMode      string        `help:"Permissions of a unix socket the bridge creates (octal)." default:"0660" group:"Listening"`
	SocketOwner     string        `help:"Owner (user name or uid) of a unix socket the bridge creates." group:"Listening"`
	SocketGroup     string        `help:"Group (name or gid) of a unix socket the bridge creates." group:"Listening"`
	AllowFrom       []string      `help:"Web-server addresses (IP or CIDR, repeatable) allowed to connect over non-loopback TCP; defaults to $FCGI_WEB_SERVER_ADDRS. Required to listen on a non-loopback address." placeholder:"CIDR" group:"Listening"`
	MaxConns        int           `help:"Open FastCGI connections at most; more are closed at once." default:"1024" group:"Listening"`
	HTTP            string        `name:"http" help:"Also serve HTTP on ADDR, forwarding to the bridge as nginx would: a development aid, not a production web server. Loopback only unless --public-endpoints." placeholder:"ADDR" group:"Listening"`
	Status          string        `help:"Serve the status page (/status, /status?json), /ping and Prometheus /metrics on ADDR. Loopback only unless --public-endpoints." placeholder:"ADDR" group:"Listening"`
	PublicEndpoints bool          `help:"Let --http and --status bind a non-loopback address. They have no access control: anyone who reaches them uses them." group:"Listening"`
	ParamsTimeout   time.Duration `help:"How long a request may take to send its headers (FastCGI params); a connection that sends nothing or stalls is closed after it." default:"10s" group:"Listening"`
	IdleTimeout     time.Duration `help:"How long a kept connection may wait for its next request, and a request for the next part of its body." default:"2m" group:"Listening"`
	Root            string        `help:"The cgi-bin root: SCRIPT_NAME/SCRIPT_FILENAME are resolved under it and nothing outside it runs." type:"path" placeholder:"DIR" group:"Programs"`
	Allow           []string      `help:"A program or directory outside the root that may run (repeatable), e.g. /usr/lib/git-core/git-http-backend." type:"path" placeholder:"PATH" group:"Programs"`
	Interpreter     []string      `help:"Run files with extension EXT through CMD, no shebang or exec bit needed (repeatable; EXT= with no command removes a default). Defaults: .py=python3 .pl=perl .sh=sh .php=php-cgi .rb=ruby." placeholder:"EXT=CMD" group:"Programs"`
	PassEnv         []string      `help:"Pass this variable of the bridge's own environment to programs (repeatable; NAME_* patterns allowed). PATH, LANG, LC_* and TZ always pass." placeholder:"NAME" group:"Programs"`
	SetEnv          []string      `help:"Set NAME=VALUE in every program's environment (repeatable)." sep:"none" placeholder:"NAME=VALUE" group:"Programs"`
	FastCGI         []string      `name:"fastcgi" help:"Programs that speak FastCGI themselves, served by a pool of persistent children (repeatable): a shell pattern on the path under --root ('*' does not match '/'), or an absolute one for an --allow path. Scripts run through an interpreter match by their own path; *.php runs one pool of php-cgi for every PHP script." placeholder:"GLOB" group:"Warm mode"`
	FastCGIProcs    int           `name:"fastcgi-procs" help:"Children per FastCGI program at most; more requests wait in the queue (--queue-timeout), then 503. Default: the number of CPUs, at least 2." group:"Warm mode"`
	FastCGIMaxReqs  int           `name:"fastcgi-max-requests" help:"Replace a FastCGI child after this many requests (0: never)." group:"Warm mode"`
	FastCGIIdle     time.Duration `name:"fastcgi-idle" help:"Stop a FastCGI child idle this long (0: never)." default:"5m" group:"Warm mode"`
	FastCGIEnv      []string      `name:"fastcgi-env" help:"Set NAME=VALUE in the start environment of the FastCGI programs matching GLOB (repeatable), for configuration read before their accept loop, e.g. mapserv:MAPSERVER_CONFIG_FILE=/etc/mapserver.map. They start with --pass-env's variables and --set-env otherwise." sep:"none" placeholder:"GLOB:NAME=VALUE" group:"Warm mode"`
	Stderr          string        `help:"Where programs' standard error goes: log (the bridge's log), fcgi (FastCGI STDERR records: the web server's error log) or both." enum:"log,fcgi,both" default:"both" group:"Programs"`
	Timeout         time.Duration `help:"Per-request time limit; then SIGTERM to the program's process group, a grace period, SIGKILL, and 504. 0 disables." default:"60s" group:"Limits"`
	KillGrace       time.Duration `help:"Time between SIGTERM and SIGKILL." default:"3s" group:"Limits"`
	MaxProcs        int           `help:"Programs running at once; further requests wait up to --queue-timeout, then 503." default:"64" group:"Limits"`
	QueueTimeout    time.Duration `help:"How long a request waits for a free slot before 503." default:"10s" group:"Limits"`
	MaxBody         byteSize      `help:"Largest request body (413 beyond); 0 for no limit. Units K, M, G." default:"1G" group:"Limits"`
	MaxHeader       byteSize      `help:"Largest response header block a program may write (502 beyond). nginx itself refuses more than fastcgi_buffer_size (4K by default)." default:"32K" group:"Limits"`
	MaxParams       byteSize      `help:"Largest FastCGI params block of a request (431 beyond)." default:"256K" group:"Limits"`
	MaxSpool        byteSize      `help:"Request bodies held by the bridge at once, in memory and in --temp-dir together (503 beyond)." default:"4G" group:"Limits"`
	Slow            time.Duration `help:"Log requests that take longer than this, and count them as slow. 0 disables." default:"10s" group:"Limits"`
	LimitCPU        uint64        `help:"CPU seconds per program (RLIMIT_CPU). 0: unlimited." group:"Limits"`
	LimitMemory     byteSize      `help:"Address space per program (RLIMIT_AS). 0: unlimited." group:"Limits"`
	LimitFiles      uint64        `help:"Open files per program (RLIMIT_NOFILE). 0: inherited." group:"Limits"`
	LimitProcs      uint64        `help:"Processes of the program's user (RLIMIT_NPROC; does not bind root). 0: unlimited." group:"Limits"`
	LimitFsize      byteSize      `help:"Largest file a program may write (RLIMIT_FSIZE). 0: unlimited." group:"Limits"`
	Cgroup          string        `help:"Put each program in its own cgroup v2 under this parent (relative to the bridge's cgroup, or absolute), for --cgroup-memory and --cgroup-pids." placeholder:"DIR" group:"Limits"`
	CgroupMemory    byteSize      `help:"memory.max of each program's cgroup." group:"Limits"`
	CgroupPids      uint64        `help:"pids.max of each program's cgroup." group:"Limits"`
	User            string        `help:"Run programs as this user; when started as root, the bridge itself also switches to it after binding its sockets (unless --owner-mode)." group:"Privileges"`
	Group           string        `help:"Run programs with this group (default: the user's primary group)." group:"Privileges"`
	OwnerMode       bool          `help:"Run each program as the owner of its file, after suexec-like checks (see docs/security.md). Needs root." group:"Privileges"`
	MinUID          uint32        `name:"min-uid" help:"Lowest uid --owner-mode will run programs as." default:"100" group:"Privileges"`
	AllowRoot       bool          `help:"Allow running programs as root." group:"Privileges"`
	LogFormat       string        `help:"Log format." enum:"text,json" default:"text" group:"Logging"`
	LogLevel        string        `help:"Log level (SIGHUP re-reads it)." enum:"trace,debug,info,warn,error" default:"info" group:"Logging"`
	TempDir         string        `help:"Directory for request bodies larger than 64 KiB (unlinked files)." type:"path" placeholder:"DIR"`
	ShutdownTimeout time.Duration `help:"On SIGTERM, how long requests in flight may finish before they are cancelled." default:"30s"`
	WatchConfig     bool          `help:"Reload (as on SIGHUP) when the --config file changes."`
	Pprof           string        `help:"Serve Go's net/http/pprof profiles on ADDR (diagnostics; keep it on loopback)." hidden:"" placeholder:"ADDR"`

	configFile string // the --config path, for --watch-config
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run() error {
	fmt.Println("cgibridge", version)
	return nil
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
	// The bridge's own work per request is small next to its programs', and
	// every extra P invites cross-thread wake-ups between a request's
	// goroutines: on 2 cores one P costs a quarter less CPU per request
	// and more throughput. GOMAXPROCS in the environment still decides.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.NumCPU()/4))
	}
	s.configFile = string(cli.Config)
	opts, log, err := s.options()
	if err != nil {
		return err
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
	opts.CGI.Identity, opts.DropTo = decided.Identity, decided.DropTo
	if opts.Exec.Cgroups, err = daemon.OpenCgroups(s.Cgroup, uint64(s.CgroupMemory), s.CgroupPids); err != nil {
		return nil, nil, err
	}
	return opts, log, nil
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
		kong.UsageOnError(),
		kong.DefaultEnvars("CGIBRIDGE"),
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
			if n, ok := v.(json.Number); ok {
				return n.String(), nil
			}
			return v, nil
		}
	}
	return nil, nil
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
	p.FatalIfErrorf(err)
	if err := ctx.Run(&cli); err != nil {
		fmt.Fprintf(os.Stderr, "cgibridge: %v\n", err)
		os.Exit(1)
	}
}
