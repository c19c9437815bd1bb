// This file holds the exec runner: one process per request, in its own
// process group, with its output copied to the response as it comes and its
// lifetime bounded — timeout, abort and shutdown send SIGTERM to the group,
// wait a grace period, then SIGKILL. Every child is reaped.

package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Job is one program run: what a runner needs, already resolved.
type Job struct {
	Path  string   // program to execute
	Argv  []string // its argv, Argv[0] included
	Env   []string
	Dir   string
	Stdin io.Reader // nil, an *os.File (passed as is) or another reader
	// Stdout receives the program's standard output; an error from its
	// Write stops the copying (and the program is then ended).
	Stdout io.Writer
	// Stderr receives the program's standard error as it comes.
	Stderr io.Writer
	// SysProcAttr, when set, is used as the base (credentials, cgroup);
	// Setpgid is always added.
	SysProcAttr *syscall.SysProcAttr
	// OnStart, when set, is called with the pid once the program runs.
	OnStart func(pid int)
}

// ExitInfo is how a run ended.
type ExitInfo struct {
	PID      int
	Started  bool
	StartErr error // exec failed; nothing ran
	// Code is the exit status, or -1 when a signal ended the program.
	Code     int
	Signal   syscall.Signal
	TimedOut bool  // the timeout ended it
	Canceled error // the request's context ended it (its cause)
	Killed   bool  // SIGKILL was needed
	// Lingered means descendants still held the output open after the
	// program exited; they were ended after the grace period.
	Lingered bool
}

// String is a short description for log lines: "exit 0", "signal KILL".
func (e ExitInfo) String() string {
	switch {
	case !e.Started:
		return "not started"
	case e.Code >= 0:
		return fmt.Sprintf("exit %d", e.Code)
	default:
		return "signal " + strings.TrimPrefix(signalName(e.Signal), "SIG")
	}
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	case syscall.SIGXCPU:
		return "SIGXCPU"
	case syscall.SIGABRT:
		return "SIGABRT"
	}
	return fmt.Sprintf("SIG%d", int(s))
}

// Runner runs a prepared job and reports how it ended. Exec is the first
// runner; warm FastCGI pools and the interpreter zygote are to follow, each
// chosen per script by the CGI handler.
type Runner interface {
	// Name names the runner in the access log.
	Name() string
	// Run executes job; it returns once the program has ended and its
	// output has been delivered or abandoned, and soon after ctx ends.
	Run(ctx context.Context, job *Job) ExitInfo
}

// ExecRunner starts one process per job.
type ExecRunner struct {
	// Timeout bounds a run; 0 means none.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL (default 3s).
	KillGrace time.Duration
	// OutputGrace is how long output may stay open after the program
	// exited (a grandchild holding stdout) before the group is ended
	// (default 1s).
	OutputGrace time.Duration
}

// Name is "exec".
func (e *ExecRunner) Name() string { return "exec" }

// copyBufs recycles the 32 KiB buffers that carry program output.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Run executes the job and returns how it ended. It returns once the
// program has exited and its output has been copied or abandoned.
func (e *ExecRunner) Run(ctx context.Context, job *Job) ExitInfo {
	killGrace := cmp.Or(e.KillGrace, 3*time.Second)
	outGrace := cmp.Or(e.OutputGrace, time.Second)

	outR, outW, err := outputPipe()
	if err != nil {
		return ExitInfo{StartErr: fmt.Errorf("create stdout pipe: %w", err)}
	}
	errR, errW, err := outputPipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return ExitInfo{StartErr: fmt.Errorf("create stderr pipe: %w", err)}
	}
	pidfd := -1
	cmd, err := startRetrying(ctx, job, outW, errW, &pidfd)
	// The child has its own copies; ours must go so EOF can be seen.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return ExitInfo{StartErr: err}
	}
	info := ExitInfo{PID: cmd.Process.Pid, Started: true}
	pgid := cmd.Process.Pid
	if job.OnStart != nil {
		job.OnStart(info.PID)
	}

	var timeout <-chan time.Time
	if e.Timeout > 0 {
		t := time.NewTimer(e.Timeout)
		defer t.Stop()
		timeout = t.C
	}

	exited := make(chan error, 1)
	go func() {
		// Wait for the exit in the netpoller first, so no OS thread sits
		// blocked in waitid for the program's whole life; Wait then only
		// collects the status.
		waitExit(pidfd)
		exited <- cmd.Wait()
	}()
	stdout := startCopy(job.Stdout, outR)
	stderr := startCopy(job.Stderr, errR)

	// stop ends the group: SIGTERM, grace, SIGKILL. It returns once the
	// program has exited.
	var waitErr error
	stop := func() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(killGrace)
		defer t.Stop()
		select {
		case waitErr = <-exited:
		case <-t.C:
			info.Killed = true
			syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-exited
		}
	}

	// Phase 1: until the program exits (or must be stopped).
	select {
	case waitErr = <-exited:
	case <-timeout:
		info.TimedOut = true
		stop()
	case <-ctx.Done():
		info.Canceled = context.Cause(ctx)
		stop()
	case <-stdout.sinkFailed:
		// The sink refused more (bad header, gone front end): the program
		// is ended rather than left blocked on a full pipe.
		stop()
	}

	// Phase 2: the program has exited; its output is delivered in full.
	// Descendants may still hold the pipes open, though.
	killGroup := func() { syscall.Kill(-pgid, syscall.SIGKILL) }
	for _, c := range []*outputCopy{stdout, stderr} {
		if c.drain(outGrace, killGroup, ctx.Done()) {
			info.Lingered = true
		}
	}
	outR.Close()
	errR.Close()

	info.Code, info.Signal = exitStatus(cmd, waitErr)
	return info
}

