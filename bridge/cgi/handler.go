// This file holds the Handler and the life of one request through it:
// resolve, wait for the body, build the job, run it, conclude.

package cgi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/cgienv"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Handler serves FastCGI requests by running CGI programs through a
// dispatcher. It implements bridge.Handler.
type Handler struct {
	log   hclog.Logger
	stats *status.Stats
	disp  *runner.Dispatcher

	cfg     atomic.Pointer[Config]
	environ []string
	paths   sync.Map // PATH value NUL interpreter name -> path
	served  servedScripts
}

// New validates cfg and returns a handler that runs jobs through disp.
func New(cfg *Config, disp *runner.Dispatcher, log hclog.Logger, stats *status.Stats) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{log: log, stats: stats, disp: disp, environ: os.Environ()}
	h.cfg.Store(cfg)
	return h, nil
}

// Reload replaces the configuration; requests already running keep theirs.
func (h *Handler) Reload(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	h.cfg.Store(cfg)
	return nil
}

// Config returns the configuration in force.
func (h *Handler) Config() *Config { return h.cfg.Load() }

// exchange is what the handler learns about one request, for its answer and
// its access line.
type exchange struct {
	r       *bridge.Request
	log     *reqLog
	script  string
	res     runner.Result
	status  int // HTTP status of the response sent (0: none)
	outcome status.Outcome
}

// ServeFCGI serves r. The server calls it for every request it admitted,
// also one it has refused itself or that was aborted before its params
// ended, so that every request gets its access line here.
func (h *Handler) ServeFCGI(r *bridge.Request) uint32 {
	cfg := h.cfg.Load()
	x := &exchange{r: r, log: newReqLog(h.log, "req", r.Serial)}
	defer h.accessLine(x, cfg)
	if r.Refused() != 0 || r.Context().Err() != nil {
		return 0
	}
	params := r.Params // []fcgi.Pair is []cgienv.Param: the same type
	for hop := 0; ; hop++ {
		loc := h.serveOnce(x, cfg, params, hop > 0)
		if loc == "" {
			return x.res.AppStatus
		}
		if hop == maxLocalRedirects {
			x.log.Warn("too many local redirects", "location", loc)
			h.refuse(x, status.Failed, 502, "too many local redirects")
			return 0
		}
		x.log.Debug("local redirect", "location", loc)
		params = redirectParams(params, loc)
	}
}

// serveOnce runs one program; it returns a local redirect's location when
// the program asked for one (RFC 3875 6.2.2), else "".
func (h *Handler) serveOnce(x *exchange, cfg *Config, params []cgienv.Param, redirected bool) string {
	r := x.r
	ctx := r.Context()
	script, err := cgienv.Resolve(&cfg.Env, params)
	if err != nil {
		script, err = h.settle(ctx, cfg, params, err)
	}
	if err != nil {
		h.refuseResolve(x, err)
		return ""
	}
	h.served.note(script.Filename)
	x.script = script.Filename
	x.log.with("script", script.Filename)
	log := x.log

	var bodyLen int64
	if !redirected {
		if bodyLen, err = r.Body.Wait(ctx); err != nil {
			return "" // the server answers (413) or the request is gone
		}
	}
	env, err := cgienv.Environ(&cfg.Env, params, script, bodyLen, h.environ)
	if err != nil {
		h.refuseResolve(x, err)
		return ""
	}
	id, err := h.identity(cfg, script)
	if err != nil {
		log.Warn("refused", "reason", err)
		h.refuse(x, status.Refused, 403, "this program may not run")
		return ""
	}
	job := h.job(cfg, script, env, id)
	if !redirected {
		job.Body = r.Body
	}
	out := newCGIOutput(r.Stdout, cfg.MaxHeaderBytes)
	errSink := newStderrSink(r.Stderr, log, cfg.Stderr)
	job.Stdout, job.Stderr = out, errSink

	stopSlow := func() bool { return false }
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
	x.res = h.disp.Run(ctx, job)
	stopSlow()
	errSink.flush()
	return h.conclude(x, cfg, job, out, errSink, log)
}

