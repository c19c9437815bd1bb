// This file tests spawn-fcgi's options as cgibridge spawn takes them: the
// socket (address, stale and live files), the children's user, root,
// directory, environment and arguments, exit codes, and sd_notify.
package spawn

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// listenersOn returns the local addresses of the TCP listening sockets on
// port, from /proc/net/tcp and tcp6 ("0100007F" is 127.0.0.1).
func listenersOn(t *testing.T, port int) []string {
	t.Helper()
	var addrs []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, l := range strings.Split(harness.ReadFile(f), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) < 4 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			addr, p, _ := strings.Cut(fs[1], ":")
			if n, err := strconv.ParseUint(p, 16, 16); err == nil && int(n) == port {
				addrs = append(addrs, addr)
			}
		}
	}
	return addrs
}

func TestTCPWithoutAddrBindsLoopbackOnly(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	startSpawn(t, nil, "-p", strconv.Itoa(port), "--", program(t, helloSrc))
	if got := listenersOn(t, port); len(got) != 1 || got[0] != "0100007F" {
		t.Fatalf("listening on %v for port %d, want only 127.0.0.1 (0100007F)", got, port)
	}
	url := front(t, "127.0.0.1:"+strconv.Itoa(port))
	if body := get(t, url); !strings.Contains(body, "hello from pid") {
		t.Fatalf("over TCP: %q", body)
	}
}

func TestNonLoopbackAddrNeedsTheWebServersListed(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := program(t, envSrc)
	out, code := runSpawn(t, nil, "-n", "-a", "0.0.0.0", "-p", strconv.Itoa(port), "--", env)
	if code != 1 || !strings.Contains(out, "--allow-from") {
		t.Fatalf("-a 0.0.0.0 alone: exit %d, %q; want 1 naming --allow-from", code, out)
	}
	// Listed, the children get the list, and libfcgi enforces it.
	startSpawn(t, nil, "-a", "0.0.0.0", "-p", strconv.Itoa(port), "--allow-from", "127.0.0.1", "--", env)
	body := get(t, front(t, "127.0.0.1:"+strconv.Itoa(port)))
	if !strings.Contains(body, "env FCGI_WEB_SERVER_ADDRS=127.0.0.1\n") {
		t.Fatalf("the children's start environment lacks the allowlist:\n%s", body)
	}
}

func TestStaleSocketFileIsReplacedAndALiveOneRefused(t *testing.T) {
	sock := filepath.Join(sockDir(t), "s.sock")
	// A socket file left by a crashed server: bound, then closed without
	// removing the file.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	prog := program(t, helloSrc)
	s := startSpawn(t, nil, "-s", sock, "--", prog)
	if s.logLine("removed stale socket") == "" {
		t.Error("the stale socket's removal is not logged")
	}
	url := front(t, "unix:"+sock)
	get(t, url)

	// Now the socket is live: a second supervisor must refuse it, and
	// leave it alone.
	second := launchSpawn(t, nil, "-s", sock, "--", prog)
	code, ok := second.waitExit(harness.StartTimeout)
	if !ok {
		t.Fatal("a second supervisor on a live socket is still running")
	}
	if code != 1 || !strings.Contains(second.logs.String(), "another server is listening on "+sock) {
		t.Errorf("second supervisor: exit %d, output %q; want 1 and a clear refusal", code, second.logs.String())
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("the refused start removed the live socket: %v", err)
	}
	if body := get(t, url); !strings.Contains(body, "hello from pid") {
		t.Fatalf("the first supervisor no longer serves: %q", body)
	}
	if s.exited() {
		t.Fatal("the first supervisor died")
	}
}

func TestChildrenRunAsNobodyWithPHPChildrenAndTheSupervisorsEnvironment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("-u needs root")
	}
	dir := sockDir(t)
	sock := filepath.Join(dir, "s.sock")
	work := harness.ScriptDir(t)
	env := []string{"SPAWN_TEST_VAR=kept", "LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=x", "NOTIFY_SOCKET=" + notifySocket(t, dir).path}
	startSpawn(t, env, "-u", "nobody", "-C", "2", "-d", work, "-s", sock, "--", program(t, envSrc))
	body := get(t, front(t, "unix:"+sock))
	for _, want := range []string{
		"uid=65534\n", "gid=65534\n", "cwd=" + work + "\n",
		"env PHP_FCGI_CHILDREN=2\n", "env SPAWN_TEST_VAR=kept\n",
		"env LISTEN_PID=<unset>\n", "env LISTEN_FDS=<unset>\n", "env LISTEN_FDNAMES=<unset>\n",
		"env NOTIFY_SOCKET=<unset>\n", "env _CGIBRIDGE_SPAWN_READY_FD=<unset>\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("child reports no %q:\n%s", strings.TrimSpace(want), body)
		}
	}
	// As with spawn-fcgi, -u gives the socket to the children's user.
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != harness.NobodyUID || st.Gid != harness.NobodyUID || st.Mode&0o777 != 0o660 {
		t.Errorf("socket %d:%d mode %o, want 65534:65534 0660", st.Uid, st.Gid, st.Mode&0o777)
	}
}

// notifier is a socket that receives sd_notify datagrams.
type notifier struct {
	path string
	c    *net.UnixConn
}

// notifySocket listens for sd_notify datagrams in dir.
func notifySocket(t *testing.T, dir string) *notifier {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifier{path: path, c: c}
}

