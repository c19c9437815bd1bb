// This file holds the listener and lifecycle tests: unix socket permissions and
// stale files, sockets inherited on fd 0 (spawn-fcgi) and through systemd socket
// activation with sd_notify, and the SIGTERM drain.

package process

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// proc is a cgibridge the test launched itself, for start-ups the harness's
// --listen form cannot express.
type proc struct {
	cmd  *exec.Cmd
	logs *harness.SafeBuffer
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// startProc starts cmd with its output captured and, on cleanup, stops it with
// SIGTERM (SIGKILL to its group after harness.StopTimeout).
func startProc(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, logs: &harness.SafeBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if cmd.Env == nil {
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/"}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(harness.StopTimeout):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
				t.Errorf("%v ignored SIGTERM", cmd.Args)
			}
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", cmd.Args, p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit error (nil for status 0), failing t
// if the process has not exited within d.
func (p *proc) stop(t *testing.T, d time.Duration) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t, d)
}

// wait returns the exit error once the process has exited, failing t after d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%v still running after %v", p.cmd.Args, d)
		return nil
	}
}

// socketDir makes a short directory for sockets the test creates.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgbp-s-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// listenUnix binds a listening unix socket at path and returns it as a file
// for handing to a child; the test's own copy is closed at cleanup.
func listenUnix(t *testing.T, path string) *os.File {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	// f is a dup that keeps the socket listening; the file must stay too.
	ln.SetUnlinkOnClose(false)
	ln.Close()
	t.Cleanup(func() { f.Close() })
	return f
}

// assertServes fails t unless a hello request on sock answers 200 "hello".
func assertServes(t *testing.T, sock, root string) {
	t.Helper()
	r := do(t, sock, root, "hello.cgi", nil, ioTimeout)
	if r.status() != 200 || strings.TrimSpace(r.body()) != "hello" {
		t.Errorf("request on %s: status %d, stdout %q", sock, r.status(), truncate(r.stdout))
	}
}

// TestUnixSocketMode: the socket the bridge creates is 0660 unless
// --socket-mode says otherwise.
func TestUnixSocketMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want fs.FileMode
	}{
		{"default 0660", nil, 0o660},
		{"--socket-mode 0600", []string{"--socket-mode", "0600"}, 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := scriptRoot(t)
			b := harness.StartBridge(t, append([]string{"--root", root}, tc.args...))
			fi, err := os.Stat(b.Socket)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tc.want {
				t.Errorf("socket mode %v, want socket %04o", fi.Mode(), tc.want)
			}
		})
	}
}

// TestStaleSocketFileReplaced: a socket file nobody listens on any more, left
// by a closed listener or a killed bridge, does not stop the next start.
func TestStaleSocketFileReplaced(t *testing.T) {
	t.Parallel()
	bin := harness.MustBinary(t)
	tests := []struct {
		name  string
		leave func(t *testing.T, dir, root string)
	}{
		{"listener closed without unlink", func(t *testing.T, dir, _ string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "cgibridge.sock"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}},
		{"bridge killed with SIGKILL", func(t *testing.T, dir, root string) {
			b, err := harness.LaunchBridge(bin, dir, []string{"--root", root})
			if err != nil {
				t.Fatal(err)
			}
			b.Cmd.Process.Kill()
			b.Stop()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := scriptRoot(t)
			dir := socketDir(t)
			tc.leave(t, dir, root)
			if fi, err := os.Lstat(filepath.Join(dir, "cgibridge.sock")); err != nil || fi.Mode().Type() != fs.ModeSocket {
				t.Fatalf("setup left no socket file: %v %v", fi, err)
			}
			b, err := harness.LaunchBridge(bin, dir, []string{"--root", root})
			if err != nil {
				t.Fatalf("start over a stale socket: %v", err)
			}
			defer func() {
				if err := b.Stop(); err != nil {
					t.Errorf("stop: %v\n%s", err, b.Logs.String())
				}
			}()
			assertServes(t, b.Socket, root)
		})
	}
}

// TestLiveSocketRefusedBySecondBridge: a second bridge on the socket of a
// running one exits non-zero saying another server listens there, and the
// first keeps its socket and keeps serving.
func TestLiveSocketRefusedBySecondBridge(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root})
	cmd := exec.Command(harness.MustBinary(t), "serve", "--listen", "unix:"+b.Socket, "--root", root)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(ioTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("second bridge on a live socket did not exit; output:\n%s", out)
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() == 0 {
		t.Errorf("second bridge: %v, want a non-zero exit", err)
	}
	if !regexp.MustCompile(`(?i)another server.*listen`).Match(out) {
		t.Errorf("second bridge's message does not say another server listens there:\n%s", out)
	}
	assertServes(t, b.Socket, root)
}