// job builds what the runner gets. It runs the file the confinement checks
// accepted (script.Path, symlinks resolved), never a name that could be
// swapped for a link in between; argv[0] and SCRIPT_FILENAME keep the name
// the request used.
func (h *Handler) job(cfg *Config, script *cgienv.Script, env []string, id *sandbox.Identity) *runner.Job {
	job := &runner.Job{
		Script:      script.Path,
		Filename:    script.Filename,
		Interpreted: script.Interpreted,
		Env:         env,
		Dir:         script.Dir,
		Identity:    id,
		Timeout:     cfg.Timeout,
	}
	if script.Interpreted {
		job.Argv = append(append(make([]string, 0, len(script.Argv)), script.Argv[:len(script.Argv)-1]...), script.Path)
		job.Program = h.lookPath(script.Argv[0], cfg)
	} else {
		job.Argv = script.Argv
		job.Program = script.Path
	}
	return job
}

// lookPath finds an interpreter named without a path in the programs' PATH
// (cfg.searchPath: --pass-env PATH, --set-env PATH or the default), as
// execvp would for them — not in the bridge's own PATH, and not in one the
// request's params bring. It runs after any privilege drop, so access(2)
// answers for the programs' user. Results are cached per PATH and name;
// both come from the configuration, so the cache stays small.
func (h *Handler) lookPath(name string, cfg *Config) string {
	if strings.Contains(name, "/") {
		return name
	}
	key := cfg.searchPath + "\x00" + name
	if p, ok := h.paths.Load(key); ok {
		return p.(string)
	}
	for _, dir := range filepath.SplitList(cfg.searchPath) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // "." or a relative entry would depend on the script's directory
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && unix.Access(p, unix.X_OK) == nil {
			h.paths.Store(key, p)
			return p
		}
	}
	return name // exec fails with ENOENT and the answer explains
}

// identity decides who the program runs as.
func (h *Handler) identity(cfg *Config, script *cgienv.Script) (*sandbox.Identity, error) {
	if !cfg.OwnerMode {
		return cfg.Identity, nil
	}
	return sandbox.OwnerIdentity(ownerRoot(cfg, script.Path), script.Path, cfg.MinUID, cfg.AllowRoot)
}

// ownerRoot is the directory owner-mode checks start from: the root that
// holds the script.
func ownerRoot(cfg *Config, path string) string {
	if cfg.Env.Root != "" && strings.HasPrefix(path, cfg.Env.Root+"/") {
		return cfg.Env.Root
	}
	return filepath.Dir(path)
}

// A deploy replaces a program in steps: `install` removes it, writes the new
// one and only then makes it executable; `git checkout` removes and writes
// it. A request that arrives in between would be a 404 or 403 although the
// program was served a moment ago and is served again a moment later. So a
// refusal of a script that was served recently waits briefly for the file to
// settle before it stands; one that really went stays refused, at the cost
// of settleWait once.
const (
	settleWait   = 200 * time.Millisecond
	settleRecent = 10 * time.Minute
	maxServed    = 10000
)

// settle resolves the request again while a recently served script is
// missing or not executable, until settleWait has passed.
func (h *Handler) settle(ctx context.Context, cfg *Config, params []cgienv.Param, err error) (*cgienv.Script, error) {
	var ce *cgienv.Error
	if !errors.As(err, &ce) || (ce.Status != 404 && ce.Status != 403) || !h.served.recent(ce.Path) {
		return nil, err
	}
	deadline := time.Now().Add(settleWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
		script, rerr := cgienv.Resolve(&cfg.Env, params)
		if rerr == nil {
			return script, nil
		}
	}
	h.served.forget(ce.Path)
	return nil, err
}

// servedScripts remembers when each script was last served, coarsely.
type servedScripts struct {
	m sync.Map // path -> unix seconds
	n atomic.Int64
}

func (s *servedScripts) note(path string) {
	now := time.Now().Unix()
	if v, ok := s.m.Load(path); ok && v.(int64) == now {
		return
	}
	if _, loaded := s.m.Swap(path, now); !loaded && s.n.Add(1) > maxServed {
		s.m.Clear()
		s.n.Store(0)
	}
}

func (s *servedScripts) recent(path string) bool {
	v, ok := s.m.Load(path)
	return ok && time.Since(time.Unix(v.(int64), 0)) < settleRecent
}

func (s *servedScripts) forget(path string) {
	if _, ok := s.m.LoadAndDelete(path); ok {
		s.n.Add(-1)
	}
}
