// This file holds the CGI handler: for each request it resolves the program
// (cgienv), builds its environment, waits for a --max-procs slot, runs it
// through a runner, and turns the outcome into a response — the program's
// own, or a clear status with one log line saying why.

package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/cgiresp"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/cgienv"
	"github.com/hashicorp/go-hclog"
)

// StderrMode says where a program's standard error goes.
type StderrMode int

// Stderr destinations.
const (
	StderrBoth StderrMode = iota // FastCGI STDERR records and the bridge's log
	StderrLog                    // the bridge's log only
	StderrFCGI                   // FastCGI STDERR records only (the web server logs them)
)

// ParseStderrMode parses "both", "log" or "fcgi".
func ParseStderrMode(s string) (StderrMode, error) {
	switch s {
	case "both", "":
		return StderrBoth, nil
	case "log":
		return StderrLog, nil
	case "fcgi":
		return StderrFCGI, nil
	}
	return 0, fmt.Errorf("--stderr %q: want log, fcgi or both", s)
}

// CGIConfig is everything a reload may change about running programs.
type CGIConfig struct {
	Env            cgienv.Config
	Timeout        time.Duration
	KillGrace      time.Duration
	MaxProcs       int
	QueueWait      time.Duration
	MaxHeaderBytes int
	Stderr         StderrMode
	Slow           time.Duration // log requests slower than this (0: never)

	// Run programs as this identity (nil: as the bridge).
	Identity *sandbox.Identity
	// OwnerMode runs each program as its file's owner, after the checks of
	// sandbox.OwnerIdentity.
	OwnerMode bool
	MinUID    uint32
	// AllowRoot permits running programs as root.
	AllowRoot bool
	// Limits are applied before the program's first instruction through
	// prlimit(1) (Prlimit) when present, else the exec shim inside the
	// bridge's own binary (Self).
	Limits  sandbox.Limits
	Prlimit string
	Self    string
	// Cgroups, when set, gives each program a cgroup with these limits.
	Cgroups            *sandbox.CgroupParent
	MemoryMax, PidsMax uint64
}

// CGIHandler serves requests by running CGI programs.
type CGIHandler struct {
	Log   hclog.Logger
	Stats *status.Stats

	cfg     atomic.Pointer[CGIConfig]
	limit   *limiter
	environ []string
	seq     atomic.Uint64
	paths   sync.Map // interpreter name -> path
}

// NewCGIHandler validates cfg and returns a handler using it.
func NewCGIHandler(cfg *CGIConfig, log hclog.Logger, stats *status.Stats) (*CGIHandler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &CGIHandler{Log: log, Stats: stats, environ: os.Environ()}
	h.limit = newLimiter(cfg.MaxProcs, queueLen(cfg.MaxProcs))
	h.cfg.Store(cfg)
	return h, nil
}

func queueLen(maxProcs int) int { return 4 * maxProcs }

func (c *CGIConfig) validate() error {
	if err := c.Env.Validate(); err != nil {
		return err
	}
	if c.MaxProcs <= 0 {
		return fmt.Errorf("--max-procs %d: must be at least 1", c.MaxProcs)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("--timeout %v: must not be negative", c.Timeout)
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = cgiresp.DefaultMaxHeaderBytes
	}
	if !c.AllowRoot && !c.OwnerMode && os.Geteuid() == 0 && (c.Identity == nil || c.Identity.UID == 0) {
		return errors.New("refusing to run programs as root: pass --user NAME (or --owner-mode), or --allow-root if you really mean it")
	}
	return nil
}

// Reload replaces the configuration; requests already running keep theirs.
func (h *CGIHandler) Reload(cfg *CGIConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	h.cfg.Store(cfg)
	h.limit.setLimit(cfg.MaxProcs, queueLen(cfg.MaxProcs))
	h.Stats.SetMaxProcs(cfg.MaxProcs)
	return nil
}

// maxLocalRedirects bounds RFC 3875 local redirects per request.
const maxLocalRedirects = 5

// ServeFCGI runs the program for r.
func (h *CGIHandler) ServeFCGI(r *Request) uint32 {
	cfg := h.cfg.Load()
	params := r.Params
	for hop := 0; ; hop++ {
		redirect := h.serveOnce(r, cfg, params, hop > 0)
		if redirect == "" {
			return 0
		}
		if hop == maxLocalRedirects {
			h.Log.Warn("too many local redirects", "req", r.Serial, "location", redirect)
			h.answer(r, 502, "too many local redirects")
			return 0
		}
		h.Log.Debug("local redirect", "req", r.Serial, "location", redirect)
		params = redirectParams(params, redirect)
	}
}

