// Package execrun is the exec runner: one process per request, what
// fcgiwrap does. Each program runs in its own process group, as the job's
// identity, under the configured resource limits and, optionally, in a
// cgroup of its own; its output goes through process.Supervise.
package execrun

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/hashicorp/go-hclog"
)

// Config is what a reload may change about the exec runner.
type Config struct {
	Grace process.Grace
	// Limits are applied before the program's first instruction through the
	// exec shim, the bridge's own binary at Shim.
	Limits sandbox.Limits
	Shim   string
	// Cgroups, when set, gives each program a cgroup of its own with these
	// limits; a program whose cgroup cannot be made does not run.
	Cgroups            *sandbox.CgroupParent
	MemoryMax, PidsMax uint64
	Log                hclog.Logger
}

// Runner starts one process per job.
type Runner struct {
	cfg atomic.Pointer[Config]
}

// New returns an exec runner.
func New(cfg Config) *Runner {
	e := &Runner{}
	e.cfg.Store(&cfg)
	return e
}

// SetConfig replaces the configuration (on reload); running programs keep
// theirs.
func (e *Runner) SetConfig(cfg Config) { e.cfg.Store(&cfg) }

// Name is "exec".
func (e *Runner) Name() string { return "exec" }

// Run starts the job's program and supervises it to its end.
func (e *Runner) Run(ctx context.Context, job *runner.Job) runner.Result {
	defer governor.started()()
	c := e.cfg.Load()
	spec := &process.Spec{
		Path:     job.Program,
		Argv:     job.Argv,
		Env:      job.Env,
		Dir:      job.Dir,
		Identity: job.Identity,
		Limits:   c.Limits,
		Shim:     c.Shim,
		CgroupFD: -1,
	}
	if job.Body != nil {
		in, err := job.Body.Stdin()
		if err != nil {
			return runner.Result{Err: &runner.StartError{Kind: runner.StartOther, Err: fmt.Errorf("read the spooled body: %w", err)}}
		}
		spec.Stdin = in
	}
	if c.Cgroups != nil {
		fd, cleanup, err := e.cgroup(c)
		if err != nil {
			return runner.Result{Err: &runner.StartError{Kind: runner.StartSandbox, Err: err}}
		}
		spec.CgroupFD = fd
		defer func() {
			if err := cleanup(); err != nil && c.Log != nil {
				c.Log.Warn("cannot remove the program's cgroup", "error", err, "program", job.Filename)
			}
		}()
	}
	pipes, err := process.NewPipes()
	if err != nil {
		return runner.Result{Err: &runner.StartError{Kind: runner.StartOther, Err: fmt.Errorf("create output pipes: %w", err)}}
	}
	spec.Stdout, spec.Stderr = pipes.OutWrite, pipes.ErrWrite
	select {
	case startSlots <- struct{}{}:
	case <-ctx.Done():
		pipes.Close()
		return runner.Result{Cause: context.Cause(ctx)}
	}
	child, err := process.Start(ctx, spec)
	<-startSlots
	// The child has its own copies; ours must go so EOF can be seen.
	pipes.CloseWrite()
	if err != nil {
		pipes.Close()
		return runner.Result{Err: runner.StartFailure(err)}
	}
	if job.OnStart != nil {
		job.OnStart(child.PID())
	}
	return process.Supervise(ctx, child, pipes, job.Stdout, job.Stderr, c.Grace)
}

// startSlots bounds the programs being started at once — in their vfork
// window, from clone to the start of execve — not the programs running
// (that is --max-procs). Unbounded, with the Ps exec mode raises under
// load (procs.go), up to --max-procs starts compete for the CPUs at once
// and the last of a burst waits behind all of them: p99 at 64 concurrent
// requests was 1.5-1.6x fcgiwrap's; with two starts per CPU it is
// 0.76-0.97x, throughput 0.99-1.08x (docs/performance.md).
var startSlots = make(chan struct{}, 2*runtime.NumCPU())

// cgroup makes the program's cgroup.
func (e *Runner) cgroup(c *Config) (int, func() error, error) {
	fd, cleanup, err := c.Cgroups.NewUnique("req", c.MemoryMax, c.PidsMax)
	if err != nil {
		return -1, nil, fmt.Errorf("create the program's cgroup: %w", err)
	}
	return fd, cleanup, nil
}
