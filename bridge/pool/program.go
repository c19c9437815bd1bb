// This file holds one program's pool: its generations, and the life of a
// request on one of its children.

package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
)

// childSpec is what a program's children are started as.
type childSpec struct {
	name  string // for log lines: the program, or the script it serves
	path  string
	argv  []string
	env   []string
	dir   string
	id    *sandbox.Identity
	files []string // whose signatures make a generation
}

// program is the pool of one program.
type program struct {
	r    *Runner
	spec childSpec
	lim  *runner.Limiter
	log  hclog.Logger

	mu      sync.Mutex
	gen     *generation // current; nil before the first request
	gens    int
	retired []*generation // old generations with children still alive
	stats   counters

	noKeep       atomic.Bool  // the program closes kept connections
	keepFailures atomic.Int32 // kept connections it closed
}

// generation is the children started from one version of the program.
type generation struct {
	n        int
	sig      []watcher.Signature
	idle     []*child // most recently used last
	children map[*child]bool
	// A generation whose children cannot start waits until retryAt
	// before it tries again, doubling backoff each time.
	failure error
	retryAt time.Time
	backoff time.Duration
	logged  bool // its start failure was logged
	served  bool // a child of it answered a request
}

// counters are a pool's numbers for the status page.
type counters struct {
	requests, started, crashes uint64
	lastExit                   string
}

func newProgram(r *Runner, spec childSpec) *program {
	return &program{
		r:    r,
		spec: spec,
		lim:  runner.NewLimiter(r.cfg.Procs, r.cfg.QueueLen),
		log:  r.log.With("program", spec.name),
	}
}

// uses reports whether any of files is one of the program's.
func (p *program) uses(files []string) bool {
	for _, f := range files {
		if slices.Contains(p.spec.files, f) {
			return true
		}
	}
	return false
}

func (p *program) signature() []watcher.Signature {
	sig := make([]watcher.Signature, len(p.spec.files))
	for i, f := range p.spec.files {
		sig[i] = watcher.Stat(f)
	}
	return sig
}

// complete reports whether every file of a signature exists: while a
// deploy replaces the program (git checkout removes, then writes), the
// current generation goes on serving.
func complete(sig []watcher.Signature) bool {
	for _, s := range sig {
		if !s.Exists {
			return false
		}
	}
	return true
}

// current returns the generation for the program as it is on disk now,
// starting a new one when its files changed. Called with p.mu.
func (p *program) current(sig []watcher.Signature) *generation {
	switch {
	case p.gen == nil:
		p.newGeneration(sig, "first request")
	case !slices.Equal(sig, p.gen.sig) && complete(sig):
		p.newGeneration(sig, "program changed")
	}
	return p.gen
}

// newGeneration makes a new current generation; the old one stops its idle
// children now and its busy ones when they finish. Called with p.mu.
func (p *program) newGeneration(sig []watcher.Signature, why string) {
	if old := p.gen; old != nil {
		p.retire(old)
	}
	p.gens++
	p.gen = &generation{n: p.gens, sig: sig, children: map[*child]bool{}}
	if p.gens > 1 {
		p.log.Info("new generation of FastCGI children", "generation", p.gens, "reason", why)
	}
}

// retire stops an old generation's idle children. Called with p.mu.
func (p *program) retire(g *generation) {
	for _, c := range g.idle {
		c.stop(p.r.cfg.Grace)
	}
	g.idle = nil
	if len(g.children) > 0 {
		p.retired = append(p.retired, g)
	}
}

// checkGeneration starts a new generation if the files changed (a file
// watch woke the pool).
func (p *program) checkGeneration() {
	sig := p.signature()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != nil && !slices.Equal(sig, p.gen.sig) && complete(sig) {
		p.newGeneration(sig, "program changed")
	}
}

// run serves job on a child. A request no child ever got is tried again:
// on another child when one went away between requests, and in exec mode
// (ErrUnavailable) when the program's children cannot start.
func (p *program) run(ctx context.Context, job *runner.Job) runner.Result {
	for attempt := 0; ; attempt++ {
		c, err := p.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return runner.Result{Cause: context.Cause(ctx)}
			}
			return runner.Result{Err: err}
		}
		res, again := p.serve(ctx, c, job)
		if !again {
			return res
		}
		if attempt == 3 {
			return runner.Result{Err: runner.Unavailable(fmt.Sprintf("FastCGI program %s: no child took the request in %d tries", p.spec.name, attempt+1))}
		}
	}
}