// read returns the next message, or fails the test after d.
func (n *notifier) read(t *testing.T, d time.Duration) string {
	t.Helper()
	n.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	m, err := n.c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message within %v: %v", d, err)
	}
	return string(buf[:m])
}

func TestTellsSystemdReadyReloadingAndStopping(t *testing.T) {
	dir := sockDir(t)
	notify := notifySocket(t, dir)
	sock := filepath.Join(dir, "s.sock")
	s := startSpawn(t, []string{"NOTIFY_SOCKET=" + notify.path}, "-s", sock, "--", program(t, helloSrc))
	if m := notify.read(t, 5*time.Second); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("first message %q, want READY=1", m)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	if m := notify.read(t, 5*time.Second); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP %q, want RELOADING=1 with MONOTONIC_USEC", m)
	}
	if m := notify.read(t, 20*time.Second); !strings.HasPrefix(m, "READY=1") {
		t.Errorf("after the rolling restart %q, want READY=1", m)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if m := notify.read(t, 5*time.Second); m != "STOPPING=1" {
		t.Errorf("on SIGTERM %q, want STOPPING=1", m)
	}
}

func TestProgramArgumentsPassUntouchedEvenWhenTheyLookLikeFlags(t *testing.T) {
	env := program(t, envSrc)
	for name, args := range map[string][]string{
		// After --, and also after the program's name without it: -c and
		// -F would be spawn's chroot and child count.
		"after --":      {"--", env, "-c", "/nonexistent", "-F", "7", "--"},
		"without --":    {env, "-c", "/nonexistent", "-F", "7", "--"},
		"dash argument": {"--", env, "-", "--log-level=x"},
	} {
		t.Run(name, func(t *testing.T) {
			sock := filepath.Join(sockDir(t), "s.sock")
			s := startSpawn(t, nil, append([]string{"-s", sock}, args...)...)
			body := get(t, front(t, "unix:"+sock))
			progArgs := args[1:]
			if args[0] == "--" {
				progArgs = args[2:]
			}
			for i, a := range progArgs {
				if want := fmt.Sprintf("arg%d=%s\n", i+1, a); !strings.Contains(body, want) {
					t.Errorf("child lacks %q:\n%s", strings.TrimSpace(want), body)
				}
			}
			if strings.Contains(body, fmt.Sprintf("arg%d=", len(progArgs)+1)) {
				t.Errorf("child got more arguments than %q:\n%s", progArgs, body)
			}
			if kids := s.children(t); len(kids) != 1 {
				t.Errorf("children %v: -F in the program's arguments was taken by spawn", kids)
			}
		})
	}
}

func TestChrootRunsTheChildrenInTheirRootWithTheSocketInside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("-c needs root")
	}
	jail := harness.ScriptDir(t)
	for _, d := range []string{"bin", "run", "srv"} {
		if err := os.Mkdir(filepath.Join(jail, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Static: the jail has no libraries.
	copyFile(t, buildProgram(t, envSrc, "-static"), filepath.Join(jail, "bin", "env-fcgi"))
	s := startSpawn(t, nil, "-c", jail, "-u", "nobody", "-d", "/srv", "-s", "/run/s.sock", "--", "/bin/env-fcgi")
	sock := filepath.Join(jail, "run", "s.sock") // inside the jail, as spawn-fcgi puts it
	body := get(t, front(t, "unix:"+sock))
	if !strings.Contains(body, "cwd=/srv\n") || !strings.Contains(body, "uid=65534\n") {
		t.Errorf("child in the jail reports:\n%s", body)
	}
	kids := s.children(t)
	if len(kids) != 1 {
		t.Fatalf("children %v", kids)
	}
	if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", kids[0])); err != nil || root != jail {
		t.Errorf("child's root is %q (%v), want %s", root, err, jail)
	}
}

func TestUsageErrorsExitWith2AndRunTimeFailuresWith1(t *testing.T) {
	dir := sockDir(t)
	sock := filepath.Join(dir, "s.sock")
	prog := program(t, helloSrc)
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no program", []string{"-n", "-s", sock}, 2, "program"},
		{"no socket", []string{"-n", "--", prog}, 2, "-s PATH"},
		{"unix and tcp", []string{"-n", "-s", sock, "-p", "9000", "--", prog}, 2, "-s and -p"},
		{"zero children", []string{"-n", "-s", sock, "-F", "0", "--", prog}, 2, "-F 0"},
		{"addr without port", []string{"-n", "-s", sock, "-a", "127.0.0.1", "--", prog}, 2, "-a needs -p"},
		{"bad mode", []string{"-n", "-s", sock, "-M", "999", "--", prog}, 2, "-M"},
		{"unknown flag", []string{"-n", "--no-such-flag", "-s", sock, "--", prog}, 2, "no-such-flag"},
		{"bad number", []string{"-n", "-s", sock, "-F", "many", "--", prog}, 2, "-F"},
		{"missing program", []string{"-n", "-s", sock, "--", filepath.Join(dir, "missing")}, 1, "no such file"},
		{"unknown user", []string{"-n", "-s", sock, "-u", "no-such-user-here", "--", prog}, 1, "no-such-user-here"},
		{"socket dir missing", []string{"-n", "-s", filepath.Join(dir, "no", "such", "s.sock"), "--", prog}, 1, "directory"},
		{"detached, program missing", []string{"-s", sock, "--", filepath.Join(dir, "missing")}, 1, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runSpawn(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output %q; want %d mentioning %q", code, out, tt.code, tt.want)
			}
		})
	}
}
