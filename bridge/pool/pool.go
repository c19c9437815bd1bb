// Package pool is the warm runner for programs that speak FastCGI
// themselves (libfcgi C binaries, Perl CGI::Fast, php-cgi, Go net/http/fcgi):
// per program it keeps a pool of persistent children, each started with its
// own listening unix socket on fd 0 (FastCGI 1.0 §2.2, as mod_fcgid does) in
// a private 0700 directory, and sends them one request per connection, so it
// knows exactly which child is idle or busy.
//
// Children start on demand up to Config.Procs per program, are replaced
// after Config.MaxRequests and stopped after Config.Idle. A program whose
// file changes (its stat signature: dev, inode, size, mtime, ctime) gets a
// new generation of children: new requests go to it, the old generation
// finishes its requests and is stopped. A child that dies between requests
// is replaced quietly; one that dies mid-request fails that request (502)
// and is replaced; one that cannot start puts its generation in backoff,
// and its requests are passed on to exec mode meanwhile (ErrUnavailable).
//
// Every child is owned by the one goroutine that waits for it; each has
// the parent-death signal set, so none outlives the bridge.
package pool

// This file holds the Runner: the pools of all programs.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
)

// Config configures the pools.
type Config struct {
	// Globs name the programs served warm: shell patterns on the script's
	// path relative to Root ('*' does not match '/'), or absolute patterns.
	Globs []string
	Root  string
	// Procs is the most children per program (default 2).
	Procs int
	// QueueLen is how many requests may wait for a busy pool: the bound
	// --max-procs's queue has (the wait itself is the dispatcher's,
	// --queue-timeout). Default 4 × Procs.
	QueueLen int
	// MaxRequests replaces a child after that many requests (0: never).
	MaxRequests int
	// Idle stops a child idle that long (0: never).
	Idle time.Duration
	// Grace is the time between SIGTERM and SIGKILL when a child is stopped
	// (default 3s).
	Grace time.Duration
	// Env is the children's start environment before ProgramEnv: the
	// bridge's allowlist and --set-env (cgienv.BaseEnviron), never the
	// bridge's whole environment.
	Env []string
	// ProgramEnv adds variables to the start environment of the programs
	// whose path matches, as Globs match.
	ProgramEnv []ProgramEnv
	// Limits are the children's resource limits, set through the exec shim
	// at Shim. RLIMIT_CPU is not applied: it counts a persistent child's
	// whole life, not one request (the request timeout bounds requests).
	Limits sandbox.Limits
	Shim   string
	// Cgroups, when set, puts each child in a cgroup of its own.
	Cgroups            *sandbox.CgroupParent
	MemoryMax, PidsMax uint64
	// SocketDir is where the private directory of the children's sockets
	// is made (default: the system's temporary directory).
	SocketDir string
	Log       hclog.Logger
}

// ProgramEnv is one --fastcgi-env GLOB:NAME=VALUE.
type ProgramEnv struct {
	Glob      string
	NameValue string
}

// Runner serves jobs on persistent FastCGI children. It implements
// runner.Runner, runner.Capacitor, runner.Closer and runner.Reloader.
type Runner struct {
	cfg   Config
	log   hclog.Logger
	dir   string // private 0700 directory of the children's sockets, made on first use
	watch *watcher.Watcher

	mu       sync.Mutex
	programs map[programKey]*program
	closing  bool
	seq      uint64 // children started, for socket names

	done chan struct{}
	wg   sync.WaitGroup // the reaper and the change loop
	kids sync.WaitGroup // every child's owner goroutine
}

// New validates cfg, makes the private socket directory and starts the
// pools' housekeeping. Children start on demand.
func New(cfg Config) (*Runner, error) {
	for _, g := range cfg.Globs {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("--fastcgi %q: %w", g, err)
		}
	}
	for _, e := range cfg.ProgramEnv {
		if _, err := path.Match(e.Glob, ""); err != nil {
			return nil, fmt.Errorf("--fastcgi-env %q: %w", e.Glob, err)
		}
	}
	if cfg.Procs <= 0 {
		cfg.Procs = 2
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4 * cfg.Procs
	}
	cfg.Grace = cmp.Or(cfg.Grace, 3*time.Second)
	cfg.Limits.CPUSeconds = 0
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	w, err := watcher.New(watcher.Options{Log: cfg.Log.Named("watch")})
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, log: cfg.Log, watch: w, programs: map[programKey]*program{}, done: make(chan struct{})}
	r.wg.Add(2)
	go r.reaper()
	go r.changes()
	return r, nil
}

// Name is "fastcgi".
func (r *Runner) Name() string { return "fastcgi" }

// Match reports whether the job's program is one of the Globs.
func (r *Runner) Match(job *runner.Job) bool { return r.matches(r.cfg.Globs, job) }