// serveOnce runs one program; it returns a local redirect's location when
// the program asked for one (RFC 3875 6.2.2), else "".
func (h *CGIHandler) serveOnce(r *Request, cfg *CGIConfig, params []cgienv.Param, redirected bool) string {
	ctx := r.Context()
	script, err := cgienv.Resolve(&cfg.Env, params)
	if err != nil {
		h.refuse(r, err)
		return ""
	}
	r.Info.Script = script.Filename
	log := h.Log.With("req", r.Serial, "script", script.Filename)

	var bodyLen int64
	if !redirected {
		if bodyLen, err = r.Body.Wait(ctx); err != nil {
			return "" // the core answers (413) or the request is gone
		}
	}
	env, err := cgienv.Environ(&cfg.Env, params, script, bodyLen, h.environ)
	if err != nil {
		h.refuse(r, err)
		return ""
	}
	job := &Job{Path: h.lookPath(script.Argv[0]), Argv: script.Argv, Env: env, Dir: script.Dir}
	if !redirected {
		if job.Stdin, err = r.Body.Stdin(); err != nil {
			log.Error("cannot read spooled body", "error", err)
			h.answer(r, 500, "cannot read the request body")
			return ""
		}
	}
	if err := h.prepare(cfg, script, job); err != nil {
		log.Warn("refused", "reason", err)
		h.answer(r, 403, "this program may not run")
		return ""
	}

	h.Stats.QueueEnter()
	queued, err := h.limit.acquire(ctx, cfg.QueueWait)
	h.Stats.QueueLeave()
	if err != nil {
		if errors.Is(err, ErrOverloaded) {
			active, waiting := h.limit.counts()
			log.Warn("overloaded: no free slot", "max_procs", cfg.MaxProcs, "running", active, "queued", waiting)
			r.Info.Outcome = status.Refused
			h.answer(r, 503, "too many programs running; try again shortly")
		}
		return ""
	}
	defer h.limit.release()
	if queued {
		log.Debug("waited for a slot")
	}

	stopSlow := func() bool { return false }
	out := newCGIOutput(r.Stdout, cfg.MaxHeaderBytes)
	errSink := newStderrSink(r, log, cfg.Stderr)
	job.Stdout, job.Stderr = out, errSink
	if cleanup := h.cgroup(cfg, job, log); cleanup != nil {
		defer cleanup()
	}

	if cfg.Slow > 0 {
		// Like PHP-FPM's slowlog: said while the program still runs, so a
		// hung one is visible before its timeout.
		job.OnStart = func(pid int) {
			t := time.AfterFunc(cfg.Slow, func() {
				log.Warn("slow request: program still running", "pid", pid, "elapsed", cfg.Slow)
			})
			stopSlow = t.Stop
		}
	}
	runner := h.runnerFor(cfg, script)
	r.Info.Runner = runner.Name()
	h.Stats.Started()
	exit := runner.Run(ctx, job)
	stopSlow()
	h.Stats.Stopped()
	errSink.flush()
	r.Info.PID, r.Info.Exit = exit.PID, exit.String()
	log = log.With("pid", exit.PID)

	switch {
	case exit.StartErr != nil:
		h.startFailed(r, log, script, exit.StartErr)
	case exit.Canceled != nil:
		r.Info.Outcome = status.Aborted
		log.Info("program stopped: request ended", "cause", exit.Canceled, "exit", exit, "killed", exit.Killed)
	case exit.TimedOut:
		r.Info.Outcome = status.Timeout
		log.Warn("program timed out", "timeout", cfg.Timeout, "exit", exit, "killed", exit.Killed)
		if !out.started() {
			h.answer(r, 504, "the program did not answer in time")
		}
	case out.started():
		r.Info.Status = out.head.Status
		if exit.Lingered {
			log.Warn("descendants held the output open after the program exited; ended them", "grace", time.Second)
		}
	default:
		if out.head != nil && out.head.Kind == cgiresp.LocalRedirect {
			return out.head.Location
		}
		ferr := out.finish()
		r.Info.Outcome = status.Failed
		log.Error("bad CGI response", "error", ferr, "exit", exit, "stderr_tail", errSink.tail())
		h.answer(r, 502, "the program's response was not valid CGI output")
	}
	return ""
}

