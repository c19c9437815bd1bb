// Tests for sockets inherited on fd 0 and through systemd socket activation, which
// re-run this test binary as a child holding the sockets, and for close-on-exec.
package listen

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment switches for the child mode of this test binary.
const (
	envChild    = "CGIBRIDGE_LISTEN_TEST_CHILD"
	envWantFDs  = "WANT_LISTEN_FDS" // child sets LISTEN_FDS to this and LISTEN_PID to its own pid
	envWrongPID = "WANT_WRONG_LISTEN_PID"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(inheritChild())
	}
	os.Exit(m.Run())
}

// inheritChild calls Inherited the way cgibridge does at start, prints a report
// line, then answers one connection per listener with "SPEC|REPORT".
func inheritChild() int {
	if n := os.Getenv(envWantFDs); n != "" {
		pid := os.Getpid()
		if os.Getenv(envWrongPID) != "" {
			pid++ // activation meant for some other process
		}
		os.Setenv("LISTEN_FDS", n)
		os.Setenv("LISTEN_PID", strconv.Itoa(pid))
	}
	ls, err := Inherited(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Inherited:", err)
		return 1
	}
	stdin, _ := os.Readlink("/proc/self/fd/0")
	env := []string{}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	report := fmt.Sprintf("n=%d stdin=%s env=[%s]", len(ls), stdin, strings.Join(env, " "))
	fmt.Println(report)
	for _, l := range ls {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "Accept:", err)
			return 1
		}
		fmt.Fprintf(c, "%s|%s\n", l.Spec, report)
		c.Close()
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "Close:", err)
			return 1
		}
	}
	return 0
}

// startChild runs this binary in child mode with the given stdin and extra files
// (fd 3 on) and returns the report line it prints once Inherited has returned.
func startChild(t *testing.T, stdin *os.File, extra []*os.File, env ...string) (report string, wait func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTEN_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, envChild+"=1")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = stdin
	cmd.ExtraFiles = extra
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cancel()
		cmd.Wait()
		t.Fatalf("child printed no report: %v; stderr: %s", err, stderr.String())
	}
	return strings.TrimSpace(line), func() {
		defer cancel()
		if err := cmd.Wait(); err != nil {
			t.Errorf("child: %v; stderr: %s", err, stderr.String())
		}
	}
}

// listenerFile opens a listener and returns it with a descriptor for a child.
func listenerFile(t *testing.T, network, addr string) (net.Listener, *os.File) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ln, f
}

// ask dials a listener the child holds and returns its one-line answer.
func ask(t *testing.T, network, addr string) string {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

func TestInheritedListeningSocketOnFD0(t *testing.T) {
	tests := []struct {
		name, network string
	}{
		{"tcp from spawn-fcgi -p", "tcp"},
		{"unix from spawn-fcgi -s", "unix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if tt.network == "unix" {
				addr = sockPath(t)
			}
			ln, f := listenerFile(t, tt.network, addr)
			report, wait := startChild(t, f, nil, "LISTEN_FDNAMES=stale")
			want := "n=1 stdin=/dev/null env=[]"
			if report != want {
				t.Errorf("child report %q, want %q (fd 0 re-opened on /dev/null, LISTEN_* unset)", report, want)
			}
			if got := ask(t, tt.network, ln.Addr().String()); got != "fd:0|"+want {
				t.Errorf("child answered %q", got)
			}
			wait()
			if tt.network == "unix" {
				if _, err := os.Lstat(addr); err != nil {
					t.Errorf("child's Close removed the inherited socket file: %v", err)
				}
			}
		})
	}
}

func TestInheritedNothingWhenFD0IsNotListening(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	c1, c2, err := osPipeSockets()
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	defer c2.Close()
	tests := []struct {
		name  string
		stdin *os.File
		env   []string
	}{
		{"stdin is /dev/null", devnull, nil},
		{"stdin is a connected socket", c1, nil},
		{"activation for another pid", devnull, []string{envWantFDs + "=1", envWrongPID + "=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report, wait := startChild(t, tt.stdin, nil, tt.env...)
			wait()
			if !strings.HasPrefix(report, "n=0 ") || !strings.HasSuffix(report, " env=[]") {
				t.Errorf("child report %q, want no listeners and LISTEN_* unset", report)
			}
		})
	}
}

// osPipeSockets returns a connected pair of unix stream sockets as files.
func osPipeSockets() (*os.File, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "sock0"), os.NewFile(uintptr(fds[1]), "sock1"), nil
}

func TestInheritedSystemdSocketActivation(t *testing.T) {
	tcpLn, tcpF := listenerFile(t, "tcp", "127.0.0.1:0")
	path := sockPath(t)
	_, unixF := listenerFile(t, "unix", path)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()

	report, wait := startChild(t, devnull, []*os.File{tcpF, unixF}, envWantFDs+"=2", "LISTEN_FDNAMES=web:local")
	want := "n=2 stdin=/dev/null env=[]"
	if report != want {
		t.Errorf("child report %q, want %q (LISTEN_* unset)", report, want)
	}
	if got := ask(t, "tcp", tcpLn.Addr().String()); got != "systemd:web|"+want {
		t.Errorf("fd 3 answered %q, want it named web", got)
	}
	if got := ask(t, "unix", path); got != "systemd:local|"+want {
		t.Errorf("fd 4 answered %q, want it named local", got)
	}
	wait()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("child's Close removed the inherited socket file: %v", err)
	}
}

func TestInheritedSystemdWithoutNames(t *testing.T) {
	tcpLn, tcpF := listenerFile(t, "tcp", "127.0.0.1:0")
	report, wait := startChild(t, nil, []*os.File{tcpF}, envWantFDs+"=1")
	defer wait()
	if got := ask(t, "tcp", tcpLn.Addr().String()); got != "systemd:fd3|"+report {
		t.Errorf("fd 3 answered %q", got)
	}
}

func TestCloseOnExecInherited(t *testing.T) {
	// syscall.Open, unlike os.Open, does not add O_CLOEXEC: like a descriptor
	// leaked to us by a parent.
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Fatalf("precondition: fd %d flags %#x, %v; want close-on-exec clear", fd, flags, err)
	}
	if err := CloseOnExecInherited(); err != nil {
		t.Fatalf("CloseOnExecInherited: %v", err)
	}
	flags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("fd %d flags %#x, %v; want close-on-exec set", fd, flags, err)
	}
	for _, std := range []int{0, 1, 2} {
		if f, err := unix.FcntlInt(uintptr(std), unix.F_GETFD, 0); err == nil && f&unix.FD_CLOEXEC != 0 {
			t.Errorf("stdio fd %d marked close-on-exec", std)
		}
	}
}
