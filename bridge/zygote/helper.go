// This file holds one helper: its process, the goroutine that owns it, its
// control pipe, and the bookkeeping of the requests it serves.

package zygote

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
)

type helperState int

const (
	starting helperState = iota
	ready
	draining
	dead
)

// helper is one helper process and what the bridge knows of it.
type helper struct {
	r    *Runner
	key  helperKey
	in   interp
	gen  int
	log  hclog.Logger
	id   *sandbox.Identity
	dir  string // the script's directory, the helper's cwd
	sock string
	born time.Time

	mu       sync.Mutex
	state    helperState
	pid      int
	files    []string            // F lines
	local    []string            // the files among them checked per request
	localSig []watcher.Signature // their signatures when preloaded
	inflight int
	requests uint64
	last     time.Time
	waits    map[int]chan runner.Exit // request child pid -> its exit
	exits    map[int]runner.Exit      // exits that came before their waiter
	exited   chan struct{}            // closed when the helper is reaped
}

func newHelper(r *Runner, key helperKey, in interp, job *runner.Job, gen int) *helper {
	return &helper{
		r: r, key: key, in: in, gen: gen, id: job.Identity, dir: job.Dir,
		log:    r.log.With("script", key.script, "generation", gen),
		born:   time.Now(),
		waits:  map[int]chan runner.Exit{},
		exits:  map[int]runner.Exit{},
		exited: make(chan struct{}),
	}
}

// run starts the helper and owns it until it is reaped.
func (h *helper) run() {
	defer h.r.gone(h)
	err := h.start()
	if err != nil {
		h.log.Warn("cannot start the helper; the script runs in exec mode", "error", err)
		h.r.markCold(h, "helper failed to start")
		h.mu.Lock()
		h.state = dead
		h.mu.Unlock()
		close(h.exited)
	}
}

// start starts the helper process and the goroutines that read its control
// pipe and wait for it.
func (h *helper) start() error {
	sock, err := h.r.nextSocket()
	if err != nil {
		return err
	}
	h.sock = sock
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen for the helper: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	lnFile, err := ln.File()
	ln.Close()
	if err != nil {
		os.Remove(sock)
		return err
	}
	defer lnFile.Close()
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		os.Remove(sock)
		return err
	}
	defer ctlW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		os.Remove(sock)
		return err
	}
	defer outW.Close()
	argv := append([]string{h.in.path}, h.in.flags...)
	if h.in.kind == python {
		argv = append(argv, "-c", pythonHelper, h.key.script)
	} else {
		argv = append(argv, "-e", perlHelper, h.key.script)
	}
	env := append(append([]string(nil), h.r.cfg.Env...),
		envUID+"="+strconv.Itoa(os.Geteuid()), envSpares+"="+strconv.Itoa(h.r.cfg.Spares))
	child, err := process.Start(context.Background(), &process.Spec{
		Path: h.in.path, Argv: argv, Env: env, Dir: h.dir,
		Stdin: lnFile, Stdout: ctlW, Stderr: outW,
		Identity: h.id, Limits: h.r.cfg.Limits, Shim: h.r.cfg.Shim, CgroupFD: -1,
	})
	if err != nil {
		ctlR.Close()
		outR.Close()
		os.Remove(sock)
		return err
	}
	h.mu.Lock()
	h.pid = child.PID()
	h.mu.Unlock()
	h.log = h.log.With("helper_pid", child.PID())
	h.log.Debug("helper started", "interpreter", h.in.path)
	h.r.kids.Add(2)
	go func() {
		defer h.r.kids.Done()
		logOutput(outR, h.log)
	}()
	go func() {
		defer h.r.kids.Done()
		h.control(ctlR)
	}()
	exit, werr := child.Wait()
	h.mu.Lock()
	h.state = dead
	for pid, ch := range h.waits {
		// The helper is gone: its children were killed with it (their
		// parent-death signal).
		ch <- runner.Exit{Code: -1, Signal: syscall.SIGKILL}
		delete(h.waits, pid)
	}
	inflight := h.inflight
	h.mu.Unlock()
	close(h.exited)
	os.Remove(sock)
	switch {
	case werr != nil:
		h.log.Error("cannot wait for the helper", "error", werr)
	case inflight > 0 || (exit.Code != 0 && exit.Signal != syscall.SIGTERM):
		h.log.Warn("helper exited", "exit", exit.String(), "requests_in_flight", inflight)
	default:
		h.log.Debug("helper exited", "exit", exit.String())
	}
	return nil
}

// control reads the helper's control pipe.
func (h *helper) control(f *os.File) {
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		letter, text, _ := strings.Cut(sc.Text(), " ")
		switch letter {
		case "F":
			h.addFile(text)
		case "W":
			h.log.Info("helper: " + text)
		case "C":
			h.log.Info("script cannot be warmed; it runs in exec mode", "reason", text)
			h.r.markCold(h, text)
		case "R":
			h.mu.Lock()
			if h.state == starting {
				h.state = ready
			}
			h.mu.Unlock()
			h.log.Debug("helper ready", "preloaded", text)
		case "X":
			pidText, statusText, _ := strings.Cut(text, " ")
			pid, err1 := strconv.Atoi(pidText)
			ws, err2 := strconv.Atoi(statusText)
			if err1 != nil || err2 != nil {
				h.log.Warn("bad line on the helper's control pipe", "line", sc.Text())
				continue
			}
			h.childExited(pid, runner.ExitStatus(syscall.WaitStatus(ws)))
		default:
			h.log.Warn("bad line on the helper's control pipe", "line", sc.Text())
		}
	}
}

