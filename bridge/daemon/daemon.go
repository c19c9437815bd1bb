// This file holds the Daemon: it builds the pieces, opens the listeners,
// serves until SIGTERM or SIGINT (then drains), and applies SIGHUP reloads.

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/cgi"
	"github.com/cgibridge/cgibridge/bridge/devfront"
	"github.com/cgibridge/cgibridge/bridge/execrun"
	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/pool"
	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/bridge/zygote"
	"github.com/cgibridge/cgibridge/cgienv"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Daemon is a running bridge.
type Daemon struct {
	log       hclog.Logger
	opts      *Options
	stats     *status.Stats
	exec      *execrun.Runner
	pools     *pool.Runner
	warm      *zygote.Runner
	execLimit *runner.Limiter
	disp      *runner.Dispatcher
	handler   *cgi.Handler
	server    *bridge.Server
	lns       []*listen.Listener
	front     *devfront.Front
	endpoints []*endpoint
	sigs      chan os.Signal
	// dev is what the development front end chose when the default user
	// could not reach the root (reach.go); nil otherwise.
	dev *devChoice
}

// New validates opts, builds the pieces and opens every socket. Nothing is
// served until Run.
func New(opts *Options, log hclog.Logger) (*Daemon, error) {
	d := &Daemon{log: log, opts: opts, stats: status.New(opts.Exec.MaxProcs, nil)}
	if opts.Exec.MaxProcs <= 0 {
		return nil, fmt.Errorf("--max-procs %d: must be at least 1", opts.Exec.MaxProcs)
	}
	// Before anything else: the runners take the root (which may become
	// a copy) from opts.
	dev, err := d.reach(opts)
	if err != nil {
		return nil, err
	}
	d.dev = dev
	fail := func(err error) (*Daemon, error) {
		d.dev.close()
		return nil, err
	}
	// Caught before the first socket exists: a supervisor may send SIGTERM
	// as soon as it sees the socket, and that must drain, not kill.
	d.sigs = make(chan os.Signal, 4)
	signal.Notify(d.sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	d.execLimit = runner.NewLimiter(opts.Exec.MaxProcs, queueLen(opts.Exec.MaxProcs))
	routes, err := d.routes(opts)
	if err != nil {
		signal.Stop(d.sigs)
		return fail(err)
	}
	d.disp = runner.NewDispatcher(routes, opts.Exec.QueueWait, d.stats)
	h, err := cgi.New(&opts.CGI, d.disp, log.Named("cgi"), d.stats)
	if err != nil {
		d.disp.Close(context.Background())
		signal.Stop(d.sigs)
		return fail(err)
	}
	d.handler = h
	d.server = &bridge.Server{
		Handler:        h,
		Log:            log.Named("fcgi"),
		MaxConns:       opts.MaxConns,
		MaxBodyBytes:   opts.MaxBodyBytes,
		MaxParamsBytes: opts.MaxParamsBytes,
		MaxSpoolBytes:  opts.MaxSpoolBytes,
		TempDir:        opts.TempDir,
		ParamsTimeout:  opts.ParamsTimeout,
		IdleTimeout:    opts.IdleTimeout,
		Stats:          d.stats,
	}
	if err := d.open(); err != nil {
		d.closeListeners()
		signal.Stop(d.sigs)
		d.disp.Close(context.Background())
		return fail(err)
	}
	return d, nil
}

func queueLen(maxProcs int) int { return 4 * maxProcs }

// routes builds the dispatcher's routes: the warm runners for the programs
// they match, then exec mode, which takes every job (and what a warm runner
// cannot serve).
func (d *Daemon) routes(opts *Options) ([]runner.Route, error) {
	var routes []runner.Route
	if len(opts.FastCGI.Globs) > 0 {
		pools, err := d.newPools(opts)
		if err != nil {
			return nil, err
		}
		d.pools = pools
		d.stats.AddWarm(func() []status.Warm {
			var out []status.Warm
			for _, p := range pools.Status() {
				out = append(out, status.Warm{
					Runner: "fastcgi", Program: p.Program, Generation: p.Generation,
					Busy: p.Busy, Idle: p.Idle, Draining: p.Draining,
					Requests: p.Requests, Started: p.Started, Crashes: p.Crashes,
					LastExit: p.LastExit, Failing: p.Failing,
				})
			}
			return out
		})
		routes = append(routes, runner.Route{Match: pools.Match, Runner: pools})
	}
	if len(opts.Warm.Globs) > 0 {
		warm, err := d.newWarm(opts)
		if err != nil {
			return nil, err
		}
		d.warm = warm
		d.stats.AddWarm(warm.Status)
		// Forked children are programs running: they count against
		// --max-procs, as exec mode's do.
		routes = append(routes, runner.Route{Match: warm.Match, Runner: warm, Limiter: d.execLimit})
	}
	d.exec = execrun.New(d.execConfig(&opts.Exec))
	return append(routes, runner.Route{Runner: d.exec, Limiter: d.execLimit}), nil
}

func (d *Daemon) newWarm(opts *Options) (*zygote.Runner, error) {
	env, err := cgienv.BaseEnviron(&opts.CGI.Env, os.Environ())
	if err != nil {
		return nil, err
	}
	return zygote.New(zygote.Config{
		Globs:       opts.Warm.Globs,
		Root:        opts.CGI.Env.Root,
		Spares:      opts.Warm.Spares,
		MaxHelpers:  opts.Warm.MaxHelpers,
		Idle:        opts.Warm.Idle,
		MaxRequests: opts.Warm.MaxRequests,
		MaxAge:      opts.Warm.MaxAge,
		MaxMemory:   opts.Warm.MaxMemory,
		Env:         env,
		Limits:      opts.Exec.Limits,
		Shim:        opts.Exec.Shim,
		Grace:       opts.Exec.KillGrace,
		Log:         d.log.Named("warm"),
	})
}

func (d *Daemon) newPools(opts *Options) (*pool.Runner, error) {
	env, err := cgienv.BaseEnviron(&opts.CGI.Env, os.Environ())
	if err != nil {
		return nil, err
	}
	var progEnv []pool.ProgramEnv
	for _, e := range opts.FastCGI.Env {
		glob, nv, ok := strings.Cut(e, ":")
		name, _, hasValue := strings.Cut(nv, "=")
		if !ok || glob == "" || !hasValue || name == "" || strings.ContainsRune(name, 0) {
			return nil, fmt.Errorf("--fastcgi-env %q: want GLOB:NAME=VALUE, e.g. mapserv:MAPSERVER_CONFIG_FILE=/etc/mapserver.map", e)
		}
		progEnv = append(progEnv, pool.ProgramEnv{Glob: glob, NameValue: nv})
	}
	return pool.New(pool.Config{
		Globs:       opts.FastCGI.Globs,
		Root:        opts.CGI.Env.Root,
		Procs:       opts.FastCGI.Procs,
		QueueLen:    queueLen(opts.Exec.MaxProcs),
		MaxRequests: opts.FastCGI.MaxRequests,
		Idle:        opts.FastCGI.Idle,
		Grace:       opts.Exec.KillGrace,
		Env:         env,
		ProgramEnv:  progEnv,
		Limits:      opts.Exec.Limits,
		Shim:        opts.Exec.Shim,
		Cgroups:     opts.Exec.Cgroups,
		MemoryMax:   opts.Exec.MemoryMax,
		PidsMax:     opts.Exec.PidsMax,
		Log:         d.log.Named("fastcgi"),
	})
}

func (d *Daemon) execConfig(o *ExecOptions) execrun.Config {
	return execrun.Config{
		Grace:     process.Grace{Kill: o.KillGrace},
		Limits:    o.Limits,
		Shim:      o.Shim,
		Cgroups:   o.Cgroups,
		MemoryMax: o.MemoryMax,
		PidsMax:   o.PidsMax,
		Log:       d.log.Named("exec"),
	}
}

// open opens the listeners and binds the HTTP endpoints.
func (d *Daemon) open() error {
	llog := d.log.Named("listen")
	if len(d.opts.Listen) == 0 {
		inh, err := listen.Inherited(llog)
		if err != nil {
			return err
		}
		for _, l := range inh {
			if len(d.opts.ListenOpts.AllowFrom) > 0 {
				l.SetAllowFrom(d.opts.ListenOpts.AllowFrom)
			}
		}
		d.lns = inh
	}
	for _, spec := range d.opts.Listen {
		l, err := listen.Open(spec, d.opts.ListenOpts, llog)
		if err != nil {
			if strings.HasPrefix(err.Error(), "listen "+spec+": ") {
				return fmt.Errorf("--%w", err) // "--listen SPEC: why", said once
			}
			return fmt.Errorf("--listen %s: %w", spec, err)
		}
		d.lns = append(d.lns, l)
	}
	if len(d.lns) == 0 && d.opts.HTTP == "" {
		return errors.New("nothing to listen on: pass --listen unix:/run/cgibridge.sock (or tcp:127.0.0.1:9000), start under systemd socket activation or spawn-fcgi, or use --http for development")
	}
	pub := d.opts.PublicEndpoints
	if d.opts.HTTP != "" {
		d.front = devfront.New(d.opts.CGI.Env.Root, d.log.Named("http"))
		d.front.Describe = d.handler.Describe
		ep, err := bindEndpoint("--http", "http front end", d.opts.HTTP, pub, d.front)
		if err != nil {
			return err
		}
		d.endpoints = append(d.endpoints, ep)
	}
	if d.opts.Pprof != "" {
		ep, err := bindEndpoint("--pprof", "pprof", d.opts.Pprof, false, pprofHandler())
		if err != nil {
			return err
		}
		d.endpoints = append(d.endpoints, ep)
	}
	if d.opts.Status != "" {
		ep, err := bindEndpoint("--status", "status", d.opts.Status, pub, status.Handler(d.stats))
		if err != nil {
			return err
		}
		d.endpoints = append(d.endpoints, ep)
	}
	return nil
}

// checkSocketDirs warns, after a privilege drop, about socket files the
// bridge can no longer remove at exit. They are harmless — the next start
// finds them stale and replaces them — but should not surprise anyone.
func (d *Daemon) checkSocketDirs() {
	for _, l := range d.lns {
		if l.Unix == "" {
			continue
		}
		dir := filepath.Dir(l.Unix)
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			d.log.Warn("the socket's directory is not writable after the privilege drop: the socket file will be left at exit (the next start replaces it); use a directory owned by the user, e.g. systemd RuntimeDirectory=",
				"socket", l.Unix, "user", d.opts.DropTo.String())
		}
	}
}

