// This file holds one child: its start with the shared socket on fd 0, the
// goroutine that owns it until it is reaped, the one that logs its output,
// and the ways it is ended.

package spawn

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/hashicorp/go-hclog"
)

// child is a running copy of the program. Its owner goroutine (in start)
// is the one place it is waited for; everyone else watches exited.
type child struct {
	pid     int
	slot    int
	started time.Time
	log     hclog.Logger

	exited chan struct{} // closed once reaped; exit and waitErr are set then
	exit   runner.Exit
	err    error
}

// start starts a child for slot n. The process package puts it in its own
// process group with SIGKILL as its parent-death signal, so it cannot
// outlive the supervisor, and switches its user and root.
func (s *supervisor) start(n int) (*child, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe for a child: %w", err)
	}
	defer outW.Close() // the child has its copy: EOF once it and its descendants are gone
	p := s.plan
	spec := &process.Spec{
		Path:     p.path,
		Argv:     p.argv,
		Env:      p.env,
		Dir:      p.dir,
		Stdin:    s.sock.file, // FCGI_LISTENSOCK_FILENO
		Stdout:   outW,
		Stderr:   outW,
		Identity: p.id,
		CgroupFD: -1,
		Chroot:   p.chroot,
	}
	var proc *process.Child
	s.onStarter(func() { proc, err = process.Start(context.Background(), spec) })
	if err != nil {
		outR.Close()
		return nil, fmt.Errorf("start %s: %w", p.path, err)
	}
	c := &child{pid: proc.PID(), slot: n, started: time.Now(), exited: make(chan struct{})}
	c.log = s.log.With("slot", n, "pid", c.pid)
	s.kids.Add(2)
	go func() {
		defer s.kids.Done()
		c.exit, c.err = proc.Wait()
		close(c.exited)
	}()
	go func() {
		defer s.kids.Done()
		logOutput(outR, c.log)
	}()
	c.log.Info("child started", "program", p.path)
	return c, nil
}

// onStarter runs f on the starter thread and waits for it.
//
// A child's parent-death signal fires when the thread that forked it exits,
// not the process (golang/go#27505), and Go ends a thread when a goroutine
// locked to it exits without unlocking. So every child is forked from one
// thread, locked to a goroutine that runs as long as the supervisor: the
// signal then means what it should, that the supervisor is gone.
func (s *supervisor) onStarter(f func()) {
	done := make(chan struct{})
	s.starter <- func() {
		defer close(done)
		f()
	}
	<-done
}

// newStarter starts the starter goroutine; closing the channel ends it,
// which must wait until every child is reaped.
func newStarter() chan func() {
	c := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range c {
			f()
		}
	}()
	return c
}

// ran is how long the child has run, up to its exit if it has exited.
func (c *child) ran() time.Duration { return time.Since(c.started).Round(time.Millisecond) }

// done reports whether the child has been reaped.
func (c *child) done() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// exitString says how the child ended, for the log.
func (c *child) exitString() string {
	if c.err != nil {
		return c.err.Error()
	}
	return c.exit.String()
}

// stop ends the child's group: SIGTERM, then SIGKILL after grace. It
// returns once the child is reaped.
func (c *child) stop(grace time.Duration) {
	if c.done() {
		return
	}
	process.KillGroup(c.pid, syscall.SIGTERM)
	// A group frozen by a probe that was cut short must see the TERM.
	process.KillGroup(c.pid, syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		c.log.Warn("child ignored SIGTERM; killing it", "grace", grace)
		process.KillGroup(c.pid, syscall.SIGKILL)
		<-c.exited
	}
}

// retire ends a child that a new one replaces, without failing the request
// it may be serving: it waits, up to drain, for the child to be seen
// between requests (see probe.go) and kills it there. A child never seen
// idle (a long request, a load that keeps it busy every moment) is
// stopped with SIGTERM after drain. ctx ending cuts the wait short. It
// returns how the child ended, for the log.
func (c *child) retire(ctx context.Context, sock *socket, drain, grace time.Duration) string {
	deadline := time.Now().Add(drain)
	for !c.done() {
		idle, err := probeIdle(c.pid, sock)
		if idle {
			process.KillGroup(c.pid, syscall.SIGKILL)
			<-c.exited
			return "killed between requests"
		}
		if err != nil && !c.done() {
			c.log.Debug("cannot tell whether the child is between requests", "error", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if ctx.Err() == nil {
				c.log.Warn("child not seen between requests; stopping it", "drain_timeout", drain)
			}
			c.stop(grace)
			return "stopped: " + c.exitString()
		}
		select {
		case <-c.exited:
		case <-ctx.Done():
		case <-time.After(probeInterval):
		}
	}
	return "exited by itself: " + c.exitString()
}

// probeInterval is the pause between looks at a busy child: short, since
// FastCGI requests are, and each look freezes it only for an instant.
const probeInterval = 5 * time.Millisecond

// logOutput logs what a child writes to its stdout and stderr, a line at a
// time, long lines in pieces, until every process holding the pipe has
// closed it, so a chatty child never blocks on a full pipe.
func logOutput(f *os.File, log hclog.Logger) {
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Info("child output", "line", strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