func (r *Runner) matches(globs []string, job *runner.Job) bool {
	rel := ""
	if r.cfg.Root != "" && strings.HasPrefix(job.Filename, r.cfg.Root+"/") {
		rel = job.Filename[len(r.cfg.Root)+1:]
	}
	for _, g := range globs {
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

// Capacity is the job's program's pool: a slot per child.
func (r *Runner) Capacity(job *runner.Job) *runner.Limiter {
	p, err := r.program(job)
	if err != nil {
		return nil
	}
	return p.lim
}

// Run serves job on one of its program's children.
func (r *Runner) Run(ctx context.Context, job *runner.Job) runner.Result {
	p, err := r.program(job)
	if err != nil {
		return runner.Result{Err: err}
	}
	// A write to a slow front end must not hold up the stop of a child the
	// request's end (timeout) killed.
	if i, ok := job.Stdout.(process.Interrupter); ok {
		stop := context.AfterFunc(ctx, i.Interrupt)
		defer stop()
	}
	return p.run(ctx, job)
}

// programKey tells pools apart: one per program and user, and — for
// interpreters other than php-cgi — per script; for a binary, per name it is
// run as (argv[0]).
type programKey struct {
	program, script, argv0 string
	uid, gid               uint32
}

func keyOf(job *runner.Job) programKey {
	k := programKey{program: job.Program, uid: uint32(euid), gid: uint32(egid)}
	if job.Identity != nil {
		k.uid, k.gid = job.Identity.UID, job.Identity.GID
	}
	switch {
	case job.Interpreted && servesAnyScript(job.Program):
	case job.Interpreted:
		k.script = job.Script
	default:
		k.argv0 = job.Argv[0]
	}
	return k
}

// The bridge's own ids, for keys of jobs that run as the bridge; read once,
// after any privilege drop changed them they are not used for that.
var euid, egid = os.Geteuid(), os.Getegid()

// program returns the pool of the job's program, making it on first use.
func (r *Runner) program(job *runner.Job) (*program, error) {
	key := keyOf(job)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return nil, runner.ErrDraining
	}
	if p := r.programs[key]; p != nil {
		return p, nil
	}
	spec := r.childSpec(job)
	p := newProgram(r, spec)
	r.programs[key] = p
	for _, f := range spec.files {
		if err := r.watch.AddFile(f); err != nil {
			r.log.Debug("cannot watch a FastCGI program; its changes are still seen per request", "file", f, "error", err)
		}
	}
	p.log.Info("FastCGI pool created", "procs", r.cfg.Procs)
	return p, nil
}

// childSpec is what the children of job's program are.
func (r *Runner) childSpec(job *runner.Job) childSpec {
	s := childSpec{path: job.Program, argv: job.Argv, dir: job.Dir, id: job.Identity, name: job.Filename}
	s.files = []string{job.Program}
	if job.Interpreted {
		if servesAnyScript(job.Program) {
			// php-cgi serves every script it is sent (SCRIPT_FILENAME): one
			// pool of the interpreter for all of them.
			s.argv = job.Argv[:len(job.Argv)-1]
			s.name = job.Program
			s.dir = filepath.Dir(job.Program)
		} else {
			// perl app.pl (CGI::Fast) is a FastCGI program of its own.
			s.files = append(s.files, job.Script)
		}
	}
	env := append([]string(nil), r.cfg.Env...)
	for _, e := range r.cfg.ProgramEnv {
		if r.matches([]string{e.Glob}, job) {
			env = append(env, e.NameValue)
		}
	}
	// php-cgi must not fork workers of its own behind the pool's back.
	s.env = append(env, "PHP_FCGI_CHILDREN=0")
	return s
}

// servesAnyScript reports whether an interpreter is php-cgi, which in
// FastCGI mode runs whatever script each request names.
func servesAnyScript(interp string) bool {
	b := filepath.Base(interp)
	return strings.HasPrefix(b, "php") && strings.Contains(b, "cgi")
}

// changes wakes the pools whose files changed, so an old generation is
// stopped even when no request comes.
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
			for _, p := range r.snapshot() {
				if p.uses(files) {
					p.checkGeneration()
				}
			}
		}
	}
}

// reaper stops children idle longer than Config.Idle.
func (r *Runner) reaper() {
	defer r.wg.Done()
	if r.cfg.Idle <= 0 {
		<-r.done
		return
	}
	t := time.NewTicker(max(r.cfg.Idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			for _, p := range r.snapshot() {
				p.stopIdle(r.cfg.Idle)
			}
		}
	}
}

func (r *Runner) snapshot() []*program {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*program, 0, len(r.programs))
	for _, p := range r.programs {
		out = append(out, p)
	}
	return out
}

// Reload replaces every pool's children, one at a time (SIGHUP).
func (r *Runner) Reload() {
	for _, p := range r.snapshot() {
		p.reload()
	}
}

// Close stops every child: SIGTERM, then SIGKILL after the grace, or at
// once when ctx ends first. It returns once all are reaped.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return nil
	}
	r.closing = true
	r.mu.Unlock()
	close(r.done)
	r.watch.Close()
	r.wg.Wait()
	for _, p := range r.snapshot() {
		p.stopAll()
	}
	reaped := make(chan struct{})
	go func() {
		r.kids.Wait()
		close(reaped)
	}()
	var err error
	select {
	case <-reaped:
	case <-ctx.Done():
		err = ctx.Err()
		for _, p := range r.snapshot() {
			p.killAll()
		}
		<-reaped
	}
	r.mu.Lock()
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
	r.mu.Unlock()
	return err
}

// Status describes every pool for the status page.
func (r *Runner) Status() []Status {
	var out []Status
	for _, p := range r.snapshot() {
		out = append(out, p.status())
	}
	return out
}

// nextSocket names a new child's socket. The directory is made on first
// use, after the bridge dropped its privileges, as the user it runs as;
// MkdirTemp makes it 0700, so only the bridge can connect to a child.
func (r *Runner) nextSocket() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir == "" {
		dir, err := os.MkdirTemp(r.cfg.SocketDir, "cgibridge-fastcgi-")
		if err != nil {
			return "", fmt.Errorf("make the FastCGI children's socket directory: %w", err)
		}
		r.dir = dir
	}
	r.seq++
	return filepath.Join(r.dir, "c"+strconv.FormatUint(r.seq, 10)), nil
}
