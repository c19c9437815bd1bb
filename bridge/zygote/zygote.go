// This file holds the Runner: which helper serves a job, and the helpers'
// numbers, lifetimes and generations.

package zygote

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
)

//go:embed helper.py
var pythonHelper string

//go:embed helper.pl
var perlHelper string

// Config configures the zygote runner.
type Config struct {
	// Globs name the scripts served warm, as --fastcgi's do.
	Globs []string
	Root  string
	// Spares is how many forked children each helper keeps ready (default 2).
	Spares int
	// MaxHelpers caps the helpers alive; past it the least recently used
	// idle one is stopped (default 16).
	MaxHelpers int
	// Idle stops a helper unused that long (0: never).
	Idle time.Duration
	// MaxRequests and MaxAge recycle a helper — a new generation — after that
	// many requests or that long, so state every child shares (the hash
	// seed of a Python helper) does not live for ever (0: never).
	MaxRequests uint64
	MaxAge      time.Duration
	// MaxMemory recycles a helper whose resident memory passes it (0: no
	// cap): a script that grows its helper's heap at every import does not
	// keep the memory for ever.
	MaxMemory uint64
	// Env is the helpers' start environment: the bridge's allowlist and
	// --set-env (cgienv.BaseEnviron), as exec mode's programs get it.
	Env []string
	// Limits are the helpers' and so the children's resource limits, set
	// through the exec shim. RLIMIT_CPU is not applied: it would count the
	// helper's whole life (the request timeout bounds each request).
	Limits sandbox.Limits
	Shim   string
	// Grace is the time between SIGTERM and SIGKILL for a helper.
	Grace time.Duration
	// SocketDir is where the private directory of the helpers' sockets is
	// made (default: the system's temporary directory).
	SocketDir string
	Log       hclog.Logger
}

// Runner serves jobs through helpers. It implements runner.Runner,
// runner.Closer and runner.Reloader.
type Runner struct {
	cfg   Config
	log   hclog.Logger
	watch *watcher.Watcher

	mu      sync.Mutex
	dir     string
	seq     uint64
	helpers map[helperKey]*helper // the current generation of each
	// outgoing holds a worn-out helper (--warm-max-requests, --warm-max-age)
	// that keeps serving while its successor in helpers starts.
	outgoing map[helperKey]*helper
	retired  []*helper // draining
	gens     map[helperKey]int
	cold     map[helperKey]*coldMark
	stats    map[string]*warmStats // by script
	closing  bool

	done chan struct{}
	wg   sync.WaitGroup
	kids sync.WaitGroup
}

// coldMark remembers why a script cannot be warmed, until its file changes.
type coldMark struct {
	reason string
	sig    watcher.Signature
	until  time.Time
}

type warmStats struct {
	warm uint64
	cold map[string]uint64
}

type helperKey struct {
	script, interp, flags string
	uid, gid              uint32
}

// New returns a zygote runner; helpers start on first use.
func New(cfg Config) (*Runner, error) {
	for _, g := range cfg.Globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("--warm %q: %w", g, err)
		}
	}
	cfg.Spares = cmp.Or(cfg.Spares, 2)
	cfg.MaxHelpers = cmp.Or(cfg.MaxHelpers, 16)
	cfg.Grace = cmp.Or(cfg.Grace, 3*time.Second)
	cfg.Limits.CPUSeconds = 0
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	w, err := watcher.New(watcher.Options{Log: cfg.Log.Named("watch")})
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, log: cfg.Log, watch: w, helpers: map[helperKey]*helper{}, outgoing: map[helperKey]*helper{}, gens: map[helperKey]int{},
		cold: map[helperKey]*coldMark{}, stats: map[string]*warmStats{}, done: make(chan struct{})}
	r.wg.Add(2)
	go r.changes()
	go r.reaper()
	return r, nil
}

// Name is "warm".
func (r *Runner) Name() string { return "warm" }