func (d *Daemon) closeListeners() {
	for _, l := range d.lns {
		if err := l.Close(); err != nil {
			d.log.Warn("closing listener", "addr", l.Spec, "error", err)
		}
	}
	for _, ep := range d.endpoints {
		ep.srv.Close()
		ep.ln.Close()
	}
}

// Run serves until SIGTERM or SIGINT (then drains) and applies reload on
// SIGHUP. reload may be nil. It returns nil after a clean drain.
//
// Signals stay caught after Run returns: a repeated SIGTERM while the
// process exits must not turn a clean drain into death by signal.
func (d *Daemon) Run(reload func() (*Options, error)) error {
	if d.opts.DropTo != nil {
		if err := sandbox.DropPrivileges(d.opts.DropTo); err != nil {
			d.closeListeners()
			return fmt.Errorf("drop privileges to %s: %w", d.opts.DropTo, err)
		}
		d.log.Info("dropped privileges", "user", d.opts.DropTo.String())
		d.checkSocketDirs()
	}
	errc := make(chan error, len(d.lns)+1)
	for _, l := range d.lns {
		d.log.Info("listening", "addr", l.Spec)
		go func() { errc <- d.server.Serve(l) }()
	}
	if d.front != nil {
		go func() { errc <- d.server.Serve(d.front.Listener()) }()
	}
	// Only now, with the privileges dropped, do the endpoints serve.
	for _, ep := range d.endpoints {
		d.log.Info("serving "+ep.what, "addr", ep.ln.Addr().String())
		go func() {
			if err := ep.srv.Serve(ep.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error(ep.what+" stopped", "error", err)
			}
		}()
	}
	if err := listen.Notify("READY=1\nSTATUS=serving"); err != nil {
		d.log.Warn("sd_notify failed", "error", err)
	}

	var changes <-chan []string
	if len(d.opts.WatchFiles) > 0 {
		w, err := watcher.Files(d.opts.WatchFiles, watcher.Options{Log: d.log.Named("watch")})
		if err != nil {
			d.log.Error("cannot watch the configuration; SIGHUP still reloads", "error", err)
		} else {
			defer w.Close()
			changes = w.Changes()
		}
	}

	for {
		select {
		case err := <-errc:
			if errors.Is(err, bridge.ErrServerClosed) {
				continue
			}
			d.log.Error("listener failed; shutting down", "error", err)
			d.shutdown()
			return err
		case files := <-changes:
			d.log.Info("configuration file changed", "files", files)
			d.reload(reload)
		case sig := <-d.sigs:
			if sig == syscall.SIGHUP {
				d.reload(reload)
				continue
			}
			d.log.Info("shutting down", "signal", sig.String(), "deadline", d.opts.ShutdownTimeout)
			return d.shutdown()
		}
	}
}

