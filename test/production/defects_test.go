// This file holds regression tests for defects an operator would meet: exec
// failures reported differently once a --limit-* flag is set, --http and
// --status binding beyond loopback and answering before the privilege drop,
// and SIGHUP leaving --max-body and --temp-dir as they were (and not naming
// --max-conns as needing a restart).

package production

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// TestLimitsKeepExecErrors pins that the exec shim behind every --limit-*
// flag fails a program the way a plain exec does: a file without #! that is
// executable is refused with 502 and "cannot execute: no #! line" (before
// the fix /bin/sh ran it), and a script its user may not execute answers 403
// with "permission denied" (before: 502). The program still gets the limit.
func TestLimitsKeepExecErrors(t *testing.T) {
	requireRoot(t) // programs run as nobody, who may not execute a 0744 file
	tests := []struct {
		name string
		args []string
	}{
		// Without limits the bridge execs the program itself: the
		// answers the limits case must match.
		{"no limits", nil},
		{"limit-files", []string{"--limit-files", "64"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := scriptDir(t)
			writeScript(t, dir, "noshebang.cgi", "printf 'Content-Type: text/plain\\r\\n\\r\\nran by a shell\\n'\n")
			noexec := writeScript(t, dir, "noexec.cgi", helloScript)
			// Root's to execute, but nobody's only to read.
			if err := os.Chmod(noexec, 0o744); err != nil {
				t.Fatal(err)
			}
			writeScript(t, dir, "ulimit.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nulimit -n\n")
			b := harness.StartBridge(t, append([]string{"--root", dir, "--user", "nobody"}, tc.args...))

			res := do(t, b.Socket, req{Dir: dir, Script: "noshebang.cgi"})
			if res.Status != 502 {
				t.Errorf("executable file without #!: status %d body %q, want 502", res.Status, res.Body)
			}
			if _, err := b.WaitLogLine(5*time.Second, "cannot execute: no #! line", "noshebang.cgi"); err != nil {
				t.Errorf("refusal of the file without #! not explained: %v", err)
			}

			res = do(t, b.Socket, req{Dir: dir, Script: "noexec.cgi"})
			if res.Status != 403 {
				t.Errorf("script nobody may not execute: status %d body %q, want 403", res.Status, res.Body)
			}
			if _, err := b.WaitLogLine(5*time.Second, "cannot execute: permission denied", "noexec.cgi"); err != nil {
				t.Errorf("refusal of the script nobody may not execute not explained: %v", err)
			}

			res = do(t, b.Socket, req{Dir: dir, Script: "ulimit.cgi"})
			if res.Status != 200 {
				t.Fatalf("ulimit.cgi: status %d body %q stderr %q", res.Status, res.Body, res.Stderr)
			}
			if got := strings.TrimSpace(res.Body); tc.args != nil && got != "64" {
				t.Errorf("ulimit -n under --limit-files 64 = %q, want 64", got)
			}
		})
	}
}

// publicAddr turns a free loopback address into the same port on every
// interface.
func publicAddr(t *testing.T) (public, loopback string) {
	t.Helper()
	loopback = freeAddr(t)
	_, port, err := net.SplitHostPort(loopback)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("0.0.0.0", port), loopback
}

// runBridge runs `cgibridge serve` with args to its end, for options it must
// refuse at start-up. A bridge still running after harness.StartTimeout has
// accepted them: it is killed, and the result says so.
func runBridge(t *testing.T, args ...string) (out string, exitCode int, accepted bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.StartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.MustBinary(t), append([]string{"serve"}, args...)...)
	cmd.Env = []string{harness.SafePath, "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	data, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(data), -1, true
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run cgibridge: %v", err)
	}
	return string(data), cmd.ProcessState.ExitCode(), false
}