// Match reports whether job's script is one of the Globs.
func (r *Runner) Match(job *runner.Job) bool {
	rel := ""
	if r.cfg.Root != "" && strings.HasPrefix(job.Filename, r.cfg.Root+"/") {
		rel = job.Filename[len(r.cfg.Root)+1:]
	}
	for _, g := range r.cfg.Globs {
		name := rel
		if strings.HasPrefix(g, "/") {
			name = job.Filename
		}
		if name == "" {
			continue
		}
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// Run serves job on a helper's child, or says why it cannot (then exec
// mode serves it).
func (r *Runner) Run(ctx context.Context, job *runner.Job) runner.Result {
	in, err := interpreterOf(job)
	if err != nil {
		return r.coldResult(job.Script, err.Error())
	}
	key := helperKey{script: job.Script, interp: in.path, flags: strings.Join(in.flags, "\x00"),
		uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
	if job.Identity != nil {
		key.uid, key.gid = job.Identity.UID, job.Identity.GID
	}
	h, why := r.helperFor(key, in, job)
	if h == nil {
		return r.coldResult(job.Script, why)
	}
	defer h.done()
	res := h.serve(ctx, job)
	if !res.Started && res.Err != nil {
		return r.coldResult(job.Script, res.Err.Error())
	}
	r.count(job.Script, "")
	return res
}

// coldResult passes the job to exec mode, counting why.
func (r *Runner) coldResult(script, why string) runner.Result {
	r.count(script, why)
	return runner.Result{Err: runner.Unavailable(why)}
}

func (r *Runner) count(script, cold string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats[script]
	if st == nil {
		if len(r.stats) >= 4*r.cfg.MaxHelpers {
			clear(r.stats) // bounded: the counters start again
		}
		st = &warmStats{cold: map[string]uint64{}}
		r.stats[script] = st
	}
	if cold == "" {
		st.warm++
		return
	}
	if len(st.cold) < 32 {
		st.cold[cold]++
	}
}

// helperFor returns the ready helper for key, taking a request slot on it,
// or why there is none: it is starting (it was started now), the script
// cannot be warmed, or the bridge is closing.
func (r *Runner) helperFor(key helperKey, in interp, job *runner.Job) (*helper, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return nil, "the bridge is shutting down"
	}
	if m := r.cold[key]; m != nil {
		if watcher.Stat(key.script) == m.sig && time.Now().Before(m.until) {
			return nil, m.reason
		}
		delete(r.cold, key)
	}
	h, old := r.helpers[key], r.outgoing[key]
	if h != nil && h.stale() {
		r.retire(h, "its files changed")
		r.retireOutgoing(key, "its files changed")
		h, old = nil, nil
	}
	if h != nil && old == nil && h.worn(r.cfg.MaxRequests, r.cfg.MaxAge) {
		// Recycled without a cold request: the worn helper serves until
		// its successor is ready.
		delete(r.helpers, key)
		r.outgoing[key], old, h = h, h, nil
	}
	if h == nil {
		r.makeRoom()
		r.gens[key]++
		h = newHelper(r, key, in, job, r.gens[key])
		r.helpers[key] = h
		r.kids.Add(1)
		go func() {
			defer r.kids.Done()
			h.run()
		}()
		if old != nil && old.take() {
			return old, ""
		}
		return nil, "helper starting"
	}
	if h.take() {
		r.retireOutgoing(key, "recycled")
		return h, ""
	}
	if old != nil && old.take() {
		return old, ""
	}
	return nil, h.notReady()
}

// retireOutgoing retires key's worn helper, if it has one. Called with r.mu.
func (r *Runner) retireOutgoing(key helperKey, why string) {
	if old := r.outgoing[key]; old != nil {
		delete(r.outgoing, key)
		r.retire(old, why)
	}
}

// makeRoom stops the least recently used idle helper when MaxHelpers are
// alive. Called with r.mu.
func (r *Runner) makeRoom() {
	if len(r.helpers) < r.cfg.MaxHelpers {
		return
	}
	var lru *helper
	for _, h := range r.helpers {
		if h.idle() && (lru == nil || h.lastUsed().Before(lru.lastUsed())) {
			lru = h
		}
	}
	if lru != nil {
		r.retire(lru, "least recently used of --warm-max-helpers")
	}
}

// retire takes h out of service; it stops once its children are done.
// Called with r.mu.
func (r *Runner) retire(h *helper, why string) {
	if r.helpers[h.key] == h {
		delete(r.helpers, h.key)
	}
	r.retired = append(r.retired, h)
	h.log.Debug("helper retired", "reason", why)
	h.drain()
}

// markCold remembers that key's script cannot be warmed, until the script
// changes (or a while has passed, for a failing import that may be fixed).
func (r *Runner) markCold(h *helper, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cold[h.key] = &coldMark{reason: reason, sig: watcher.Stat(h.key.script), until: time.Now().Add(time.Minute)}
	if r.helpers[h.key] == h {
		delete(r.helpers, h.key)
	}
	r.retireOutgoing(h.key, "its successor cannot warm the script")
}

// gone forgets a helper that has exited.
func (r *Runner) gone(h *helper) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.helpers[h.key] == h {
		delete(r.helpers, h.key)
	}
	if r.outgoing[h.key] == h {
		delete(r.outgoing, h.key)
	}
	r.retired = slices.DeleteFunc(r.retired, func(x *helper) bool { return x == h })
}

// changes starts a new generation of the helpers whose files changed.
func (r *Runner) changes() {
	defer r.wg.Done()
	for {
		select {
		case <-r.done:
			return
		case files, ok := <-r.watch.Changes():
			if !ok {
				return
			}
			r.mu.Lock()
			for _, h := range r.helpers {
				if h.uses(files) {
					r.retire(h, "a preloaded file changed")
				}
			}
			for k, h := range r.outgoing {
				if h.uses(files) {
					r.retireOutgoing(k, "a preloaded file changed")
				}
			}
			for k := range r.cold {
				if slices.Contains(files, k.script) {
					delete(r.cold, k)
				}
			}
			r.mu.Unlock()
		}
	}
}

// reaper stops helpers idle longer than Config.Idle, and recycles those
// over Config.MaxMemory.
func (r *Runner) reaper() {
	defer r.wg.Done()
	every := time.Second
	if r.cfg.Idle > 0 {
		every = min(every, max(r.cfg.Idle/4, 10*time.Millisecond))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			r.mu.Lock()
			for k := range r.outgoing {
				// A worn helper whose successor is ready (or gone) and
				// that no request has come to take over from.
				if nh := r.helpers[k]; nh == nil || nh.isReady() {
					r.retireOutgoing(k, "recycled")
				}
			}
			for _, h := range r.helpers {
				switch {
				case r.cfg.Idle > 0 && h.idle() && time.Since(h.lastUsed()) > r.cfg.Idle:
					r.retire(h, "idle")
				case r.cfg.MaxMemory > 0 && h.rss() > r.cfg.MaxMemory:
					r.retire(h, fmt.Sprintf("resident memory %d MiB, over --warm-max-memory", h.rss()>>20))
				}
			}
			r.mu.Unlock()
		}
	}
}

