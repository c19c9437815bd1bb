// This file holds regression tests for defects in how the bridge bounds and
// reports a program's run: output that outlives the program, the status
// logged for a response cut short by the timeout, where a program's stderr
// goes, signals reaching the whole process group, and the exit code in
// END_REQUEST. Each test writes its own scripts.

package process

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// writeScript writes an executable script into dir.
func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o755); err != nil { // past the umask
		t.Fatal(err)
	}
}

// waitLogLine waits up to d for a line of the bridge's log holding every one
// of subs and returns it; it fails t if none comes. The access line is
// written after END_REQUEST, so it may trail the response.
func waitLogLine(t *testing.T, b *harness.Bridge, d time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for line := range strings.Lines(b.Logs.String()) {
			if containsAll(line, subs) {
				return strings.TrimSpace(line)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with all of %q within %v; log:\n%s", subs, d, b.Logs.String())
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// accessLineFor waits for the access line of a request of script and returns it.
func accessLineFor(t *testing.T, b *harness.Bridge, script string) string {
	t.Helper()
	return waitLogLine(t, b, 10*time.Second, "request:", "uri=/"+script+" ")
}

// frontEnd takes a response's output as a web server would: at once, or
// slower than the program writes (delay per record), counting the bytes.
type frontEnd struct {
	delay time.Duration
	n     int64
}

func (w *frontEnd) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	w.n += int64(len(p))
	return len(p), nil
}

// TestTimeoutBoundsOutputAfterProgramExits pins that --timeout still bounds a
// request once the main program has exited but a descendant it left behind
// keeps writing to stdout: the request ends within a few seconds, is logged
// with outcome=timeout, and frees its --max-procs slot. Before the fix the
// timeout no longer applied once the program had exited: with a front end
// slower than the writer the response streamed for as long as the writer
// lived (forever) and the only slot stayed taken; with a fast one the
// output-linger check happened to end it, logged as outcome=ok.
func TestTimeoutBoundsOutputAfterProgramExits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		delay time.Duration
	}{
		// Reading as fast as it can, the client drains every record, so
		// the bridge is mostly waiting on the pipe.
		{"fast front end", 0},
		// Slower than the writer: the bridge is always busy delivering
		// output (never waiting on an empty pipe, which would count as a
		// descendant lingering), so only the timeout can end the request.
		{"slow front end", 10 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := harness.ScriptDir(t)
			// The program exits half a second in, so the timeout (at 1s)
			// comes well before the bridge could judge the writer to be a
			// descendant lingering on an idle pipe (1s after the exit).
			writeScript(t, root, "flood.cgi", "#!/bin/sh\n"+
				"printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\n"+
				"sleep 0.5\n"+
				"(while :; do head -c 65536 /dev/zero; done) &\n"+
				"exit 0\n")
			writeScript(t, root, "hello.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello\\n'\n")
			b := harness.StartBridge(t, []string{"--root", root, "--timeout", "1s", "--kill-grace", "1s",
				"--max-procs", "1", "--queue-timeout", "5s"})

			nc, err := net.DialTimeout("unix", b.Socket, ioTimeout)
			if err != nil {
				t.Fatal(err)
			}
			c := fcgi.NewClientConn(nc)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out := &frontEnd{delay: tc.delay}
			start := time.Now()
			_, err = c.Do(ctx, 1, fcgi.RoleResponder, false, params(root, "flood.cgi", "GET", -1), nil, out, io.Discard)
			took := time.Since(start)
			switch {
			case err == nil:
			case tc.delay > 0 && errors.Is(err, fcgi.ErrNoEnd) && ctx.Err() == nil:
				// The bridge cut a write blocked on this slow front end
				// mid-record: closing the connection is all it can do.
			default:
				t.Fatalf("flood.cgi did not end within 20s under --timeout 1s (%d bytes streamed): %v", out.n, err)
			}
			// 1s timeout and 1s kill grace; generous room for a loaded
			// machine, and still far below "forever".
			if took > 10*time.Second {
				t.Errorf("flood.cgi ended after %v under --timeout 1s, want a few seconds", took)
			}

			// The single slot is free again: a fast script runs well within
			// the 5s queue wait instead of getting 503.
			r := do(t, b.Socket, root, "hello.cgi", nil, ioTimeout)
			if r.status() != 200 || !strings.Contains(r.body(), "hello") {
				t.Errorf("hello.cgi after the flood: %q, want 200 hello (the --max-procs 1 slot still taken?)", truncate(r.stdout))
			}
			if r.elapsed > 4*time.Second {
				t.Errorf("hello.cgi after the flood took %v: it waited for the slot", r.elapsed)
			}
			assertNoChildren(t, b.PID(), 10*time.Second)

			line := accessLineFor(t, b, "flood.cgi")
			// With a slow front end the timeout has to cut a blocked write,
			// which closes the connection: it is still a timeout, not an
			// abort (it was logged aborted once).
			if !strings.Contains(line, "outcome=timeout") {
				t.Errorf("access line lacks outcome=timeout: %s", line)
			}
		})
	}
}

