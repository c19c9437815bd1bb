// This file holds Supervise: a started program's output is copied to the
// response as it comes, and its life is bounded — when the request's context
// ends (timeout, abort, shutdown) its process group gets SIGTERM, a grace
// period, then SIGKILL — and after it exits, descendants that hold its output
// open are ended too.

package process

import (
	"cmp"
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/runner"
	"golang.org/x/sys/unix"
)

// Proc is a running program the bridge supervises: a child Start started,
// or one a zygote forked on the bridge's behalf.
type Proc interface {
	// PID returns the process id, which is also its process group id.
	PID() int
	// Wait blocks until the program has exited.
	Wait() (runner.Exit, error)
}

// Interrupter is an output sink that can abandon a write blocked on a slow
// web server, once the program it comes from has been stopped.
type Interrupter interface {
	Interrupt()
}

// Grace are the supervision's grace periods.
type Grace struct {
	// Kill is the time between SIGTERM and SIGKILL (default 3s).
	Kill time.Duration
	// Output is how long output may stay open after the program exited —
	// a grandchild holding stdout — before the group is ended (default 1s).
	Output time.Duration
}

// Pipes are a program's output pipes: the bridge reads Out and Err, the
// program writes the other ends.
type Pipes struct {
	Out, Err           *os.File // the bridge's read ends
	OutWrite, ErrWrite *os.File // the program's write ends
}

// NewPipes makes a program's stdout and stderr pipes.
func NewPipes() (*Pipes, error) {
	outR, outW, err := outputPipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := outputPipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	return &Pipes{Out: outR, Err: errR, OutWrite: outW, ErrWrite: errW}, nil
}

// CloseWrite closes the program's ends, once the program has them: EOF can
// only be seen when no copy is left in the bridge.
func (p *Pipes) CloseWrite() {
	p.OutWrite.Close()
	p.ErrWrite.Close()
}

// Close closes every end.
func (p *Pipes) Close() {
	p.CloseWrite()
	p.Out.Close()
	p.Err.Close()
}

// outputPipe makes a pipe for a program's output. Only the bridge's read
// end is non-blocking and in the runtime's poller; the program's write end
// stays blocking (programs do not expect EAGAIN on stdout) and is never
// polled. os.Pipe would make both ends non-blocking and polled, and exec
// would then switch the program's end back: about five system calls more
// per pipe on the per-request path.
func outputPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, nil, err
	}
	// O_NONBLOCK belongs to each end's open file description: clear it on
	// the write end only.
	if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(p[1]), syscall.F_SETFL, 0); e != 0 {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, nil, e
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// copyBufs recycles the 32 KiB buffers that carry program output.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Supervise copies p's output from pipes (the program's write ends already
// closed in the bridge) to stdout and stderr until the program has exited
// and its output is delivered, and returns how it ended. It closes the
// pipes' read ends. It returns soon after ctx ends: the program's group is
// then stopped and Result.Cause says why.
func Supervise(ctx context.Context, p Proc, pipes *Pipes, stdout, stderr io.Writer, g Grace) runner.Result {
	killGrace := cmp.Or(g.Kill, 3*time.Second)
	outGrace := cmp.Or(g.Output, time.Second)
	pgid := p.PID()
	res := runner.Result{PID: pgid, Started: true}

	type waited struct {
		exit runner.Exit
		err  error
	}
	exited := make(chan waited, 1)
	go func() {
		e, err := p.Wait()
		exited <- waited{e, err}
	}()
	out := startCopy(stdout, pipes.Out)
	errc := startCopy(stderr, pipes.Err)

	var w waited
	// stop ends the group: SIGTERM, grace, SIGKILL. It returns once the
	// program has exited.
	stop := func() {
		KillGroup(pgid, syscall.SIGTERM)
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case w = <-exited:
		case <-t.C:
			res.Killed = true
			KillGroup(pgid, syscall.SIGKILL)
			w = <-exited
		}
	}

	// Phase 1: until the program exits (or must be stopped).
	select {
	case w = <-exited:
	case <-ctx.Done():
		res.Cause = context.Cause(ctx)
		stop()
	case <-out.sinkFailed:
		// The sink refused more (bad header, gone front end): the program
		// is ended rather than left blocked on a full pipe.
		stop()
	}

	// Phase 2: the program has exited; its output is delivered in full,
	// unless the request's context ends first. Descendants may still hold
	// the pipes open, though.
	killGroup := func() { KillGroup(pgid, syscall.SIGKILL) }
	for _, c := range []*outputCopy{out, errc} {
		lingered, cancelled := c.drain(outGrace, killGroup, ctx.Done())
		res.Lingered = res.Lingered || lingered
		if cancelled && res.Cause == nil {
			res.Cause = context.Cause(ctx)
		}
	}
	pipes.Out.Close()
	pipes.Err.Close()

	if w.err == nil {
		res.Exited, res.Exit = true, w.exit
		if w.exit.Code >= 0 {
			res.AppStatus = uint32(w.exit.Code)
		}
	} else {
		res.Err = &runner.ChildError{PID: pgid, Err: w.err}
	}
	return res
}

// outputCopy copies one of a program's output pipes to its sink and knows
// whether it is waiting on the pipe (which, once the program has exited,
// means a descendant holds the pipe open) or delivering output.
type outputCopy struct {
	src        *os.File
	dst        io.Writer
	reading    atomic.Bool
	done       chan struct{}
	sinkFailed chan struct{} // closed when the sink refused output
}

func startCopy(dst io.Writer, src *os.File) *outputCopy {
	if dst == nil {
		dst = io.Discard
	}
	c := &outputCopy{src: src, dst: dst, done: make(chan struct{}), sinkFailed: make(chan struct{})}
	go func() {
		defer close(c.done)
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf := *bp
		for {
			c.reading.Store(true)
			n, err := src.Read(buf)
			c.reading.Store(false)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					close(c.sinkFailed)
					return
				}
			}
			if err != nil {
				return // EOF, or reading was stopped
			}
		}
	}()
	return c
}

// drain waits, after the program has exited, for the copy to reach the end
// of the pipe. However long delivery to a slow front end takes, no output
// is dropped. But when the copier has been waiting on an empty pipe for
// grace, descendants hold it open: the group is killed; and if the pipe is
// still open another grace later (a descendant that left the group),
// reading stops. When the request's context ends (its timeout included)
// the group is killed and reading stops at once. It reports whether
// descendants held the pipe, and whether the context ended the delivery.
func (c *outputCopy) drain(grace time.Duration, killGroup func(), cancelled <-chan struct{}) (lingered, stopped bool) {
	step := max(grace/8, 5*time.Millisecond)
	tick := time.NewTicker(step)
	defer tick.Stop()
	var waiting time.Duration // how long the copier has been seen waiting on the pipe
	killed := false
	for {
		select {
		case <-c.done:
			return lingered, false
		case <-cancelled:
			killGroup()
			// A write blocked on a slow web server must not hold the stop up.
			if i, ok := c.dst.(Interrupter); ok {
				i.Interrupt()
			}
			c.src.SetReadDeadline(time.Now())
			<-c.done
			return true, true
		case <-tick.C:
		}
		if !c.reading.Load() {
			waiting = 0 // delivering output: not held open
			continue
		}
		waiting += step
		switch {
		case waiting >= grace && !killed:
			lingered, killed = true, true
			killGroup()
			waiting = 0
		case waiting >= grace && killed:
			c.src.SetReadDeadline(time.Now())
		}
	}
}