// TestEndpointsLoopbackUnlessPublic pins that --http and --status refuse a
// non-loopback address at start-up (exit non-zero, naming loopback) unless
// --public-endpoints is given. Before the fix both bound 0.0.0.0 silently
// (and the old binary knows no --public-endpoints: that part fails at
// start-up).
func TestEndpointsLoopbackUnlessPublic(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "hello.cgi", helloScript)
	for _, flag := range []string{"--http", "--status"} {
		t.Run("refused "+flag, func(t *testing.T) {
			public, _ := publicAddr(t)
			sock := filepath.Join(t.TempDir(), "s.sock")
			out, code, accepted := runBridge(t, "--listen", "unix:"+sock, "--root", dir, flag, public)
			if accepted {
				t.Fatalf("%s %s was accepted without --public-endpoints: the bridge kept running\n%s", flag, public, out)
			}
			if code == 0 || !strings.Contains(out, "loopback") {
				t.Errorf("%s %s: exit code %d, output %q; want non-zero and a message naming loopback", flag, public, code, out)
			}
		})
	}
	t.Run("accepted with --public-endpoints", func(t *testing.T) {
		statusPublic, statusLocal := publicAddr(t)
		httpPublic, httpLocal := publicAddr(t)
		b := harness.StartBridge(t, []string{"--root", dir, "--public-endpoints", "--status", statusPublic, "--http", httpPublic})
		if err := b.Logs.WaitFor("serving status", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(httpGet(t, "http://"+statusLocal+"/ping")); got != "pong" {
			t.Errorf("/ping on %s = %q, want pong", statusPublic, got)
		}
		if got := httpGet(t, "http://"+httpLocal+"/hello.cgi"); got != "hello\n" {
			t.Errorf("--http %s /hello.cgi = %q, want hello", httpPublic, got)
		}
	})
}

// TestStatusAnswersOnlyAfterPrivilegeDrop pins that a root bridge without
// --user (so it drops to nobody) serves --status only once it is nobody:
// the first moment /ping answers, every uid of the process is already
// nobody's, and so was the fsuid that accepted the connection. Before the
// fix the status server started serving before the drop. The old bridge
// dropped within microseconds, so a single start catches it only about
// half the time: the test starts the bridge several times.
func TestStatusAnswersOnlyAfterPrivilegeDrop(t *testing.T) {
	requireRoot(t)
	for i := range 5 {
		t.Run(fmt.Sprintf("start %d", i+1), probeFirstStatusAnswer)
	}
}

// probeFirstStatusAnswer starts a root bridge with --status and checks who
// it is when /ping first answers.
func probeFirstStatusAnswer(t *testing.T) {
	dir := scriptDir(t)
	addr := freeAddr(t)
	sockDir, err := os.MkdirTemp("", "cgb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })

	logs := &harness.SafeBuffer{}
	cmd := exec.Command(harness.MustBinary(t), "serve", "--listen", "unix:"+filepath.Join(sockDir, "s.sock"),
		"--root", dir, "--status", addr)
	cmd.Env = []string{harness.SafePath, "HOME=/"}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(harness.StopTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("cgibridge ignored SIGTERM")
		}
		if t.Failed() {
			t.Logf("cgibridge output:\n%s", logs.String())
		}
	})

	// Connect as soon as the port listens (the kernel completes the
	// handshake before anything accepts), ask, and read the uids the moment
	// the answer is in. The bridge drops privileges within microseconds of
	// serving, so the uids at that moment could be nobody's even when it
	// answered as root; the accepted socket tells for sure: the kernel gives
	// it the fsuid of the process at accept(2), and /proc/net/tcp shows it.
	// Several dialers cover the moment the port starts listening closely;
	// every connection they make is checked.
	const dialers = 4
	conns := make(chan net.Conn, dialers)
	stopDial := make(chan struct{})
	for range dialers {
		go func() {
			deadline := time.Now().Add(harness.StartTimeout)
			for time.Now().Before(deadline) {
				select {
				case <-stopDial:
					conns <- nil
					return
				default:
				}
				if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
					conns <- c
					return
				}
			}
			conns <- nil
		}()
	}
	var first net.Conn
	select {
	case first = <-conns:
	case <-exited:
	}
	close(stopDial)
	all := []net.Conn{first}
	for range dialers - 1 {
		all = append(all, <-conns)
	}
	for _, c := range all {
		if c != nil {
			defer c.Close()
		}
	}
	if first == nil {
		t.Fatalf("--status %s did not listen within %v (or cgibridge exited)", addr, harness.StartTimeout)
	}
	for i, c := range all {
		if c == nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(harness.StartTimeout))
		// HTTP/1.1 keeps the connection open, so its server side is still
		// established (with its uid) when /proc/net/tcp is read.
		if _, err := io.WriteString(c, "GET /ping HTTP/1.1\r\nHost: status\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("/ping: %v", err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if i == 0 {
			uids := procUID(t, cmd.Process.Pid)
			for j, u := range uids {
				if u != harness.NobodyUID {
					t.Errorf("when /ping first answered, bridge uid #%d (real, effective, saved, fs) = %d, want nobody's %d (all %v)",
						j, u, harness.NobodyUID, uids)
				}
			}
		}
		if err != nil || res.StatusCode != 200 || strings.TrimSpace(string(body)) != "pong" {
			t.Fatalf("/ping = %d %q (%v), want 200 pong", res.StatusCode, body, err)
		}
		if uid := acceptedBy(t, c); uid != harness.NobodyUID {
			t.Errorf("an early /ping connection was accepted with fsuid %d, want nobody's %d: the status server served before the privilege drop", uid, harness.NobodyUID)
		}
	}
}