// startRetrying starts the job, retrying briefly on ETXTBSY: a file written
// just before being executed can still be open for writing in another
// process that forked meanwhile (golang/go#22315).
func startRetrying(ctx context.Context, job *Job, stdout, stderr *os.File, pidfd *int) (*exec.Cmd, error) {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		attr := &syscall.SysProcAttr{}
		if job.SysProcAttr != nil {
			a := *job.SysProcAttr
			attr = &a
		}
		attr.Setpgid = true
		*pidfd = -1
		attr.PidFD = pidfd
		stdin := job.Stdin
		if stdin == nil {
			stdin = devNull
		}
		cmd := &exec.Cmd{
			Path:        job.Path,
			Args:        job.Argv,
			Env:         job.Env,
			Dir:         job.Dir,
			Stdin:       stdin,
			Stdout:      stdout,
			Stderr:      stderr,
			SysProcAttr: attr,
			// A stdin copy goroutine (small in-memory bodies) must not keep
			// Wait waiting on a grandchild that holds the pipe.
			WaitDelay: time.Second,
		}
		err := cmd.Start()
		if err == nil {
			return cmd, nil
		}
		if !errors.Is(err, syscall.ETXTBSY) || attempt >= 6 || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(delay)
		delay *= 2
	}
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

// devNull is the standard input of programs that get no body, opened once
// rather than by every exec.
var devNull = func() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil // exec then opens it itself
	}
	return f
}()

// waitExit blocks until the process behind pidfd has exited, parked in the
// runtime's netpoller (a pidfd polls readable at exit), and closes pidfd.
// Without a pidfd (old kernels) it returns at once and Wait blocks instead.
func waitExit(pidfd int) {
	if pidfd < 0 {
		return
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(pidfd), syscall.F_SETFL, syscall.O_NONBLOCK); e != 0 {
		syscall.Close(pidfd)
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err != nil || n > 0 // exited, or cannot tell: let Wait block
	})
}

func exitStatus(cmd *exec.Cmd, waitErr error) (int, syscall.Signal) {
	if cmd.ProcessState == nil {
		return -1, 0
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal()
	}
	return cmd.ProcessState.ExitCode(), 0
}

// outputCopy copies one of a program's output pipes to its sink and knows
// whether it is waiting on the pipe (which, once the program has exited,
// means a descendant holds the pipe open) or delivering output.
type outputCopy struct {
	src        *os.File
	reading    atomic.Bool
	done       chan struct{}
	sinkFailed chan struct{} // closed when the sink refused output
}

func startCopy(dst io.Writer, src *os.File) *outputCopy {
	c := &outputCopy{src: src, done: make(chan struct{}), sinkFailed: make(chan struct{})}
	if dst == nil {
		dst = io.Discard
	}
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
// reading stops. A cancelled request stops at once. It reports whether
// descendants held the pipe.
func (c *outputCopy) drain(grace time.Duration, killGroup func(), cancelled <-chan struct{}) (lingered bool) {
	tick := time.NewTicker(max(grace/8, 5*time.Millisecond))
	defer tick.Stop()
	var waiting time.Duration // how long the copier has been seen waiting on the pipe
	killed := false
	for {
		select {
		case <-c.done:
			return lingered
		case <-cancelled:
			killGroup()
			c.src.SetReadDeadline(time.Now())
			<-c.done
			return true
		case <-tick.C:
		}
		if !c.reading.Load() {
			waiting = 0 // delivering output: not held open
			continue
		}
		waiting += max(grace/8, 5*time.Millisecond)
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
