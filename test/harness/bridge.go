// This file holds Bridge: a cgibridge process started on a unix socket, with its
// output captured and its shutdown checked.
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Time limits for starting and stopping the processes the harness runs.
const (
	StartTimeout = 10 * time.Second // until a listener accepts
	StopTimeout  = 10 * time.Second // from SIGTERM/SIGQUIT until SIGKILL
)

// SafeBuffer is a bytes.Buffer that a process's output goroutine and a test can use
// at the same time.
type SafeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// WaitFor polls until the output contains sub or d has passed.
func (s *SafeBuffer) WaitFor(sub string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(s.String(), sub) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("output did not contain %q within %v", sub, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Bridge is a running cgibridge process.
type Bridge struct {
	Cmd    *exec.Cmd
	Socket string      // unix socket path it listens on
	Logs   *SafeBuffer // its stdout and stderr
	Dir    string      // directory holding the socket

	done     chan struct{} // closed once Cmd.Wait has returned
	waitErr  error
	stopOnce sync.Once
	stopErr  error
	killed   bool // Stop had to escalate to SIGKILL
}

// StartBridge starts `cgibridge serve --listen unix:DIR/cgibridge.sock <args...>` in a
// fresh short directory, with an environment of PATH and HOME plus the given "K=V"
// pairs, and waits until the socket accepts. On cleanup it sends SIGTERM and waits
// (SIGKILL after StopTimeout); a bridge that then exits non-zero or needs the SIGKILL
// fails the test, since SIGTERM must drain and exit 0. If the test failed, the
// bridge's output is logged.
func StartBridge(tb testing.TB, args []string, env ...string) *Bridge {
	tb.Helper()
	return startBridge(tb, MustBinary(tb), args, env...)
}

// startBridge is StartBridge with the binary given, so the harness's own tests can
// run a stand-in for cgibridge.
func startBridge(tb testing.TB, bin string, args []string, env ...string) *Bridge {
	tb.Helper()
	dir, err := shortTempDir("cgb-")
	if err != nil {
		tb.Fatal(err)
	}
	b, err := LaunchBridge(bin, dir, args, env...)
	if err != nil {
		_ = os.RemoveAll(dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		alreadyExited := b.exited()
		stopErr := b.Stop()
		switch {
		case alreadyExited:
			// The test ended the process itself and has seen how it went.
		case b.killed:
			tb.Errorf("cgibridge (pid %d) ignored SIGTERM for %v and was killed", b.PID(), StopTimeout)
		case stopErr != nil:
			tb.Errorf("cgibridge (pid %d) did not exit cleanly on SIGTERM: %v", b.PID(), stopErr)
		}
		if tb.Failed() {
			tb.Logf("cgibridge output:\n%s", b.Logs.String())
		}
		_ = os.RemoveAll(dir)
	})
	return b
}

// LaunchBridge is StartBridge without a testing.TB: it runs bin as the bridge with its
// socket in dir, which the caller owns. The caller must call Stop.
func LaunchBridge(bin, dir string, args []string, env ...string) (*Bridge, error) {
	sock := filepath.Join(dir, "cgibridge.sock")
	// sockaddr_un holds 108 bytes including the NUL; fail here rather than with a
	// puzzling bind error inside the bridge.
	if len(sock) >= 108 {
		return nil, fmt.Errorf("launch cgibridge: socket path %q is too long for a unix socket", sock)
	}
	b := &Bridge{
		Socket: sock,
		Logs:   &SafeBuffer{},
		Dir:    dir,
		done:   make(chan struct{}),
	}
	b.Cmd = exec.Command(bin, append([]string{"serve", "--listen", "unix:" + sock}, args...)...)
	b.Cmd.Dir = dir
	b.Cmd.Env = append(minimalEnv(dir), env...)
	b.Cmd.Stdout = b.Logs
	b.Cmd.Stderr = b.Logs
	b.Cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // a terminal's ^C reaches the test, which then stops the bridge in order
		// A test binary that dies (panic, timeout) must not leave a bridge behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := closeInheritedOnExec(); err != nil {
		return nil, fmt.Errorf("launch cgibridge: %w", err)
	}
	if err := b.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch cgibridge: %w", err)
	}
	go func() {
		b.waitErr = b.Cmd.Wait()
		close(b.done)
	}()
	if err := b.waitForSocket(StartTimeout); err != nil {
		_ = b.Stop()
		return nil, fmt.Errorf("launch cgibridge %v: %w\noutput:\n%s", b.Cmd.Args[1:], err, b.Logs.String())
	}
	return b, nil
}

// waitForSocket polls until the socket accepts a connection, the process exits, or d passes.
func (b *Bridge) waitForSocket(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if c, err := net.DialTimeout("unix", b.Socket, time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-b.done:
			return fmt.Errorf("exited before listening: %v", b.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("socket %s not accepting after %v", b.Socket, d)
		}
	}
}

// minimalEnv is the environment every harness process starts from: only what a
// shell-launched program needs, so nothing from the developer's shell leaks in.
func minimalEnv(home string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	if h := os.Getenv("HOME"); h != "" {
		home = h
	}
	return []string{"PATH=" + path, "HOME=" + home}
}

// shortTempDir makes a temporary directory with a short path: testing.TB.TempDir
// embeds the test name, which can push a socket path past the unix limit.
func shortTempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", fmt.Errorf("make temp dir: %w", err)
	}
	return dir, nil
}

func (b *Bridge) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// PID returns the bridge's process id.
func (b *Bridge) PID() int { return b.Cmd.Process.Pid }

// Stop sends SIGTERM, waits for the process (SIGKILL to its process group after
// StopTimeout) and returns its exit error: nil for exit status 0. Calling it again
// returns the same result.
func (b *Bridge) Stop() error {
	b.stopOnce.Do(func() {
		if !b.exited() {
			_ = b.Cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-b.done:
		case <-time.After(StopTimeout):
			b.killed = true
			_ = syscall.Kill(-b.PID(), syscall.SIGKILL)
			<-b.done
		}
		b.stopErr = b.waitErr
		if b.killed {
			b.stopErr = errors.Join(errors.New("killed after ignoring SIGTERM"), b.waitErr)
		}
	})
	return b.stopErr
}

// LogLine waits up to d for a line of the bridge's log that holds every one
// of subs and returns it; the test fails if none comes.
func (b *Bridge) LogLine(tb testing.TB, d time.Duration, subs ...string) string {
	tb.Helper()
	l, err := b.WaitLogLine(d, subs...)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// WaitLogLine is LogLine for a test that goes on when the line does not
// come: it returns an error instead of failing the test.
func (b *Bridge) WaitLogLine(d time.Duration, subs ...string) (string, error) {
	deadline := time.Now().Add(d)
	for {
		for _, l := range strings.Split(b.Logs.String(), "\n") {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(l, s)
			}
			if ok {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no log line with %q within %v", subs, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