// acceptedBy returns the uid /proc/net/tcp gives the server side of the
// loopback connection c: the fsuid the accepting process had at accept(2).
func acceptedBy(t *testing.T, c net.Conn) int {
	t.Helper()
	client, server := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	// sl local_address rem_address st ... uid: addresses are HEXIP:HEXPORT.
	local, remote := fmt.Sprintf(":%04X", server.Port), fmt.Sprintf(":%04X", client.Port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.HasSuffix(f[1], local) || !strings.HasSuffix(f[2], remote) {
			continue
		}
		uid, err := strconv.Atoi(f[7])
		if err != nil {
			t.Fatalf("parse /proc/net/tcp line %q: %v", line, err)
		}
		return uid
	}
	t.Fatalf("no /proc/net/tcp entry for the server side of %v -> %v", client, server)
	return -1
}

// spoolFiles returns the request-body spool files under dir that the bridge
// or any of its descendants (a program reads the spool file as its stdin)
// holds open.
func spoolFiles(t *testing.T, bridgePID int, dir string) []string {
	t.Helper()
	kids, err := harness.Children(bridgePID)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, pid := range append([]int{bridgePID}, kids...) {
		fdDir := fmt.Sprintf("/proc/%d/fd", pid)
		entries, err := os.ReadDir(fdDir)
		if err != nil {
			continue // exited meanwhile
		}
		for _, e := range entries {
			target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
			if err == nil && strings.HasPrefix(target, dir+"/cgibridge-body-") {
				found = append(found, target)
			}
		}
	}
	return found
}