// addFile records a file the helper's state depends on: one under the
// script's directory (the script, its own modules) is checked on every
// request; any other (the interpreter's library) is watched.
func (h *helper) addFile(path string) {
	sig := watcher.Stat(path)
	h.mu.Lock()
	h.files = append(h.files, path)
	if within(path, h.dir) || (h.r.cfg.Root != "" && within(path, h.r.cfg.Root)) {
		h.local = append(h.local, path)
		h.localSig = append(h.localSig, sig)
	}
	h.mu.Unlock()
	if err := h.r.watch.AddFile(path); err != nil {
		h.log.Debug("cannot watch a preloaded file", "file", path, "error", err)
	}
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// stale reports whether a file under the script's directory changed since
// the helper preloaded it (the script itself does not count: a child
// recompiles it). Called with the runner's mu.
func (h *helper) stale() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, f := range h.local {
		if f == h.key.script {
			continue
		}
		if watcher.Stat(f) != h.localSig[i] {
			return true
		}
	}
	return false
}

// uses reports whether any of files is one the helper depends on.
func (h *helper) uses(files []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range files {
		if f != h.key.script && slices.Contains(h.files, f) {
			return true
		}
	}
	return false
}

// worn reports whether the helper is due for recycling.
func (h *helper) worn(maxRequests uint64, maxAge time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maxRequests > 0 && h.requests >= maxRequests || maxAge > 0 && time.Since(h.born) > maxAge
}

// take reserves the helper for one request, if it is ready.
func (h *helper) take() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != ready {
		return false
	}
	h.inflight++
	h.requests++
	h.last = time.Now()
	return true
}

// done releases what take reserved; a draining helper with nothing left
// in flight is stopped.
func (h *helper) done() {
	h.mu.Lock()
	h.inflight--
	stop := h.state == draining && h.inflight == 0
	h.mu.Unlock()
	if stop {
		h.stop()
	}
}

func (h *helper) notReady() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case starting:
		return "helper starting"
	case draining:
		return "helper draining"
	}
	return "helper gone"
}

// isReady reports whether h takes requests.
func (h *helper) isReady() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == ready
}

func (h *helper) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inflight == 0
}

func (h *helper) lastUsed() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last.IsZero() {
		return h.born
	}
	return h.last
}

// drain takes no new requests and stops once those in flight are done.
func (h *helper) drain() {
	h.mu.Lock()
	if h.state == dead {
		h.mu.Unlock()
		return
	}
	h.state = draining
	stop := h.inflight == 0
	h.mu.Unlock()
	if stop {
		h.stop()
	}
}

// stop ends the helper: SIGTERM to its group (the helper and its spares),
// SIGKILL after the grace. Its request children, in groups of their own,
// die with it (their parent-death signal); stop is only called when none
// is running, or at shutdown.
func (h *helper) stop() {
	h.mu.Lock()
	pid := h.pid
	h.mu.Unlock()
	if pid == 0 {
		return
	}
	process.KillGroup(pid, syscall.SIGTERM)
	go func() {
		t := time.NewTimer(h.r.cfg.Grace)
		defer t.Stop()
		select {
		case <-h.exited:
		case <-t.C:
			process.KillGroup(pid, syscall.SIGKILL)
		}
	}()
}

// kill ends the helper and every request child of it at once.
func (h *helper) kill() {
	h.mu.Lock()
	pid := h.pid
	var kids []int
	for p := range h.waits {
		kids = append(kids, p)
	}
	h.mu.Unlock()
	for _, k := range kids {
		process.KillGroup(k, syscall.SIGKILL)
	}
	if pid != 0 {
		process.KillGroup(pid, syscall.SIGKILL)
	}
}

// rss is the helper process's resident memory in bytes (0 if unknown).
func (h *helper) rss() uint64 {
	h.mu.Lock()
	pid := h.pid
	h.mu.Unlock()
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// childExited hands a request child's exit to its waiter.
func (h *helper) childExited(pid int, e runner.Exit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch, ok := h.waits[pid]; ok {
		ch <- e
		delete(h.waits, pid)
		return
	}
	if len(h.exits) < 1024 {
		h.exits[pid] = e
	}
}

// await returns the channel a request child's exit comes on.
func (h *helper) await(pid int) chan runner.Exit {
	ch := make(chan runner.Exit, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.exits[pid]; ok {
		delete(h.exits, pid)
		ch <- e
		return ch
	}
	if h.state == dead {
		ch <- runner.Exit{Code: -1, Signal: syscall.SIGKILL}
		return ch
	}
	h.waits[pid] = ch
	return ch
}

// describe adds the helper to its script's status unit.
func (h *helper) describe(u *status.Warm, retired bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case retired:
		u.Draining++
	case h.state == starting:
		u.Starting++
	case h.inflight > 0:
		u.Busy++
	default:
		u.Idle++
	}
	if !retired {
		u.Generation = h.gen
	}
	u.Started++
}

// logOutput logs what a helper writes to its stderr, a line at a time.
func logOutput(f *os.File, log hclog.Logger) {
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Info("helper output", "line", strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