// shutdown drains: no new connections, requests in flight finish until the
// deadline and are cancelled after it, then every runner stops its
// processes.
func (d *Daemon) shutdown() error {
	if err := listen.Notify("STOPPING=1"); err != nil {
		d.log.Warn("sd_notify failed", "error", err)
	}
	d.closeListeners()
	ctx, cancel := context.WithTimeout(context.Background(), d.opts.ShutdownTimeout)
	defer cancel()
	if err := d.server.Shutdown(ctx); err != nil {
		d.log.Warn("shutdown deadline passed; requests still running were cancelled", "deadline", d.opts.ShutdownTimeout)
	}
	if err := d.disp.Close(ctx); err != nil {
		d.log.Warn("runners did not stop in time", "error", err)
	}
	d.dev.close()
	d.log.Info("stopped")
	return nil
}

// reload applies what can change without dropping a connection: program
// limits, interpreters, environment, body limits, log level; and tells the
// runners to restart their processes. What needs a restart is said so.
func (d *Daemon) reload(load func() (*Options, error)) {
	if load == nil {
		d.log.Warn("SIGHUP ignored: no configuration to re-read")
		return
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	if err := listen.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)); err != nil {
		d.log.Warn("sd_notify failed", "error", err)
	}
	defer func() {
		if err := listen.Notify("READY=1\nSTATUS=serving"); err != nil {
			d.log.Warn("sd_notify failed", "error", err)
		}
	}()
	next, err := load()
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "error", err)
		return
	}
	if next.Exec.MaxProcs <= 0 {
		d.log.Error("reload failed; keeping the running configuration", "error", fmt.Sprintf("--max-procs %d: must be at least 1", next.Exec.MaxProcs))
		return
	}
	err = d.dev.apply(next)
	if err == nil && d.opts.DropTo != nil && (!sameIdentity(next.CGI.Identity, d.opts.CGI.Identity) || next.CGI.OwnerMode != d.opts.CGI.OwnerMode) {
		// The bridge gave up root: it can no longer start programs as
		// anyone else, nor as their owners.
		d.log.Warn("option changed; it takes effect only after a restart (the bridge has dropped root)", "option", "--user/--group/--owner-mode")
		next.CGI.Identity, next.CGI.OwnerMode, next.DropTo = d.opts.CGI.Identity, d.opts.CGI.OwnerMode, d.opts.DropTo
		err = next.CGI.Validate()
	}
	if err == nil {
		err = checkReach(next, d.log)
	}
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "error", err)
		return
	}
	if err := d.handler.Reload(&next.CGI); err != nil {
		d.log.Error("reload failed; keeping the running configuration", "error", err)
		return
	}
	if (next.Exec.Cgroups == nil) != (d.opts.Exec.Cgroups == nil) ||
		next.Exec.Cgroups != nil && next.Exec.Cgroups.Path() != d.opts.Exec.Cgroups.Path() {
		d.log.Warn("option changed; it takes effect only after a restart", "option", "--cgroup")
		next.Exec.Cgroups = d.opts.Exec.Cgroups
	}
	d.exec.SetConfig(d.execConfig(&next.Exec))
	d.execLimit.SetLimit(next.Exec.MaxProcs, queueLen(next.Exec.MaxProcs))
	d.stats.SetMaxProcs(next.Exec.MaxProcs)
	d.disp.SetQueueWait(next.Exec.QueueWait)
	d.server.SetMaxBodyBytes(next.MaxBodyBytes)
	d.server.SetTempDir(next.TempDir)
	d.log.SetLevel(next.LogLevel)
	d.warnRestartOnly(next)
	d.disp.Reload()
	d.opts.CGI, d.opts.Exec = next.CGI, next.Exec
	d.opts.MaxBodyBytes, d.opts.TempDir = next.MaxBodyBytes, next.TempDir
	d.log.Info("configuration reloaded", "max_procs", next.Exec.MaxProcs, "timeout", next.CGI.Timeout, "max_body", next.MaxBodyBytes, "log_level", next.LogLevel.String())
}