// TestServesListeningSocketOnFD0: with no --listen, a listening socket on
// stdin is served, as spawn-fcgi, lighttpd and mod_fcgid start applications.
func TestServesListeningSocketOnFD0(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	sock := filepath.Join(socketDir(t), "fd0.sock")
	f := listenUnix(t, sock)
	cmd := exec.Command(harness.MustBinary(t), "serve", "--root", root)
	cmd.Stdin = f
	p := startProc(t, cmd)
	assertServes(t, sock, root)
	if err := p.stop(t, harness.StopTimeout); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

// TestServesUnderSpawnFCGI: the real spawn-fcgi (in no-fork mode, so its pid
// becomes the bridge's) starts the bridge with the socket it created on fd 0.
func TestServesUnderSpawnFCGI(t *testing.T) {
	t.Parallel()
	spawn, err := exec.LookPath("spawn-fcgi")
	if err != nil {
		t.Fatalf("spawn-fcgi is required (Debian package spawn-fcgi): %v", err)
	}
	root := scriptRoot(t)
	sock := filepath.Join(socketDir(t), "spawn.sock")
	cmd := exec.Command(spawn, "-n", "-s", sock, "--", harness.MustBinary(t), "serve", "--root", root)
	p := startProc(t, cmd)
	deadline := time.Now().Add(harness.StartTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spawn-fcgi created no socket at %s", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertServes(t, sock, root)
	if err := p.stop(t, harness.StopTimeout); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

// readNotify returns the next sd_notify datagram, or fails t after d.
func readNotify(t *testing.T, c *net.UnixConn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message within %v: %v", d, err)
	}
	return string(buf[:n])
}

// TestSystemdSocketActivationAndNotify: a socket passed as fd 3 with
// LISTEN_FDS=1 and LISTEN_PID set to the bridge's pid is served; READY=1 and
// STOPPING=1 reach NOTIFY_SOCKET; and scripts see neither the LISTEN_* and
// NOTIFY_SOCKET variables nor descriptor 3.
func TestSystemdSocketActivationAndNotify(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	dir := socketDir(t)
	// The bridge drops to nobody before it notifies: it must reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	if err := os.Chmod(notifyPath, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "activated.sock")
	f := listenUnix(t, sock)

	// exec keeps the shell's pid, so $$ is the bridge's pid, as systemd sets it.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --root "$1"`, harness.MustBinary(t), root)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/", "NOTIFY_SOCKET=" + notifyPath}
	cmd.ExtraFiles = []*os.File{f}
	p := startProc(t, cmd)

	if msg := readNotify(t, notify, harness.StartTimeout); !hasLine(msg, "READY=1") {
		t.Errorf("first sd_notify message %q, want READY=1", msg)
	}
	r := do(t, sock, root, "env.cgi", nil, ioTimeout)
	if r.status() != 200 {
		t.Fatalf("env.cgi: status %d, stdout %q", r.status(), truncate(r.stdout))
	}
	envPart, fdPart, _ := strings.Cut(r.body(), "--- fds\n")
	for _, name := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"} {
		if regexp.MustCompile(`(?m)^` + name + `=`).MatchString(envPart) {
			t.Errorf("script environment has %s:\n%s", name, envPart)
		}
	}
	// ls opens /proc/self/fd on the lowest free descriptor: 3 when nothing
	// was inherited there, so anything past 3 is a leaked descriptor.
	var fds []int
	for _, s := range strings.Fields(fdPart) {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("bad fd listing %q", fdPart)
		}
		fds = append(fds, n)
	}
	slices.Sort(fds) // ls sorts names, so 10 would come before 2
	if !slices.Equal(fds, []int{0, 1, 2, 3}) {
		t.Errorf("script's descriptors (ls included) are %v, want [0 1 2 3]: the listening socket leaked", fds)
	}

	// A reload (systemd's ExecReload sends SIGHUP) is announced as the
	// shipped Type=notify units expect: RELOADING=1 with the monotonic
	// time, then READY=1 again.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if msg := readNotify(t, notify, harness.StartTimeout); !hasLine(msg, "RELOADING=1") || !strings.Contains(msg, "MONOTONIC_USEC=") {
		t.Errorf("sd_notify message after SIGHUP %q, want RELOADING=1 and MONOTONIC_USEC", msg)
	}
	if msg := readNotify(t, notify, harness.StartTimeout); !hasLine(msg, "READY=1") {
		t.Errorf("sd_notify message after the reload %q, want READY=1", msg)
	}

	if err := p.stop(t, harness.StopTimeout); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
	if msg := readNotify(t, notify, time.Second); !hasLine(msg, "STOPPING=1") {
		t.Errorf("sd_notify message after SIGTERM %q, want STOPPING=1", msg)
	}
}

