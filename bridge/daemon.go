// This file holds the daemon: it opens the listeners, runs the FastCGI
// server, the optional development HTTP front end and status endpoint,
// applies SIGHUP reloads, and drains on SIGTERM/SIGINT.

package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Options is the whole configuration of a running bridge.
type Options struct {
	Listen     []string // --listen specs; none: inherited sockets
	ListenOpts listen.Options
	CGI        CGIConfig

	MaxConns       int
	MaxBodyBytes   int64
	MaxParamsBytes int
	TempDir        string

	HTTP   string // development HTTP front end address, or ""
	Status string // status/metrics address, or ""
	Pprof  string // net/http/pprof address, or "" (hidden diagnostics flag)

	ShutdownTimeout time.Duration
	// DropTo, when set, is the identity the bridge itself switches to
	// after binding its sockets.
	DropTo *sandbox.Identity
	// LogLevel is applied to the root logger (also on reload).
	LogLevel hclog.Level
	// WatchFiles, when set, are watched and a change reloads the
	// configuration as SIGHUP does (--watch-config).
	WatchFiles []string
}

// Daemon is a running bridge.
type Daemon struct {
	log     hclog.Logger
	opts    *Options
	stats   *status.Stats
	handler *CGIHandler
	server  *Server
	lns     []*listen.Listener
	http    *http.Server
	status  *http.Server
	pprof   *http.Server
	front   *pipeListener
	sigs    chan os.Signal
}

// NewDaemon validates opts and opens every socket. Nothing is served
// until Run.
func NewDaemon(opts *Options, log hclog.Logger) (*Daemon, error) {
	d := &Daemon{log: log, opts: opts, stats: status.New(opts.CGI.MaxProcs, nil)}
	// Caught before the first socket exists: a supervisor may send SIGTERM
	// as soon as it sees the socket, and that must drain, not kill.
	d.sigs = make(chan os.Signal, 4)
	signal.Notify(d.sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	h, err := NewCGIHandler(&opts.CGI, log.Named("cgi"), d.stats)
	if err != nil {
		signal.Stop(d.sigs)
		return nil, err
	}
	d.handler = h
	d.server = &Server{
		Handler:        h,
		Log:            log.Named("fcgi"),
		MaxConns:       opts.MaxConns,
		MaxBodyBytes:   opts.MaxBodyBytes,
		MaxParamsBytes: opts.MaxParamsBytes,
		TempDir:        opts.TempDir,
		RequestDone:    h.RequestDone,
		Stats:          d.stats,
	}
	if err := d.openListeners(); err != nil {
		d.closeListeners()
		signal.Stop(d.sigs)
		return nil, err
	}
	return d, nil
}

func (d *Daemon) openListeners() error {
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
			return fmt.Errorf("--listen %s: %w", spec, err)
		}
		d.lns = append(d.lns, l)
	}
	if len(d.lns) == 0 && d.opts.HTTP == "" {
		return errors.New("nothing to listen on: pass --listen unix:/run/cgibridge.sock (or tcp:127.0.0.1:9000), start under systemd socket activation or spawn-fcgi, or use --http for development")
	}
	if d.opts.HTTP != "" {
		d.front = newPipeListener()
		ln, err := net.Listen("tcp", d.opts.HTTP)
		if err != nil {
			return fmt.Errorf("--http %s: %w", d.opts.HTTP, err)
		}
		d.http = &http.Server{Handler: newHTTPFront(d.front, &d.opts.CGI, d.log.Named("http")), ReadHeaderTimeout: 30 * time.Second}
		go d.serveHTTP(d.http, ln, "http front end")
	}
	if d.opts.Pprof != "" {
		ln, err := net.Listen("tcp", d.opts.Pprof)
		if err != nil {
			return fmt.Errorf("--pprof %s: %w", d.opts.Pprof, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		d.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go d.serveHTTP(d.pprof, ln, "pprof")
	}
	if d.opts.Status != "" {
		ln, err := net.Listen("tcp", d.opts.Status)
		if err != nil {
			return fmt.Errorf("--status %s: %w", d.opts.Status, err)
		}
		d.status = &http.Server{Handler: status.Handler(d.stats), ReadHeaderTimeout: 10 * time.Second}
		go d.serveHTTP(d.status, ln, "status")
	}
	return nil
}

func (d *Daemon) serveHTTP(s *http.Server, ln net.Listener, what string) {
	d.log.Info("serving "+what, "addr", ln.Addr().String())
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		d.log.Error(what+" stopped", "error", err)
	}
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
	if d.http != nil {
		d.http.Close()
	}
	if d.status != nil {
		d.status.Close()
	}
	if d.pprof != nil {
		d.pprof.Close()
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
		go func() { errc <- d.server.Serve(d.front) }()
	}
	if err := listen.Notify("READY=1\nSTATUS=serving"); err != nil {
		d.log.Warn("sd_notify failed", "error", err)
	}

	var changes <-chan []string
	if len(d.opts.WatchFiles) > 0 {
		w, err := watcher.New(d.opts.WatchFiles, watcher.Options{Log: d.log.Named("watch")})
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
			if errors.Is(err, ErrServerClosed) {
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
	d.log.Info("stopped")
	return nil
}

// reload applies what can change without dropping a connection: program
// limits, interpreters, environment, log level. Listener changes need a
// restart and are reported as such.
func (d *Daemon) reload(load func() (*Options, error)) {
	if load == nil {
		d.log.Warn("SIGHUP ignored: no configuration to re-read")
		return
	}
	next, err := load()
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "error", err)
		return
	}
	if err := d.handler.Reload(&next.CGI); err != nil {
		d.log.Error("reload failed; keeping the running configuration", "error", err)
		return
	}
	d.log.SetLevel(next.LogLevel)
	if fmt.Sprint(next.Listen) != fmt.Sprint(d.opts.Listen) || next.HTTP != d.opts.HTTP || next.Status != d.opts.Status ||
		next.ListenOpts.SocketMode != d.opts.ListenOpts.SocketMode {
		d.log.Warn("listener options changed; they take effect only after a restart")
	}
	d.log.Info("configuration reloaded", "max_procs", next.CGI.MaxProcs, "timeout", next.CGI.Timeout, "log_level", next.LogLevel.String())
}