// TestTimeoutAfterHeaderLogsSentStatus pins that a response the timeout cut
// short after its header went out is logged with the status that was sent:
// before the fix the access line said status=0.
func TestTimeoutAfterHeaderLogsSentStatus(t *testing.T) {
	t.Parallel()
	root := harness.ScriptDir(t)
	writeScript(t, root, "partial.cgi", "#!/bin/sh\n"+
		"printf 'Content-Type: text/plain\\r\\n\\r\\nfirst part\\n'\n"+
		"sleep 30\n"+
		"echo never\n")
	b := harness.StartBridge(t, []string{"--root", root, "--timeout", "1s", "--kill-grace", "1s"})
	r := do(t, b.Socket, root, "partial.cgi", nil, ioTimeout)
	if r.status() != 200 || !strings.Contains(r.body(), "first part") {
		t.Errorf("response %q, want the 200 header and the first part", truncate(r.stdout))
	}
	line := accessLineFor(t, b, "partial.cgi")
	if !strings.Contains(line, " status=200 ") || !strings.Contains(line, "outcome=timeout") {
		t.Errorf("access line %s: want status=200 outcome=timeout", line)
	}
}

// TestStderrGoesWhereStderrFlagSays pins --stderr: with log a program's
// stderr line is in the bridge's log and not sent as FastCGI STDERR records,
// with fcgi the other way round, and by default both. (The bridge from
// before the refactor already did this on its exec path; the test keeps the
// new request path honest.)
func TestStderrGoesWhereStderrFlagSays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		args         []string
		inLog, inRec bool
	}{
		{"log", []string{"--stderr", "log"}, true, false},
		{"fcgi", []string{"--stderr", "fcgi"}, false, true},
		{"default both", nil, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := harness.ScriptDir(t)
			writeScript(t, root, "warn.cgi", "#!/bin/sh\n"+
				"echo 'warn-marker-7391 from the script' >&2\n"+
				"printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n")
			b := harness.StartBridge(t, append([]string{"--root", root}, tc.args...))
			r := do(t, b.Socket, root, "warn.cgi", nil, ioTimeout)
			if r.status() != 200 {
				t.Fatalf("status %d, stdout %q", r.status(), truncate(r.stdout))
			}
			// The stderr pipe is drained before the request's access line is
			// written: once it is there, a log line of stderr would be too.
			accessLineFor(t, b, "warn.cgi")
			const marker = "warn-marker-7391"
			if got := strings.Contains(r.stderr, marker); got != tc.inRec {
				t.Errorf("stderr in FastCGI STDERR records = %v, want %v (records: %q)", got, tc.inRec, r.stderr)
			}
			inLog := false
			for line := range strings.Lines(b.Logs.String()) {
				if strings.Contains(line, marker) && !strings.Contains(line, "request:") {
					inLog = true
				}
			}
			if inLog != tc.inLog {
				t.Errorf("stderr in the bridge's log = %v, want %v; log:\n%s", inLog, tc.inLog, b.Logs.String())
			}
		})
	}
}