// hasLine reports whether the newline-separated msg has line.
func hasLine(msg, line string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// TestSIGTERMDrainsInFlightRequest: on SIGTERM a 2 s script in flight still
// answers 200, new connections are refused meanwhile, and the bridge exits 0
// having removed its socket file.
func TestSIGTERMDrainsInFlightRequest(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	// A directory the dropped user owns, as systemd's RuntimeDirectory= gives:
	// from a root-owned one the file cannot be removed (TestSocketFileRemovedOnExit).
	dir := socketDir(t)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	b, err := harness.LaunchBridge(harness.MustBinary(t), dir, []string{"--root", root})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	type done struct {
		r   result
		err error
	}
	ch := make(chan done, 1)
	go func() {
		r, err := tryDo(b.Socket, root, "slow2.cgi", nil, ioTimeout)
		ch <- done{r, err}
	}()
	waitChildren(t, b.PID(), 2)
	b.Cmd.Process.Signal(syscall.SIGTERM)

	// The listener closes at once; the request still has over a second to go.
	deadline := time.Now().Add(time.Second)
	for {
		c, err := net.DialTimeout("unix", b.Socket, 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Errorf("new connections still accepted 1s after SIGTERM")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case d := <-ch:
		t.Errorf("in-flight request ended before the refusal was checked: %v %q", d.err, truncate(d.r.stdout))
	default:
	}

	d := <-ch
	if d.err != nil {
		t.Fatalf("in-flight request: %v", d.err)
	}
	if d.r.status() != 200 || !strings.Contains(d.r.body(), "slow done") {
		t.Errorf("in-flight request: status %d, stdout %q, want 200", d.r.status(), truncate(d.r.stdout))
	}
	if err := b.Stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0\n%s", err, b.Logs.String())
	}
	if _, err := os.Lstat(b.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file %s still there after shutdown (%v)\n%s", b.Socket, err, b.Logs.String())
	}
}

// TestShutdownTimeoutKillsScript: with --shutdown-timeout 1s, SIGTERM during a
// 30 s script kills the script and its sleep, and the bridge still exits 0.
func TestShutdownTimeoutKillsScript(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root, "--shutdown-timeout", "1s", "--kill-grace", "1s"})
	c := dial(t, b.Socket)
	defer c.Close()
	if err := c.WriteBeginRequest(1, fcgi.RoleResponder, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteParams(1, params(root, "sleep30.cgi", "GET", -1)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteStream(fcgi.TypeStdin, 1, nil, 0); err != nil {
		t.Fatal(err)
	}
	kids := waitChildren(t, b.PID(), 2)
	start := time.Now()
	b.Cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- b.Stop() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
		if el := time.Since(start); el > 4*time.Second {
			t.Errorf("exit %v after SIGTERM, want about the 1s shutdown timeout plus the 1s grace", el)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("bridge still running 8s after SIGTERM with --shutdown-timeout 1s")
	}
	for _, pid := range kids {
		if err := harness.WaitGone(pid, time.Second); err != nil {
			t.Errorf("script process outlived the bridge: %v", err)
		}
	}
}

// TestSocketFileRemovedOnExit: a bridge started as root drops to nobody after
// binding and owns its socket as nobody, so on SIGTERM it removes the socket
// from a directory nobody may write (its own, or sticky like /tmp). From a
// root-owned directory like /run it cannot: then it warns at start-up and at
// exit instead of leaving the file silently. (Once a bug: the socket file
// stayed root's, so after the drop the bridge could not remove it even from
// a sticky /tmp, and a failed removal at exit was ignored: the file was left
// behind without a word.)
func TestSocketFileRemovedOnExit(t *testing.T) {
	t.Parallel()
	bin := harness.MustBinary(t)
	tests := []struct {
		name     string
		uid, gid int
		mode     fs.FileMode
		removed  bool
		warnings []string // log lines required when the file stays
	}{
		{"directory owned by nobody", 65534, 65534, 0o755, true, nil},
		{"sticky world-writable directory like /tmp", 0, 0, 0o777 | fs.ModeSticky, true, nil},
		{"root-owned 0755 directory like /run", 0, 0, 0o755, false,
			[]string{"socket's directory is not writable after the privilege drop", "closing listener"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := scriptRoot(t)
			dir := socketDir(t)
			if err := os.Chown(dir, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			b, err := harness.LaunchBridge(bin, dir, []string{"--root", root})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Stop(); err != nil {
				t.Errorf("exit after SIGTERM: %v, want status 0", err)
			}
			_, err = os.Lstat(b.Socket)
			if gone := errors.Is(err, fs.ErrNotExist); gone != tc.removed {
				t.Errorf("socket file removed = %v (%v), want %v\n%s", gone, err, tc.removed, b.Logs.String())
			}
			for _, w := range tc.warnings {
				if !strings.Contains(b.Logs.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, b.Logs.String())
				}
			}
		})
	}
}
