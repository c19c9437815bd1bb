// Package process starts and supervises the bridge's child processes: every
// program, persistent child and helper goes through Start, which puts it in
// its own process group with the parent-death signal set (so no child
// outlives a killed bridge), switches its user, and applies resource limits
// before its first instruction. Supervise is the one loop that copies a
// program's output to the response and bounds its life: the exec runner and
// the interpreter zygote both use it.
package process

// This file holds Start and Child.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"golang.org/x/sys/unix"
)

// Spec is a process to start.
type Spec struct {
	Path string   // executable, absolute
	Argv []string // Argv[0] included
	Env  []string
	Dir  string
	// Stdin is nil (/dev/null), an *os.File passed as is, or a reader
	// copied into a pipe.
	Stdin          io.Reader
	Stdout, Stderr *os.File // nil: /dev/null
	// Identity is who the process runs as; nil: as the bridge.
	Identity *sandbox.Identity
	// Limits are set before the program's first instruction, through the
	// exec shim: the bridge's own binary at Shim.
	Limits sandbox.Limits
	Shim   string
	// CgroupFD, when >= 0, is a cgroup v2 directory the process starts in.
	CgroupFD int
	// Chroot, when set, is the root directory the process runs in (before
	// the user switch, so it needs root); Path and Dir are inside it.
	Chroot string
}

// Child is a process Start started. Its owner must call Wait exactly once.
type Child struct {
	cmd   *exec.Cmd
	pidfd int
	once  sync.Once
	exit  runner.Exit
	err   error
}

// PID returns the process id, which is also its process group id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Start starts the process. A file written just before being executed can
// still be open for writing in a process forked meanwhile (ETXTBSY,
// golang/go#22315): Start retries briefly. Errors are the exec error as is
// (ENOEXEC, ENOENT, EACCES), also when the limits shim did the exec.
func Start(ctx context.Context, s *Spec) (*Child, error) {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		c, err := start(s)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.ETXTBSY) || attempt >= 6 || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(delay)
		delay *= 2
	}
}

func start(s *Spec) (*Child, error) {
	attr := &syscall.SysProcAttr{
		Setpgid: true,
		// Go sets it after the credential switch, and kills the child at
		// once if the bridge died meanwhile.
		Pdeathsig: syscall.SIGKILL,
	}
	if id := s.Identity; id != nil && (id.UID != uint32(os.Geteuid()) || id.GID != uint32(os.Getegid())) {
		attr.Credential = id.Credential()
	}
	if s.CgroupFD >= 0 {
		attr.UseCgroupFD, attr.CgroupFD = true, s.CgroupFD
	}
	attr.Chroot = s.Chroot
	c := &Child{pidfd: -1}
	attr.PidFD = &c.pidfd
	stdin := s.Stdin
	if stdin == nil {
		stdin = devNull
	}
	cmd := &exec.Cmd{
		Path:        s.Path,
		Args:        s.Argv,
		Env:         s.Env,
		Dir:         s.Dir,
		Stdin:       stdin,
		SysProcAttr: attr,
		// A stdin copy goroutine (small in-memory bodies) must not keep
		// Wait waiting on a grandchild that holds the pipe.
		WaitDelay: time.Second,
	}
	// os/exec opens /dev/null itself for a nil *os.File, but an untyped
	// nil must stay nil to mean that.
	if s.Stdout != nil {
		cmd.Stdout = s.Stdout
	}
	if s.Stderr != nil {
		cmd.Stderr = s.Stderr
	}
	var execErr *os.File
	if !s.Limits.IsZero() {
		if s.Shim == "" {
			return nil, &runner.StartError{Kind: runner.StartSandbox, Err: errors.New("resource limits set but no exec shim")}
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create exec status pipe: %w", err)
		}
		defer r.Close()
		execErr = r
		cmd.Path = s.Shim
		cmd.Args = sandbox.Wrap(s.Shim, s.Limits, s.Path, s.Argv)
		cmd.ExtraFiles = []*os.File{w}
		err = cmd.Start()
		w.Close()
		if err != nil {
			return nil, err
		}
		c.cmd = cmd
		// The shim reports a failed exec on the pipe and closes it (close
		// on exec) when the exec succeeds: until then nothing has run.
		if err := readExecStatus(execErr); err != nil {
			c.Wait()
			return nil, err
		}
		return c, nil
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.cmd = cmd
	return c, nil
}

// readExecStatus reads the shim's report: EOF when the program's exec
// succeeded, else the errno of the failure.
func readExecStatus(r *os.File) error {
	var b [4]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case n == 0 && (err == io.EOF || err == nil):
		return nil
	case n == 4:
		errno := syscall.Errno(binary.NativeEndian.Uint32(b[:]))
		if errno == 0 {
			return &runner.StartError{Kind: runner.StartSandbox, Err: errors.New("exec shim failed to set the limits")}
		}
		return &os.PathError{Op: "exec", Path: "program", Err: errno}
	default:
		return fmt.Errorf("read exec status from the shim: %w", err)
	}
}

// Wait waits for the process to exit and returns how it ended. The wait is
// parked in the runtime's netpoller on a pidfd, so no OS thread sits
// blocked for the program's whole life. Later calls return the same.
func (c *Child) Wait() (runner.Exit, error) {
	c.once.Do(func() {
		waitExit(c.pidfd)
		err := c.cmd.Wait()
		ps := c.cmd.ProcessState
		if ps == nil {
			c.err = fmt.Errorf("wait for pid %d: %w", c.PID(), err)
			return
		}
		// Other errors (a stdin copy cut short, ErrWaitDelay) do not change
		// how the process ended.
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			c.exit = runner.ExitStatus(ws)
		} else {
			c.exit = runner.Exit{Code: ps.ExitCode()}
		}
	})
	return c.exit, c.err
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

// KillGroup sends sig to the process group pgid.
func KillGroup(pgid int, sig syscall.Signal) {
	if pgid > 0 {
		syscall.Kill(-pgid, sig)
	}
}