// detachScript starts a grandchild with none of the output pipes, writes its
// pid to pidfile, and becomes a sleep without answering. Once the program is
// signalled nothing holds the pipes open, so only a signal to the process
// group reaches the grandchild (a foreground child left holding stdout would
// get the group killed by the bridge's output drain instead).
func detachScript(pidfile string) string {
	return "#!/bin/sh\n" +
		"sleep 300 >/dev/null 2>&1 </dev/null &\n" +
		"echo $! > " + pidfile + ".tmp && mv " + pidfile + ".tmp " + pidfile + "\n" +
		"exec sleep 30\n"
}

// waitPidfile polls until the script has written its grandchild's pid, and
// makes sure that process is killed when the test ends whatever happens.
func waitPidfile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil || pid <= 1 {
				t.Fatalf("pidfile %s holds %q", path, data)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script wrote no pidfile %s within %v", path, ioTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidDir makes a directory the script, run as the bridge's unprivileged
// user, can write its pidfile into.
func pidDir(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "pids")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTimeoutAndAbortSignalProcessGroup pins that the timeout and a client
// abort signal the program's process group, not only its pid: a grandchild
// that holds none of the output pipes is gone afterwards. Signalling only the
// pid would leave it running, since no output drain ever notices it. (The
// bridge from before the refactor already signalled the group on its exec
// path; the test keeps the new request path honest.)
func TestTimeoutAndAbortSignalProcessGroup(t *testing.T) {
	t.Parallel()
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		root := harness.ScriptDir(t)
		pidfile := filepath.Join(pidDir(t, root), "grandchild.pid")
		writeScript(t, root, "detach.cgi", detachScript(pidfile))
		b := harness.StartBridge(t, []string{"--root", root, "--timeout", "1s", "--kill-grace", "1s"})
		r := do(t, b.Socket, root, "detach.cgi", nil, ioTimeout)
		if r.status() != 504 {
			t.Errorf("status %d, want 504; stdout %q", r.status(), truncate(r.stdout))
		}
		pid := waitPidfile(t, pidfile)
		if err := harness.WaitGone(pid, 10*time.Second); err != nil {
			t.Errorf("grandchild after the timeout: %v", err)
		}
	})
	t.Run("client abort", func(t *testing.T) {
		t.Parallel()
		root := harness.ScriptDir(t)
		pidfile := filepath.Join(pidDir(t, root), "grandchild.pid")
		writeScript(t, root, "detach.cgi", detachScript(pidfile))
		b := harness.StartBridge(t, []string{"--root", root, "--kill-grace", "1s"})
		c := dial(t, b.Socket)
		c.Conn().SetDeadline(time.Now().Add(ioTimeout))
		if err := c.WriteBeginRequest(1, fcgi.RoleResponder, false); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteParams(1, params(root, "detach.cgi", "GET", -1)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteStream(fcgi.TypeStdin, 1, nil, 0); err != nil {
			t.Fatal(err)
		}
		pid := waitPidfile(t, pidfile)
		c.Close() // how nginx aborts a request
		if err := harness.WaitGone(pid, 10*time.Second); err != nil {
			t.Errorf("grandchild after the client closed the connection: %v", err)
		}
	})
}

// TestEndRequestAppStatusIsExitCode pins that END_REQUEST's appStatus is the
// program's exit code: before the fix it was always 0.
func TestEndRequestAppStatusIsExitCode(t *testing.T) {
	t.Parallel()
	root := harness.ScriptDir(t)
	writeScript(t, root, "exit3.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nbye\\n'\nexit 3\n")
	b := harness.StartBridge(t, []string{"--root", root})
	r := do(t, b.Socket, root, "exit3.cgi", nil, ioTimeout)
	if r.status() != 200 || !strings.Contains(r.body(), "bye") {
		t.Errorf("response %q, want 200 bye", truncate(r.stdout))
	}
	if r.end.AppStatus != 3 {
		t.Errorf("END_REQUEST appStatus = %d, want the exit code 3 (protocol status %d)", r.end.AppStatus, r.end.ProtocolStatus)
	}
}