// RequestDone writes the request's access line and counts it. The server
// calls it once per request (Server.RequestDone).
func (h *CGIHandler) RequestDone(r *Request) {
	d := time.Since(r.Start)
	info := r.Info
	if code := r.Refused(); code != 0 {
		info.Status, info.Outcome = code, status.Refused
	}
	switch cause := context.Cause(r.Context()); {
	case errors.Is(cause, ErrAborted), errors.Is(cause, ErrConnClosed):
		info.Outcome = status.Aborted
	case errors.Is(cause, ErrShutdown) && info.Outcome == status.OK:
		info.Outcome = status.Aborted
	}
	slowAfter := h.cfg.Load().Slow
	slow := slowAfter > 0 && d >= slowAfter
	h.Stats.Done(info.Status, info.Outcome, d, r.Body.Size(), r.Stdout.Written(), slow)
	h.Log.Info("request",
		"req", r.Serial,
		"method", r.Param("REQUEST_METHOD"),
		"uri", r.Param("REQUEST_URI"),
		"script", info.Script,
		"status", info.Status,
		"outcome", info.Outcome.String(),
		"bytes_in", r.Body.Size(),
		"bytes_out", r.Stdout.Written(),
		"duration", d.Round(time.Microsecond),
		"exit", info.Exit,
		"runner", info.Runner,
	)
}

// runnerFor chooses how the script runs. Every script runs in exec mode
// for now.
func (h *CGIHandler) runnerFor(cfg *CGIConfig, _ *cgienv.Script) Runner {
	return &ExecRunner{Timeout: cfg.Timeout, KillGrace: cfg.KillGrace}
}

// lookPath finds an interpreter named without a path in the bridge's PATH.
// It runs after any privilege drop, so a directory the programs' user
// cannot enter (root's pyenv, say) is skipped. Results are cached.
func (h *CGIHandler) lookPath(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	if p, ok := h.paths.Load(name); ok {
		return p.(string)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return name // exec fails with ENOENT and startFailed explains
	}
	h.paths.Store(name, p)
	return p
}

// prepare decides who the program runs as and with which limits.
func (h *CGIHandler) prepare(cfg *CGIConfig, script *cgienv.Script, job *Job) error {
	id := cfg.Identity
	if cfg.OwnerMode {
		owner, err := sandbox.OwnerIdentity(ownerRoot(cfg, script.Path), script.Path, cfg.MinUID, cfg.AllowRoot)
		if err != nil {
			return err
		}
		id = owner
	}
	if id != nil && (id.UID != uint32(os.Geteuid()) || id.GID != uint32(os.Getegid())) {
		job.SysProcAttr = &syscall.SysProcAttr{Credential: id.Credential()}
	}
	switch {
	case cfg.Limits.IsZero():
	case cfg.Prlimit != "":
		job.Argv = sandbox.WrapPrlimit(cfg.Prlimit, cfg.Limits, append([]string{job.Path}, job.Argv[1:]...))
		job.Path = cfg.Prlimit
	case cfg.Self != "":
		job.Argv = sandbox.Wrap(cfg.Self, cfg.Limits, append([]string{job.Path}, job.Argv[1:]...))
		job.Path = cfg.Self
	}
	return nil
}

// ownerRoot is the directory owner-mode checks start from: the root that
// holds the script.
func ownerRoot(cfg *CGIConfig, path string) string {
	if cfg.Env.Root != "" && strings.HasPrefix(path, cfg.Env.Root+"/") {
		return cfg.Env.Root
	}
	return filepath.Dir(path)
}

func (h *CGIHandler) cgroup(cfg *CGIConfig, job *Job, log hclog.Logger) func() {
	if cfg.Cgroups == nil {
		return nil
	}
	name := fmt.Sprintf("req-%d", h.seq.Add(1))
	fd, cleanup, err := cfg.Cgroups.NewChild(name, cfg.MemoryMax, cfg.PidsMax)
	if err != nil {
		log.Warn("cannot create a cgroup for the program; running without", "error", err)
		return nil
	}
	attr := &syscall.SysProcAttr{}
	if job.SysProcAttr != nil {
		attr = job.SysProcAttr
	}
	attr.UseCgroupFD, attr.CgroupFD = true, fd
	job.SysProcAttr = attr
	return func() {
		if err := cleanup(); err != nil {
			log.Warn("cannot remove the program's cgroup", "error", err)
		}
	}
}

// startFailed explains an exec failure: the classic causes get their own
// message, so a missing shebang is not an unexplained 502.
func (h *CGIHandler) startFailed(r *Request, log hclog.Logger, script *cgienv.Script, err error) {
	r.Info.Outcome = status.Failed
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		log.Error("cannot execute: no #! line and not a binary; add a shebang or map its extension with --interpreter", "error", err)
		h.answer(r, 502, "the program cannot be executed")
	case errors.Is(err, os.ErrNotExist) && script.Interpreted:
		log.Error("interpreter not found; install it or change --interpreter", "interpreter", script.Argv[0], "error", err)
		h.answer(r, 502, "the program's interpreter is missing")
	case errors.Is(err, os.ErrNotExist):
		log.Error("cannot execute: the program or its #! interpreter is missing", "error", err)
		h.answer(r, 502, "the program cannot be executed")
	case errors.Is(err, os.ErrPermission):
		r.Info.Outcome = status.Refused
		log.Error("cannot execute: permission denied", "user", userName(), "error", err)
		h.answer(r, 403, "the program may not be executed")
	default:
		log.Error("cannot start the program", "error", err)
		h.answer(r, 502, "the program could not be started")
	}
}