// TestReloadAppliesBodyOptionsAndNamesRestartOnes pins that SIGHUP applies
// --temp-dir and --max-body to new requests, and names --max-conns, which
// it cannot apply, as needing a restart. Before the fix the first two kept
// their start-up values and the max-conns change passed without a word.
func TestReloadAppliesBodyOptionsAndNamesRestartOnes(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "bodylen.cgi", "#!/bin/sh\nn=$(wc -c)\nprintf 'Content-Type: text/plain\\r\\n\\r\\nbody=%s\\n' \"$n\"\n")
	// hold.cgi waits (at most 20s) for the test to say go before it reads
	// its body, so the spool file can be seen while it is open.
	gate := filepath.Join(dir, "go")
	writeScript(t, dir, "hold.cgi", "#!/bin/sh\ni=0\n"+
		"while [ ! -e "+gate+" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n"+
		"n=$(wc -c)\nprintf 'Content-Type: text/plain\\r\\n\\r\\nbody=%s\\n' \"$n\"\n")
	tempA, tempB := filepath.Join(dir, "tmpA"), filepath.Join(dir, "tmpB")
	for _, d := range []string{tempA, tempB} {
		// The bridge drops to nobody after start-up; its temp dirs are its own.
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, harness.NobodyUID, harness.NobodyUID); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "cgibridge.json")
	conf := map[string]any{"root": dir, "max-body": "1M", "temp-dir": tempA, "max-conns": 100}
	writeConfig(t, cfg, conf)
	b := harness.StartBridge(t, []string{"--config", cfg})

	reload := func(t *testing.T, next map[string]any) string {
		t.Helper()
		writeConfig(t, cfg, next)
		mark := len(b.Logs.String())
		if err := syscall.Kill(b.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for countSince(b.Logs.String(), mark, "configuration reloaded") == 0 {
			if countSince(b.Logs.String(), mark, "reload failed") > 0 || time.Now().After(deadline) {
				t.Fatalf("no successful reload after SIGHUP:\n%s", b.Logs.String()[mark:])
			}
			time.Sleep(10 * time.Millisecond)
		}
		return b.Logs.String()[mark:]
	}
	// spoolsIn sends a body too large to keep in memory to hold.cgi and
	// reports whether its spool file was in tempDir.
	spoolsIn := func(t *testing.T, tempDir string) bool {
		t.Helper()
		_ = os.Remove(gate)
		body := bytes.Repeat([]byte("s"), 256<<10)
		done := make(chan resp, 1)
		cc := dial(t, b.Socket)
		go func() {
			res, err := doOn(cc, 1, false, req{Dir: dir, Script: "hold.cgi", Body: body})
			if err != nil {
				res.Status, res.Body = -1, err.Error()
			}
			done <- res
		}()
		seen := false
		deadline := time.Now().Add(10 * time.Second)
		for !seen && time.Now().Before(deadline) {
			seen = len(spoolFiles(t, b.PID(), tempDir)) > 0
			select {
			case res := <-done:
				t.Fatalf("hold.cgi ended before it was let go: %d %q", res.Status, res.Body)
			default:
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		res := <-done // doOn's own 20s deadline bounds this
		if res.Status != 200 || res.Body != fmt.Sprintf("body=%d\n", len(body)) {
			t.Errorf("hold.cgi with a %d-byte body: %d %q", len(body), res.Status, res.Body)
		}
		return seen
	}

	t.Run("temp-dir applies and max-conns needs a restart", func(t *testing.T) {
		if !spoolsIn(t, tempA) {
			t.Fatalf("before the reload, no spool file in --temp-dir %s", tempA)
		}
		conf["temp-dir"], conf["max-conns"] = tempB, 200
		logs := reload(t, conf)
		if !strings.Contains(logs, "takes effect only after a restart: option=--max-conns") {
			t.Errorf("changed --max-conns not reported as needing a restart:\n%s", logs)
		}
		if strings.Contains(logs, "option=--temp-dir") || strings.Contains(logs, "option=--max-body") {
			t.Errorf("an option SIGHUP applies was reported as needing a restart:\n%s", logs)
		}
		if !spoolsIn(t, tempB) {
			t.Errorf("after the reload, no spool file in the new --temp-dir %s", tempB)
		}
	})

	t.Run("max-body applies", func(t *testing.T) {
		body := bytes.Repeat([]byte("b"), 2<<10)
		if res := do(t, b.Socket, req{Dir: dir, Script: "bodylen.cgi", Body: body}); res.Status != 200 || res.Body != "body=2048\n" {
			t.Fatalf("2K body under --max-body 1M: %d %q, want 200 body=2048", res.Status, res.Body)
		}
		conf["max-body"] = "1K"
		reload(t, conf)
		if res := do(t, b.Socket, req{Dir: dir, Script: "bodylen.cgi", Body: body}); res.Status != 413 {
			t.Errorf("2K body after reloading with --max-body 1K: %d %q, want 413", res.Status, res.Body)
		}
		if res := do(t, b.Socket, req{Dir: dir, Script: "bodylen.cgi", Body: []byte("small")}); res.Status != 200 || res.Body != "body=5\n" {
			t.Errorf("5-byte body under --max-body 1K: %d %q, want 200 body=5", res.Status, res.Body)
		}
	})
}