// warnRestartOnly names each changed option that only a restart applies.
func (d *Daemon) warnRestartOnly(next *Options) {
	cur := d.opts
	changed := func(name string, differ bool) {
		if differ {
			d.log.Warn("option changed; it takes effect only after a restart", "option", name)
		}
	}
	changed("--listen", fmt.Sprint(next.Listen) != fmt.Sprint(cur.Listen))
	changed("--socket-mode/--socket-owner/--socket-group", next.ListenOpts.SocketMode != cur.ListenOpts.SocketMode ||
		next.ListenOpts.SocketOwner != cur.ListenOpts.SocketOwner || next.ListenOpts.SocketGroup != cur.ListenOpts.SocketGroup)
	changed("--allow-from", fmt.Sprint(next.ListenOpts.AllowFrom) != fmt.Sprint(cur.ListenOpts.AllowFrom))
	changed("--http", next.HTTP != cur.HTTP)
	changed("--status", next.Status != cur.Status)
	changed("--max-conns", next.MaxConns != cur.MaxConns)
	changed("--max-params", next.MaxParamsBytes != cur.MaxParamsBytes)
	changed("--max-spool", next.MaxSpoolBytes != cur.MaxSpoolBytes)
	changed("--params-timeout/--idle-timeout", next.ParamsTimeout != cur.ParamsTimeout || next.IdleTimeout != cur.IdleTimeout)
	changed("--shutdown-timeout", next.ShutdownTimeout != cur.ShutdownTimeout)
	changed("--fastcgi*", fmt.Sprint(next.FastCGI) != fmt.Sprint(cur.FastCGI))
	changed("--warm*", fmt.Sprint(next.Warm) != fmt.Sprint(cur.Warm))
}

// sameIdentity compares who two identities run as.
func sameIdentity(a, b *sandbox.Identity) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID && a.GID == b.GID && slices.Equal(a.Groups, b.Groups)
}