// refuse answers a request the environment builder turned down.
func (h *CGIHandler) refuse(r *Request, err error) {
	r.Info.Outcome = status.Refused
	var ce *cgienv.Error
	if errors.As(err, &ce) {
		h.Log.Info("refused", "req", r.Serial, "status", ce.Status, "reason", ce.Reason, "path", ce.Path)
		h.answer(r, ce.Status, ce.Reason)
		return
	}
	h.Log.Error("cannot prepare the program", "req", r.Serial, "error", err)
	h.answer(r, 500, "internal error")
}

// answer sends a short response of the bridge's own.
func (h *CGIHandler) answer(r *Request, code int, msg string) {
	r.Info.Status = code
	if _, err := r.Stdout.Write(refusalBody(code, msg)); err != nil {
		r.Log.Debug("cannot send response", "status", code, "error", err)
	}
}

// redirectParams rewrites the params for a local redirect: a GET of the new
// path with no body, as RFC 3875 6.2.2 asks of the server.
func redirectParams(params []cgienv.Param, location string) []cgienv.Param {
	path, query, _ := strings.Cut(location, "?")
	docRoot := lastValue(params, "DOCUMENT_ROOT")
	out := make([]cgienv.Param, 0, len(params))
	for _, p := range params {
		switch p.Name {
		case "SCRIPT_FILENAME", "SCRIPT_NAME", "PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING",
			"REQUEST_URI", "DOCUMENT_URI", "REQUEST_METHOD", "CONTENT_LENGTH", "CONTENT_TYPE":
			continue
		}
		out = append(out, p)
	}
	out = append(out,
		cgienv.Param{Name: "REQUEST_METHOD", Value: "GET"},
		cgienv.Param{Name: "SCRIPT_NAME", Value: path},
		cgienv.Param{Name: "QUERY_STRING", Value: query},
		cgienv.Param{Name: "REQUEST_URI", Value: location},
	)
	if docRoot != "" {
		out = append(out, cgienv.Param{Name: "SCRIPT_FILENAME", Value: docRoot + path})
	}
	return out
}

func lastValue(params []cgienv.Param, name string) string {
	for i := len(params) - 1; i >= 0; i-- {
		if params[i].Name == name {
			return params[i].Value
		}
	}
	return ""
}

// stderrSink forwards a program's standard error to the web server and/or
// the log, and keeps its last bytes for the diagnosis of a failed request.
type stderrSink struct {
	r    *Request
	log  hclog.Logger
	mode StderrMode
	line []byte // partial line for the log
	last []byte // tail, at most tailLen
}

const (
	tailLen    = 1024
	maxLogLine = 2048
)

func newStderrSink(r *Request, log hclog.Logger, mode StderrMode) *stderrSink {
	return &stderrSink{r: r, log: log, mode: mode}
}

func (s *stderrSink) Write(p []byte) (int, error) {
	s.last = append(s.last, p...)
	if len(s.last) > tailLen {
		s.last = append(s.last[:0], s.last[len(s.last)-tailLen:]...)
	}
	if s.mode != StderrLog {
		s.r.Stderr.Write(p)
	}
	if s.mode != StderrFCGI {
		s.line = append(s.line, p...)
		for {
			i := bytes.IndexByte(s.line, '\n')
			if i < 0 {
				break
			}
			s.emit(s.line[:i])
			s.line = s.line[i+1:]
		}
		if len(s.line) > maxLogLine {
			s.emit(s.line)
			s.line = s.line[:0]
		}
	}
	return len(p), nil
}

func (s *stderrSink) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) > maxLogLine {
		line = line[:maxLogLine]
	}
	s.log.Info("stderr", "line", string(line))
}

func (s *stderrSink) flush() {
	if len(s.line) > 0 && s.mode != StderrFCGI {
		s.emit(s.line)
		s.line = nil
	}
}

func (s *stderrSink) tail() string {
	return strings.TrimSpace(strings.ToValidUTF8(string(s.last), "?"))
}

// userName names the user programs start as, for log lines.
func userName() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}