// acquire returns an idle child of the current generation, or starts one.
// The dispatcher has taken one of the pool's slots for the request, so a
// generation never has more children busy than Procs.
func (p *program) acquire(ctx context.Context) (*child, error) {
	sig := p.signature()
	p.mu.Lock()
	g := p.current(sig)
	if g.failure != nil && time.Now().Before(g.retryAt) {
		err := g.failure
		p.mu.Unlock()
		return nil, unavailable(p.spec.name, err)
	}
	if n := len(g.idle); n > 0 {
		c := g.idle[n-1]
		g.idle = g.idle[:n-1]
		c.busy = true
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.start(ctx, g)
	if err != nil {
		p.startFailed(g, err)
		return nil, unavailable(p.spec.name, err)
	}
	return c, nil
}

func unavailable(name string, err error) error {
	return runner.Unavailable(fmt.Sprintf("FastCGI program %s cannot start: %v", name, err))
}

// startFailed puts the generation in backoff and logs the first failure.
func (p *program) startFailed(g *generation, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g.backoff = min(max(2*g.backoff, 100*time.Millisecond), 30*time.Second)
	g.failure, g.retryAt = err, time.Now().Add(g.backoff)
	if !g.logged {
		g.logged = true
		p.log.Error("FastCGI children cannot start; their requests run in exec mode until they can", "generation", g.n, "error", err, "retry_in", g.backoff)
	} else {
		p.log.Debug("FastCGI child still cannot start", "generation", g.n, "error", err, "retry_in", g.backoff)
	}
}

// serve sends the request to c. It reports whether the request never
// reached a child and may be tried again.
//
// Each child keeps its connection between requests (FCGI_KEEP_CONN: libfcgi,
// php-cgi and Go's net/http/fcgi honour it), which saves a connect and a
// close per request, and is handed back with the child at its END_REQUEST. A
// program that closes kept connections anyway is sent one request per
// connection from then on.
func (p *program) serve(ctx context.Context, c *child, job *runner.Job) (runner.Result, bool) {
	res := runner.Result{PID: c.pid}
	reused := c.cc != nil
	if !reused {
		nc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: c.sock, Net: "unix"})
		if err != nil {
			// The child exited between requests (php-cgi after
			// PHP_FCGI_MAX_REQUESTS, gitweb after 100), or is exiting: its
			// socket is closed.
			p.release(c, true)
			return res, true
		}
		c.cc = fcgi.NewClientConn(nc)
		c.cc.Strict = true
	}
	cc := c.cc
	var body io.Reader
	if job.Body != nil {
		var err error
		if body, err = job.Body.Stdin(); err != nil {
			p.release(c, false)
			res.Err = &runner.StartError{Kind: runner.StartOther, Err: fmt.Errorf("read the spooled body: %w", err)}
			return res, false
		}
	}
	keep := !p.noKeep.Load()
	out := &counted{w: job.Stdout}
	// The child is free as soon as it has sent END_REQUEST: it goes back to
	// the pool before its answer is relayed, which then leaves with the
	// request's end in one write.
	released := false
	cc.OnEnd = func() {
		released = true
		if !keep {
			c.cc = nil // ours to close once Do has returned
		}
		p.finished(c)
		if h, ok := job.Stdout.(interface{ Hold() }); ok {
			h.Hold()
		}
	}
	if job.OnStart != nil {
		job.OnStart(c.pid)
	}
	end, err := cc.DoEnv(ctx, 1, fcgi.RoleResponder, keep, job.Env, body, out, job.Stderr)
	res.Started = true
	if released && !keep {
		cc.Close()
		cc.Release()
	}
	if released {
		res.AppStatus = end.AppStatus
		switch {
		case ctx.Err() != nil:
			res.Cause = context.Cause(ctx)
		case err != nil:
			// The child answered; delivering its answer failed.
			res.Err = &runner.ChildError{PID: c.pid, Err: err}
		case end.ProtocolStatus != fcgi.RequestComplete:
			res.Err = &runner.ChildError{PID: c.pid, Err: fmt.Errorf("END_REQUEST with protocol status %v", end.ProtocolStatus)}
		}
		return res, false
	}
	// The child did not finish the request: whatever it is now, this
	// connection is done.
	c.dropConn()
	if ctx.Err() != nil {
		// Timeout or abort: answered as exec mode answers; the child may
		// be stuck in the request, so it is stopped and replaced.
		res.Cause = context.Cause(ctx)
		p.log.Info("stopping FastCGI child: its request ended", "pid", c.pid, "cause", res.Cause)
		p.release(c, true)
		return res, false
	}
	if err == nil {
		err = errors.New("the connection ended without END_REQUEST")
	}
	if reused && out.n == 0 && c.waitExit(50*time.Millisecond) == nil {
		// The child is alive and closed the kept connection without
		// reading the request: it does not keep connections. The request
		// goes again, on a new one.
		if p.keepFailures.Add(1) >= 2 && !p.noKeep.Swap(true) {
			p.log.Info("the FastCGI program closes kept connections: one request per connection from now on")
		}
		p.release(c, false)
		return runner.Result{}, true
	}
	// The child failed the request: it died, or broke the protocol.
	exit := c.waitExit(time.Second)
	p.release(c, true)
	if out.n == 0 && exit != nil {
		switch {
		case !c.served:
			// A fresh child that died without a word: the program cannot
			// start as a FastCGI child (bad binary, missing library).
			p.startFailed(c.g, fmt.Errorf("child %d: %v", c.pid, exit))
			res.Started = false
			res.Err = unavailable(p.spec.name, fmt.Errorf("child %d %v before it answered", c.pid, exit))
			return res, false
		case exit.Code == 0, reused && unread(err):
			// A child that had served before ended without a byte of this
			// request's answer: cleanly, or — whatever its status — with
			// the request still unread in its socket (the kernel then
			// resets the connection). It exited between requests and never
			// read this one (the exit raced the request): another child
			// gets the request.
			p.log.Debug("FastCGI child exited as the request arrived; retrying on another", "pid", c.pid, "exit", exit.String())
			return runner.Result{}, true
		}
	}
	res.Err = &runner.ChildError{PID: c.pid, Exit: exit, Err: err}
	p.log.Error("FastCGI child failed mid-request", "pid", c.pid, "exit", exitString(exit), "error", err)
	return res, false
}

