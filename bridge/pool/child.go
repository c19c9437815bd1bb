// This file holds one persistent child: its start with a listening socket
// on fd 0, the goroutine that owns it until it is reaped, and its stop.

package pool

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
)

// child is one persistent FastCGI child. Its fields other than proc, pid,
// sock, g and exited are guarded by its program's mu.
type child struct {
	p      *program
	g      *generation
	proc   *process.Child
	pid    int
	sock   string
	exited chan struct{} // closed once it is reaped; exit is then set
	exit   runner.Exit

	// cc is the connection kept to the child between requests, or nil;
	// only the request holding the child uses it.
	cc *fcgi.ClientConn

	busy     bool
	dead     bool
	stopping bool
	served   bool // answered a request
	requests int
	lastUsed time.Time
}

// start starts a child of generation g, busy for the caller.
func (p *program) start(ctx context.Context, g *generation) (*child, error) {
	r := p.r
	sock, err := r.nextSocket()
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for a child: %w", err)
	}
	// The path goes when the child is reaped, not when the bridge lets go
	// of its copy of the socket, which is at once.
	ln.SetUnlinkOnClose(false)
	lnFile, err := ln.File()
	ln.Close()
	if err != nil {
		os.Remove(sock)
		return nil, fmt.Errorf("listen for a child: %w", err)
	}
	defer lnFile.Close() // the bridge keeps no copy: a dead child refuses connections
	outR, outW, err := os.Pipe()
	if err != nil {
		os.Remove(sock)
		return nil, fmt.Errorf("child output pipe: %w", err)
	}
	defer outW.Close()
	spec := &process.Spec{
		Path:     p.spec.path,
		Argv:     p.spec.argv,
		Env:      p.spec.env,
		Dir:      p.spec.dir,
		Stdin:    lnFile, // FCGI_LISTENSOCK_FILENO
		Stdout:   outW,
		Stderr:   outW,
		Identity: p.spec.id,
		Limits:   r.cfg.Limits,
		Shim:     r.cfg.Shim,
		CgroupFD: -1,
	}
	cleanupCgroup := func() error { return nil }
	if r.cfg.Cgroups != nil {
		fd, cleanup, err := r.cfg.Cgroups.NewUnique("fcgi", r.cfg.MemoryMax, r.cfg.PidsMax)
		if err != nil {
			outR.Close()
			os.Remove(sock)
			return nil, &runner.StartError{Kind: runner.StartSandbox, Err: fmt.Errorf("create the child's cgroup: %w", err)}
		}
		spec.CgroupFD, cleanupCgroup = fd, cleanup
	}
	proc, err := process.Start(ctx, spec)
	if err != nil {
		outR.Close()
		os.Remove(sock)
		cleanupCgroup()
		return nil, err
	}
	c := &child{p: p, g: g, proc: proc, pid: proc.PID(), sock: sock, exited: make(chan struct{}), busy: true}
	p.mu.Lock()
	g.children[c] = true
	p.stats.started++
	p.mu.Unlock()
	log := p.log.With("pid", c.pid, "generation", g.n)
	log.Debug("FastCGI child started")
	r.kids.Add(2)
	go func() {
		defer r.kids.Done()
		logOutput(outR, log)
	}()
	go func() {
		defer r.kids.Done()
		c.own(cleanupCgroup)
	}()
	return c, nil
}

// own waits for the child to exit and cleans up after it: the one place a
// child is reaped.
func (c *child) own(cleanupCgroup func() error) {
	exit, err := c.proc.Wait()
	p := c.p
	p.mu.Lock()
	c.dead = true
	c.exit = exit
	delete(c.g.children, c)
	for i, ic := range c.g.idle {
		if ic == c {
			c.g.idle = append(c.g.idle[:i], c.g.idle[i+1:]...)
			break
		}
	}
	if len(c.g.children) == 0 && c.g != p.gen {
		for i, g := range p.retired {
			if g == c.g {
				p.retired = append(p.retired[:i], p.retired[i+1:]...)
				break
			}
		}
	}
	p.stats.lastExit = exit.String()
	crashed := !c.stopping && (exit.Code != 0 || err != nil)
	if crashed {
		p.stats.crashes++
	}
	busy, stopping, served := c.busy, c.stopping, c.requests
	p.mu.Unlock()
	close(c.exited)
	if !busy {
		c.dropConn() // an idle child's kept connection; a busy one's request drops its own
	}
	os.Remove(c.sock)
	if cerr := cleanupCgroup(); cerr != nil {
		p.log.Warn("cannot remove a FastCGI child's cgroup", "pid", c.pid, "error", cerr)
	}
	log := p.log.With("pid", c.pid, "exit", exit.String(), "requests", served)
	switch {
	case err != nil:
		log.Error("cannot wait for a FastCGI child", "error", err)
	case stopping:
		log.Debug("FastCGI child stopped")
	case busy:
		// The request it held says how that went: failed (its own error
		// line), or retried on another child when this one had not read
		// it (an exit racing the request, as after PHP_FCGI_MAX_REQUESTS).
		log.Info("FastCGI child exited while it held a request")
	case crashed:
		log.Warn("FastCGI child exited between requests; it is replaced on demand")
	default:
		// php-cgi after PHP_FCGI_MAX_REQUESTS, gitweb after 100: normal.
		log.Info("FastCGI child exited between requests; it is replaced on demand")
	}
}

// stop ends an idle or retired child: SIGTERM to its group, SIGKILL after
// grace. Called with its program's mu.
func (c *child) stop(grace time.Duration) {
	if c.dead || c.stopping {
		return
	}
	c.stopping = true
	if !c.busy {
		// A child waiting for the next request on its kept connection
		// (libfcgi catches SIGTERM and finishes its read first) sees the
		// connection end and exits at once.
		c.dropConn()
	}
	process.KillGroup(c.pid, syscall.SIGTERM)
	go func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
			// Some ignore SIGTERM (an idle mapserv does).
			process.KillGroup(c.pid, syscall.SIGKILL)
		}
	}()
}

// dropConn closes the kept connection. Only the request holding the child,
// or the owner once the child is dead and idle, calls it.
func (c *child) dropConn() {
	if c.cc != nil {
		c.cc.Close()
		c.cc.Release()
		c.cc = nil
	}
}

// kill sends SIGKILL to the child's group. Called with its program's mu.
func (c *child) kill() {
	if !c.dead {
		c.stopping = true
		process.KillGroup(c.pid, syscall.SIGKILL)
	}
}

// waitExit waits up to d for the child to exit, and returns how it did;
// nil when it still runs (it is then killed).
func (c *child) waitExit(d time.Duration) *runner.Exit {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.exited:
		e := c.exit
		return &e
	case <-t.C:
		return nil
	}
}

// isClosing reports whether Close has begun.
func (r *Runner) isClosing() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// logOutput logs what a child writes to its own stdout and stderr (not a
// request's: that comes as FastCGI records), a line at a time, long lines in
// pieces. It reads until the child and its descendants have closed the pipe,
// so a chatty child never blocks on it.
func logOutput(f *os.File, log interface{ Info(string, ...any) }) {
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Info("FastCGI child output", "line", strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
