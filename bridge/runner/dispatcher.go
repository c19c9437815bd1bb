// This file holds the Dispatcher: which runner serves a job, the capacity
// each runner has (a slot per job, a bounded queue, then 503), the request's
// timeout, the fallback from a warm runner to exec mode, and the runners'
// lifecycle.

package runner

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cgibridge/cgibridge/bridge/status"
)

// Runner serves jobs.
type Runner interface {
	// Name names the runner in the access log ("exec", "fastcgi", "warm").
	Name() string
	// Run serves job and reports how it ended. It returns soon after ctx
	// ends. A runner that cannot serve the job without starting anything
	// returns Err wrapping ErrUnavailable, and the job goes on to the next
	// runner.
	Run(ctx context.Context, job *Job) Result
}

// Capacitor is implemented by runners whose capacity depends on the job,
// such as a pool of children per program. Route.Limiter is used otherwise.
type Capacitor interface {
	Capacity(job *Job) *Limiter
}

// Closer is implemented by runners that own processes: Close stops taking
// jobs and stops them, waiting at most until ctx ends.
type Closer interface {
	Close(ctx context.Context) error
}

// Reloader is implemented by runners that restart their processes on
// SIGHUP.
type Reloader interface {
	Reload()
}

// Route is a runner and the jobs it takes.
type Route struct {
	// Match reports whether the route takes the job; nil takes every job.
	Match  func(*Job) bool
	Runner Runner
	// Limiter is the route's capacity, unless the runner is a Capacitor;
	// routes may share one. nil: unlimited.
	Limiter *Limiter
}

// Dispatcher runs each job on the first route that takes it, falling back
// to the next one that takes it while a runner reports ErrUnavailable. The
// last route is normally exec mode, which takes everything.
type Dispatcher struct {
	routes    []Route
	queueWait time.Duration
	stats     *status.Stats

	mu       sync.Mutex
	closing  bool
	inflight sync.WaitGroup
}

// NewDispatcher returns a dispatcher over routes, in order. queueWait is how
// long a job may wait for a slot before ErrOverloaded.
func NewDispatcher(routes []Route, queueWait time.Duration, stats *status.Stats) *Dispatcher {
	return &Dispatcher{routes: routes, queueWait: queueWait, stats: stats}
}

// SetQueueWait changes the queue wait (on reload).
func (d *Dispatcher) SetQueueWait(w time.Duration) {
	d.mu.Lock()
	d.queueWait = w
	d.mu.Unlock()
}

// Run serves job. The Result names the runner that served it and, when a
// warm runner passed it on, why.
func (d *Dispatcher) Run(ctx context.Context, job *Job) Result {
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return Result{Err: ErrDraining}
	}
	d.inflight.Add(1)
	wait := d.queueWait
	d.mu.Unlock()
	defer d.inflight.Done()

	var cold string
	var last Result
	served := false
	for i := range d.routes {
		rt := &d.routes[i]
		if rt.Match != nil && !rt.Match(job) {
			continue
		}
		last = d.runOn(ctx, rt, job, wait)
		served = true
		if !last.Started && errors.Is(last.Err, ErrUnavailable) && i < len(d.routes)-1 {
			cold = joinReason(cold, last.Err.Error())
			continue
		}
		break
	}
	if !served {
		return Result{Err: ErrUnavailable}
	}
	last.Cold = cold
	return last
}

// RouteFor names the runner that would take job first ("exec" when only
// exec mode would); it runs nothing.
func (d *Dispatcher) RouteFor(job *Job) string {
	for i := range d.routes {
		if rt := &d.routes[i]; rt.Match == nil || rt.Match(job) {
			return rt.Runner.Name()
		}
	}
	return ""
}

// runOn admits job to one route (a slot, perhaps after queueing) and runs
// it under the job's timeout.
func (d *Dispatcher) runOn(ctx context.Context, rt *Route, job *Job, wait time.Duration) Result {
	name := rt.Runner.Name()
	lim := rt.Limiter
	if c, ok := rt.Runner.(Capacitor); ok {
		lim = c.Capacity(job)
	}
	if lim != nil {
		if !lim.TryAcquire() {
			// Only a job that really waits counts as queued.
			d.stats.QueueEnter()
			err := lim.Acquire(ctx, wait)
			d.stats.QueueLeave()
			if err != nil {
				if errors.Is(err, ErrOverloaded) {
					return Result{Runner: name, Err: err}
				}
				return Result{Runner: name, Cause: err}
			}
		}
		defer lim.Release()
	}
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, job.Timeout, ErrTimeout)
		defer cancel()
	}
	d.stats.Started()
	res := rt.Runner.Run(ctx, job)
	d.stats.Stopped()
	res.Runner = name
	return res
}

// Limits returns the running and queued counts of a route's limiter, for
// the log line of a 503.
func (d *Dispatcher) Limits(job *Job) (active, queued, limit int) {
	for i := range d.routes {
		rt := &d.routes[i]
		if rt.Match != nil && !rt.Match(job) {
			continue
		}
		lim := rt.Limiter
		if c, ok := rt.Runner.(Capacitor); ok {
			lim = c.Capacity(job)
		}
		if lim == nil {
			return 0, 0, 0
		}
		a, q := lim.Counts()
		return a, q, lim.Limit()
	}
	return 0, 0, 0
}

// Reload tells every runner that restarts its processes on SIGHUP to do so.
func (d *Dispatcher) Reload() {
	for _, r := range d.runners() {
		if rl, ok := r.(Reloader); ok {
			rl.Reload()
		}
	}
}

// Close stops taking jobs (ErrDraining), waits for the jobs in flight until
// ctx ends, then closes every runner that owns processes. It returns ctx's
// error when jobs were still running at the deadline.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	for _, r := range d.runners() {
		if c, ok := r.(Closer); ok {
			if cerr := c.Close(ctx); cerr != nil && err == nil {
				err = cerr
			}
		}
	}
	return err
}

// runners lists each runner once.
func (d *Dispatcher) runners() []Runner {
	var out []Runner
	seen := map[Runner]bool{}
	for _, rt := range d.routes {
		if !seen[rt.Runner] {
			seen[rt.Runner] = true
			out = append(out, rt.Runner)
		}
	}
	return out
}
