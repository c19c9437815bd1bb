// This file holds the supervisor: it binds the socket, writes the pid
// file, starts the children, reports them up, and then turns signals and
// file changes into rolling restarts until SIGTERM or SIGINT stops it all.

package spawn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// supervisor owns the socket and the slots; each slot owns its child.
type supervisor struct {
	plan  *plan
	log   hclog.Logger
	sock  *socket
	slots []*slot
	kids  sync.WaitGroup // the children's owner and output goroutines

	starter chan func() // runs process.Start on one thread (see onStarter)
}

// outputWait bounds the wait, at exit, for the output of children whose
// descendants escaped their process group and still hold the pipe.
const outputWait = time.Second

// supervise runs the children until SIGTERM or SIGINT.
func supervise(p *plan, log hclog.Logger, ready *readyPipe) error {
	// Caught before the socket exists: a service manager may send SIGTERM
	// as soon as it sees it, and that must stop the children, not orphan
	// them.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	sock, err := openSocket(p, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := sock.close(); err != nil {
			log.Warn("cannot close the socket", "error", err)
		}
	}()
	if p.cfg.PIDFile != "" {
		if err := writePIDFile(p.cfg.PIDFile); err != nil {
			return err
		}
		defer removePIDFile(p.cfg.PIDFile, log)
	}

	if p.id != nil && p.cfg.User == "" {
		log.Info("started as root without -u: the children run as nobody (-u to choose, --allow-root to run them as root)")
	}
	s := &supervisor{plan: p, log: log, sock: sock, starter: newStarter()}
	// Deferred calls run last first: the starter thread goes only once
	// every child is reaped.
	defer close(s.starter)
	defer s.waitKids()
	// Every child is started before the supervisor reports ready: a
	// program that cannot be executed at all fails the start.
	first := make([]*child, p.cfg.Children)
	for i := range first {
		c, err := s.start(i)
		if err != nil {
			for _, c := range first[:i] {
				c.stop(p.cfg.KillGrace)
			}
			return err
		}
		first[i] = c
	}
	var changes <-chan []string
	if len(p.watch) > 0 {
		w, err := watcher.Files(p.watch, watcher.Options{Log: log.Named("watch")})
		if err != nil {
			for _, c := range first {
				c.stop(p.cfg.KillGrace)
			}
			return fmt.Errorf("--watch: %w", err)
		}
		defer w.Close()
		changes = w.Changes()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var slots sync.WaitGroup
	for i, c := range first {
		sl := &slot{n: i, s: s, replace: make(chan chan replaced)}
		s.slots = append(s.slots, sl)
		slots.Add(1)
		go func() {
			defer slots.Done()
			sl.run(ctx, c)
		}()
	}
	log.Info("children up", "socket", sock.desc, "children", len(first), "program", p.path, "user", p.id.String(),
		"pid", os.Getpid(), "watch", len(p.watch) > 0)
	ready.ok()
	notify(log, "READY=1\nSTATUS=children up")

	// Rolling restarts run beside the loop, so that SIGTERM still stops
	// everything in the middle of one; one asked for during another runs
	// after it.
	rollDone := make(chan struct{})
	rolling, pending := false, ""
	startRoll := func(reason string) {
		if rolling {
			pending = reason
			return
		}
		rolling = true
		notify(log, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
		go func() {
			s.roll(ctx, reason)
			rollDone <- struct{}{}
		}()
	}
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				startRoll("SIGHUP")
				continue
			}
			log.Info("stopping the children", "signal", sig.String(), "kill_grace", p.cfg.KillGrace)
			notify(log, "STOPPING=1")
			cancel()
			slots.Wait()
			if rolling {
				<-rollDone
			}
			log.Info("stopped")
			return nil

		case paths, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			log.Info("program changed", "paths", strings.Join(paths, " "))
			startRoll("program changed")

		case <-rollDone:
			rolling = false
			notify(log, "READY=1\nSTATUS=children up")
			if pending != "" {
				reason := pending
				pending = ""
				startRoll(reason)
			}
		}
	}
}

// roll replaces the children one slot at a time. A replacement that fails,
// or one that has died by the time the next slot's turn comes, stops the
// roll: the remaining slots keep their children, which serve.
func (s *supervisor) roll(ctx context.Context, reason string) {
	log := s.log.With("reason", reason)
	log.Info("replacing the children one at a time")
	var fresh []*child
	for _, sl := range s.slots {
		for _, c := range fresh {
			if c.done() {
				log.Error("a new child died after it replaced an old one; the others keep running as they are",
					"slot", c.slot, "pid", c.pid, "exit", c.exitString())
				return
			}
		}
		reply := make(chan replaced, 1)
		select {
		case sl.replace <- reply:
		case <-ctx.Done():
			return
		}
		select {
		case r := <-reply:
			if r.err != nil {
				if ctx.Err() == nil {
					log.Error("cannot replace a child; the others keep running as they are", "slot", sl.n, "error", r.err)
				}
				return
			}
			fresh = append(fresh, r.c)
		case <-ctx.Done():
			return
		}
	}
	log.Info("children replaced", "children", len(s.slots))
}

// waitKids waits for the children's goroutines: every child is reaped by
// then, but output still held open by a descendant outside its group is
// not waited for long.
func (s *supervisor) waitKids() {
	done := make(chan struct{})
	go func() {
		s.kids.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(outputWait):
		s.log.Warn("a child's descendants still hold its output open; not waiting for them")
	}
}

// notify tells systemd (Type=notify) how things are; nothing without
// NOTIFY_SOCKET.
func notify(log hclog.Logger, state string) {
	if err := listen.Notify(state); err != nil {
		log.Warn("sd_notify failed", "error", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, for RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// writePIDFile writes the supervisor's pid, replacing an older pid file
// but refusing to write through anything that is not a regular file.
func writePIDFile(path string) error {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("-P %s: exists and is not a regular file", path)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("-P %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("-P: %w", err)
	}
	return nil
}

// removePIDFile removes the pid file if it still names this process.
func removePIDFile(path string, log hclog.Logger) {
	data, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("cannot remove the pid file", "path", path, "error", err)
	}
}