// unread reports whether a connection failed the way one does when the
// peer closed it with our request unread: reset, or a broken pipe.
func unread(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func exitString(e *runner.Exit) string {
	if e == nil {
		return "running (killed)"
	}
	return e.String()
}

// finished puts c back after a request it answered.
func (p *program) finished(c *child) {
	p.mu.Lock()
	c.served = true
	c.g.served = true
	c.g.failure, c.g.backoff = nil, 0
	c.requests++
	p.stats.requests++
	p.mu.Unlock()
	max := p.r.cfg.MaxRequests
	p.release(c, max > 0 && c.requests >= max)
}

// release gives c back to its generation's idle children, or stops it:
// when stop is set, when it is of an old generation, when it has exited.
func (p *program) release(c *child, stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.busy = false
	switch {
	case c.dead:
	case stop || c.g != p.gen || p.r.isClosing():
		c.stop(p.r.cfg.Grace)
	default:
		c.lastUsed = time.Now()
		c.g.idle = append(c.g.idle, c)
	}
}

// stopIdle stops children idle for longer than d.
func (p *program) stopIdle(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == nil {
		return
	}
	cut := time.Now().Add(-d)
	keep := p.gen.idle[:0]
	for _, c := range p.gen.idle {
		if c.lastUsed.Before(cut) {
			p.log.Debug("stopping idle FastCGI child", "pid", c.pid, "idle", time.Since(c.lastUsed).Round(time.Millisecond))
			c.stop(p.r.cfg.Grace)
			continue
		}
		keep = append(keep, c)
	}
	p.gen.idle = keep
}

// reload starts a new generation and replaces the old one's idle children
// one at a time: a new child is started before an old one is stopped.
func (p *program) reload() {
	p.mu.Lock()
	if p.gen == nil {
		p.mu.Unlock()
		return
	}
	old := p.gen
	n := len(old.idle)
	p.newGeneration(p.signature(), "reload")
	g := p.gen
	p.mu.Unlock()
	for range n {
		c, err := p.start(context.Background(), g)
		if err != nil {
			p.startFailed(g, err)
			return
		}
		p.release(c, false)
	}
}

// stopAll stops every child (shutdown).
func (p *program) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range append([]*generation{p.gen}, p.retired...) {
		if g == nil {
			continue
		}
		g.idle = nil
		for c := range g.children {
			c.stop(p.r.cfg.Grace)
		}
	}
}

// killAll sends SIGKILL to every child's group at once.
func (p *program) killAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range append([]*generation{p.gen}, p.retired...) {
		if g == nil {
			continue
		}
		for c := range g.children {
			c.kill()
		}
	}
}

// Status is one pool, as the status page shows it.
type Status struct {
	Program    string
	Generation int
	Busy       int
	Idle       int
	Draining   int // children of old generations
	Requests   uint64
	Started    uint64
	Crashes    uint64
	LastExit   string
	Failing    string // why its children cannot start, when they cannot
}

func (p *program) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Program: p.spec.name, Requests: p.stats.requests, Started: p.stats.started, Crashes: p.stats.crashes, LastExit: p.stats.lastExit}
	if g := p.gen; g != nil {
		s.Generation = g.n
		s.Idle = len(g.idle)
		s.Busy = len(g.children) - s.Idle
		if g.failure != nil {
			s.Failing = g.failure.Error()
		}
	}
	for _, g := range p.retired {
		s.Draining += len(g.children)
	}
	return s
}

// counted counts what goes through to w.
type counted struct {
	w io.Writer
	n int64
}

func (c *counted) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
