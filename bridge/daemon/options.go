// Package daemon is a running bridge: it opens the listeners, builds the
// pieces — the FastCGI server, the CGI handler, the dispatcher and its
// runners — serves until SIGTERM, drains, applies SIGHUP reloads, and holds
// the bridge's privilege policy: who programs run as, when the bridge drops
// root, who owns its sockets.
package daemon

// This file holds Options, the whole configuration of a running bridge.

import (
	"time"

	"github.com/cgibridge/cgibridge/bridge/cgi"
	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/hashicorp/go-hclog"
)

// Options is the whole configuration of a running bridge.
type Options struct {
	Listen     []string // --listen specs; none: inherited sockets
	ListenOpts listen.Options
	CGI        cgi.Config
	Exec       ExecOptions
	FastCGI    FastCGIOptions
	Warm       WarmOptions

	MaxConns       int
	MaxBodyBytes   int64
	MaxParamsBytes int
	MaxSpoolBytes  int64
	TempDir        string
	ParamsTimeout  time.Duration
	IdleTimeout    time.Duration

	HTTP   string // development HTTP front end address, or ""
	Status string // status/metrics address, or ""
	Pprof  string // net/http/pprof address, or "" (hidden diagnostics flag)
	// PublicEndpoints lets --http and --status bind a non-loopback address.
	PublicEndpoints bool

	ShutdownTimeout time.Duration
	// DropTo, when set, is the identity the bridge itself switches to
	// after binding its sockets.
	DropTo *sandbox.Identity
	// DefaultIdentity is set when CGI.Identity is nobody only because no
	// user was chosen: the development front end may then choose better
	// (see reach.go).
	DefaultIdentity bool
	// LogLevel is applied to the root logger (also on reload).
	LogLevel hclog.Level
	// WatchFiles, when set, are watched and a change reloads the
	// configuration as SIGHUP does (--watch-config).
	WatchFiles []string
}

// ExecOptions configure the exec runner and its capacity.
type ExecOptions struct {
	MaxProcs  int
	QueueWait time.Duration
	KillGrace time.Duration
	// Limits are applied through the exec shim, the bridge's own binary.
	Limits sandbox.Limits
	Shim   string
	// Cgroups, when set, gives each program a cgroup with these limits.
	Cgroups            *sandbox.CgroupParent
	MemoryMax, PidsMax uint64
}

// FastCGIOptions configure the pools of persistent FastCGI children.
type FastCGIOptions struct {
	Globs       []string // --fastcgi; none: no pools
	Procs       int
	MaxRequests int
	Idle        time.Duration
	// Env is --fastcgi-env: GLOB:NAME=VALUE.
	Env []string
}

// WarmOptions configure the interpreter helpers for Python and Perl scripts.
type WarmOptions struct {
	Globs       []string // --warm; none: no helpers
	Spares      int
	MaxHelpers  int
	Idle        time.Duration
	MaxRequests uint64
	MaxAge      time.Duration
	MaxMemory   uint64
}