// Reload starts a new generation of every helper (SIGHUP).
func (r *Runner) Reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.helpers {
		r.retire(h, "reload")
	}
	for k := range r.outgoing {
		r.retireOutgoing(k, "reload")
	}
	clear(r.cold)
}

// Close stops every helper, waiting for their children until ctx ends.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return nil
	}
	r.closing = true
	for _, h := range r.helpers {
		r.retire(h, "shutdown")
	}
	for k := range r.outgoing {
		r.retireOutgoing(k, "shutdown")
	}
	all := slices.Clone(r.retired)
	r.mu.Unlock()
	close(r.done)
	r.watch.Close()
	r.wg.Wait()
	stopped := make(chan struct{})
	go func() {
		r.kids.Wait()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = ctx.Err()
		for _, h := range all {
			h.kill()
		}
		<-stopped
	}
	r.mu.Lock()
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
	r.mu.Unlock()
	return err
}

// nextSocket names a helper's socket, making the private 0700 directory on
// first use (after the bridge dropped its privileges).
func (r *Runner) nextSocket() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir == "" {
		dir, err := os.MkdirTemp(r.cfg.SocketDir, "cgibridge-warm-")
		if err != nil {
			return "", fmt.Errorf("make the helpers' socket directory: %w", err)
		}
		r.dir = dir
	}
	r.seq++
	return fmt.Sprintf("%s/h%d", r.dir, r.seq), nil
}

// Status describes the helpers and the scripts' warm and cold counts.
func (r *Runner) Status() []status.Warm {
	r.mu.Lock()
	defer r.mu.Unlock()
	byScript := map[string]*status.Warm{}
	var order []string
	unit := func(script string) *status.Warm {
		if u := byScript[script]; u != nil {
			return u
		}
		u := &status.Warm{Runner: "warm", Program: script}
		byScript[script] = u
		order = append(order, script)
		return u
	}
	for _, h := range r.helpers {
		u := unit(h.key.script)
		h.describe(u, false)
	}
	for _, h := range r.outgoing {
		h.describe(unit(h.key.script), false)
	}
	for _, h := range r.retired {
		h.describe(unit(h.key.script), true)
	}
	for script, st := range r.stats {
		u := unit(script)
		u.Requests = st.warm
		if len(st.cold) > 0 {
			u.Cold = maps.Clone(st.cold)
		}
	}
	for k, m := range r.cold {
		unit(k.script).Failing = m.reason
	}
	slices.Sort(order)
	out := make([]status.Warm, 0, len(order))
	for _, s := range order {
		out = append(out, *byScript[s])
	}
	return out
}
