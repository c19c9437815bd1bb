package pool

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// TestChildrenPersist: the same child answers request after request, for a
// libfcgi C program and a Python one, and the access line says fastcgi.
func TestChildrenPersist(t *testing.T) {
	b := newBed(t, "--fastcgi", "*.fcgi", "--fastcgi-procs", "2")
	for _, prog := range []string{"hello.fcgi", "child.fcgi"} {
		first := b.get(t, prog)
		if first.status != 200 {
			t.Fatalf("%s: %d %q", prog, first.status, first.body)
		}
		pid := pidOf(t, first.body)
		for i := 2; i <= 20; i++ {
			r := b.get(t, prog)
			if r.status != 200 || pidOf(t, r.body) != pid {
				t.Fatalf("%s request %d: %d %q, want pid %d again", prog, i, r.status, r.body, pid)
			}
		}
		if !strings.Contains(b.get(t, prog).body, "request 21") && prog == "hello.fcgi" {
			t.Errorf("hello.fcgi did not count its requests")
		}
		b.logLine(t, "request:", "uri=/cgi-bin/"+prog, "runner=fastcgi")
	}
}

// TestParamsAreTheExecEnvironment: the params a child gets are exactly the
// environment exec mode would give the program (httpoxy and LD_* dropped,
// the path walked, the real CONTENT_LENGTH), while its start environment is
// the allowlist plus what --set-env and --fastcgi-env give, never the
// bridge's own.
func TestParamsAreTheExecEnvironment(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--set-env", "SITE=demo",
		"--fastcgi-env", "child.fcgi:APP_CONFIG=/etc/app.conf", "--fastcgi-env", "other.fcgi:NOT_ME=1")
	out, _, err := b.raw(t, "child.fcgi", "reqenv")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(out, "\r\n\r\n")
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	for k, want := range map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "SCRIPT_NAME": "/child.fcgi", "SCRIPT_FILENAME": filepath.Join(b.root, "child.fcgi"),
		"QUERY_STRING": "reqenv", "SITE": "demo", "REQUEST_METHOD": "GET",
	} {
		if env[k] != want {
			t.Errorf("param %s=%q, want %q", k, env[k], want)
		}
	}
	for _, k := range []string{"CONTENT_LENGTH", "HTTP_PROXY", "HOME", "APP_CONFIG"} {
		if _, ok := env[k]; ok {
			t.Errorf("param %s should not be sent: %q", k, env[k])
		}
	}
	if !strings.HasPrefix(env["SERVER_SOFTWARE"], "cgibridge/") {
		t.Errorf("SERVER_SOFTWARE %q", env["SERVER_SOFTWARE"])
	}

	start := b.get(t, "child.fcgi?startenv")
	for _, want := range []string{"PHP_FCGI_CHILDREN=0\n", "SITE=demo\n", "APP_CONFIG=/etc/app.conf\n", "PATH="} {
		if !strings.Contains(start.body, want) {
			t.Errorf("start environment lacks %q:\n%s", want, start.body)
		}
	}
	for _, not := range []string{"HOME=", "NOT_ME=", "QUERY_STRING="} {
		if strings.Contains(start.body, not) {
			t.Errorf("start environment has %q:\n%s", not, start.body)
		}
	}
}

// TestBodyAndStderrAndAppStatus: a POST body reaches the child, its STDERR
// records reach the log, and its appStatus reaches END_REQUEST.
func TestBodyAndStderrAndAppStatus(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi")
	resp, err := client.Post(b.base+"child.fcgi?body", "text/plain", strings.NewReader(strings.Repeat("b", 200000)))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100)
	n, _ := resp.Body.Read(data)
	resp.Body.Close()
	if !strings.HasPrefix(string(data[:n]), "len=200000 bbbb") {
		t.Fatalf("body reply %q", data[:n])
	}
	b.get(t, "child.fcgi?stderr")
	b.logLine(t, "stderr", "a warning from the child")
	_, end, err := b.raw(t, "child.fcgi", "status7")
	if err != nil || end.AppStatus != 7 {
		t.Fatalf("appStatus %d (%v), want the child's 7", end.AppStatus, err)
	}
}

// TestChildCrashMidRequest: a child that dies during a request fails that
// request (502 before any output) with a log line naming program, pid and
// exit, and the next request gets a healthy child.
func TestChildCrashMidRequest(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi")
	pid := pidOf(t, b.get(t, "child.fcgi").body)
	if r := b.get(t, "child.fcgi?crash-before"); r.status != 502 {
		t.Fatalf("crash before answering: %d %q, want 502", r.status, r.body)
	}
	line := b.logLine(t, "FastCGI child failed mid-request", "pid="+strconv.Itoa(pid))
	if !strings.Contains(line, "exit 3") || !strings.Contains(line, "program="+filepath.Join(b.root, "child.fcgi")) {
		t.Errorf("log line lacks the exit or the program: %s", line)
	}
	next := b.get(t, "child.fcgi")
	if next.status != 200 || pidOf(t, next.body) == pid {
		t.Fatalf("after the crash: %d %q, want a new child", next.status, next.body)
	}
	// Dying after the header went out: the response is cut short.
	if r := b.get(t, "child.fcgi?crash-after"); r.status == 200 && strings.Contains(r.body, "pid=") {
		t.Fatalf("crash after partial output looks complete: %q", r.body)
	}
	if r := b.get(t, "child.fcgi"); r.status != 200 {
		t.Fatalf("after the second crash: %d", r.status)
	}
}

// TestChildExitingBetweenRequestsIsReplacedQuietly: a child that exits after
// each request (php-cgi after PHP_FCGI_MAX_REQUESTS, gitweb after 100)
// costs no request.
func TestChildExitingBetweenRequestsIsReplacedQuietly(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--fastcgi-procs", "1")
	seen := map[int]bool{}
	for i := range 30 {
		r := b.get(t, "child.fcgi?exit-after")
		if r.status != 200 {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
		seen[pidOf(t, r.body)] = true
	}
	if len(seen) < 25 {
		t.Errorf("only %d children for 30 requests that each end their child", len(seen))
	}
	if n := b.countLines("failed mid-request"); n != 0 {
		t.Errorf("%d requests logged as failed", n)
	}
}

// TestKilledIdleChildIsReplaced: kill -9 of an idle child costs nothing.
func TestKilledIdleChildIsReplaced(t *testing.T) {
	b := newBed(t, "--fastcgi", "hello.fcgi", "--fastcgi-procs", "1")
	pid := pidOf(t, b.get(t, "hello.fcgi").body)
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "the killed child reaped", func() bool { return !slices.Contains(b.children(t), pid) })
	r := b.get(t, "hello.fcgi")
	if r.status != 200 || pidOf(t, r.body) == pid {
		t.Fatalf("after kill -9: %d %q", r.status, r.body)
	}
	b.logLine(t, "FastCGI child exited between requests", "pid="+strconv.Itoa(pid), "signal KILL")
}

// TestTimeoutKillsTheChild: a request past --timeout is answered 504 as in
// exec mode, and its child — perhaps stuck — is stopped and replaced.
func TestTimeoutKillsTheChild(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--timeout", "1s", "--kill-grace", "500ms")
	pid := pidOf(t, b.get(t, "child.fcgi").body)
	if r := b.get(t, "child.fcgi?sleep"); r.status != 504 {
		t.Fatalf("sleeping child: %d %q, want 504", r.status, r.body)
	}
	waitFor(t, 5*time.Second, "the timed-out child gone", func() bool { return gone(pid) })
	if r := b.get(t, "child.fcgi"); r.status != 200 || pidOf(t, r.body) == pid {
		t.Fatalf("after the timeout: %d %q", r.status, r.body)
	}
	b.logLine(t, "request:", "uri=/cgi-bin/child.fcgi?sleep", "outcome=timeout", "runner=fastcgi")
}

// TestAbortKillsTheChild: a client that goes away mid-request (nginx closes
// the connection) gets its child stopped and replaced.
func TestAbortKillsTheChild(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--kill-grace", "500ms")
	pid := pidOf(t, b.get(t, "child.fcgi").body)
	done := make(chan error, 1)
	go func() {
		c := *client
		c.Timeout = 500 * time.Millisecond
		_, err := c.Get(b.base + "child.fcgi?sleep")
		done <- err
	}()
	if err := <-done; err == nil {
		t.Fatal("a request that sleeps forever answered")
	}
	waitFor(t, 10*time.Second, "the abandoned child gone", func() bool { return gone(pid) })
	b.logLine(t, "request:", "uri=/cgi-bin/child.fcgi?sleep", "outcome=aborted")
	if r := b.get(t, "child.fcgi"); r.status != 200 {
		t.Fatalf("after the abort: %d", r.status)
	}
}

// TestMalformedChildIsA502AndKilled: whatever a broken child sends —
// garbage, an END_REQUEST for another id, a record longer than announced,
// nothing before closing — the request is a 502, the child is killed, and
// the bridge serves on.
func TestMalformedChildIsA502AndKilled(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--timeout", "10s", "--kill-grace", "500ms")
	for _, mode := range []string{"garbage", "otherid", "oversize", "close"} {
		pid := pidOf(t, b.get(t, "child.fcgi").body)
		start := time.Now()
		out, _, err := b.raw(t, "child.fcgi", mode)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if !strings.HasPrefix(out, "Status: 502") {
			t.Errorf("%s: %q, want a 502", mode, out)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v (waited for the timeout?)", mode, d)
		}
		waitFor(t, 5*time.Second, mode+": the broken child gone", func() bool { return gone(pid) })
	}
}

// TestProgramThatCannotStartIsServedInExecMode: a program that works as plain
// CGI but dies as a FastCGI child is served in exec mode, its failure logged
// once, and fixing it brings the pool back.
func TestProgramThatCannotStartIsServedInExecMode(t *testing.T) {
	b := newBed(t, "--fastcgi", "flaky.fcgi")
	flaky := filepath.Join(b.root, "flaky.fcgi")
	writeFile(t, flaky, "#!/bin/sh\n# Dies when given a listening socket, works as CGI.\n[ -S /dev/stdin ] && exit 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\nplain cgi\\n'\n")
	for i := range 5 {
		r := b.get(t, "flaky.fcgi")
		if r.status != 200 || r.body != "plain cgi\n" {
			t.Fatalf("request %d: %d %q, want exec mode's answer", i, r.status, r.body)
		}
	}
	if n := b.countLines("FastCGI children cannot start"); n != 1 {
		t.Errorf("start failure logged %d times, want once", n)
	}
	b.logLine(t, "request:", "uri=/cgi-bin/flaky.fcgi", "runner=exec", "cold=")
	// The fixed program (a real FastCGI child) is served warm.
	copyFile(t, filepath.Join(b.root, "child.fcgi"), flaky+".new", 0o755)
	if err := os.Rename(flaky+".new", flaky); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the fixed program served warm", func() bool {
		r := b.get(t, "flaky.fcgi")
		return r.status == 200 && strings.Contains(r.body, "version=v1")
	})
}

// TestMaxRequestsReplacesChildren: --fastcgi-max-requests N gives each child
// N requests.
func TestMaxRequestsReplacesChildren(t *testing.T) {
	b := newBed(t, "--fastcgi", "hello.fcgi", "--fastcgi-procs", "1", "--fastcgi-max-requests", "3")
	var pids []int
	for range 9 {
		pids = append(pids, pidOf(t, b.get(t, "hello.fcgi").body))
	}
	for i := range 9 {
		sameAsFirstOfThree := pids[i] == pids[i/3*3]
		newAtThree := i%3 != 0 || i == 0 || pids[i] != pids[i-1]
		if !sameAsFirstOfThree || !newAtThree {
			t.Fatalf("pids %v: want a new child every 3 requests", pids)
		}
	}
}

// TestIdleChildrenAreStopped: --fastcgi-idle stops children nobody uses.
func TestIdleChildrenAreStopped(t *testing.T) {
	b := newBed(t, "--fastcgi", "hello.fcgi", "--fastcgi-idle", "300ms")
	pid := pidOf(t, b.get(t, "hello.fcgi").body)
	waitFor(t, 10*time.Second, "the idle child stopped", func() bool { return gone(pid) })
	if r := b.get(t, "hello.fcgi"); r.status != 200 || pidOf(t, r.body) == pid {
		t.Fatalf("after the idle stop: %d %q", r.status, r.body)
	}
}

// TestPoolCapacityQueuesThen503: --fastcgi-procs children at most; a request
// beyond waits --queue-timeout, then gets 503.
func TestPoolCapacityQueuesThen503(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--fastcgi-procs", "1", "--queue-timeout", "300ms", "--timeout", "4s")
	busy := make(chan reply, 1)
	go func() { busy <- b.tryGet("child.fcgi?sleep") }()
	b.logLine(t, "FastCGI child started")
	waitFor(t, 5*time.Second, "the sleeper busy", func() bool { return len(b.children(t)) == 1 })
	time.Sleep(100 * time.Millisecond) // the sleeper's request reaches its child
	if r := b.get(t, "child.fcgi"); r.status != 503 {
		t.Fatalf("second request with the only child busy: %d %q, want 503", r.status, r.body)
	}
	if r := <-busy; r.status != 504 {
		t.Fatalf("the sleeper: %d", r.status)
	}
}

// TestShutdownStopsEveryChild and kill -9 of the bridge: no child outlives
// the bridge.
func TestNoChildOutlivesTheBridge(t *testing.T) {
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			b := newBed(t, "--fastcgi", "*.fcgi", "--fastcgi-procs", "3")
			for _, p := range []string{"hello.fcgi", "child.fcgi"} {
				for range 3 {
					b.get(t, p)
				}
			}
			kids := b.children(t)
			if len(kids) == 0 {
				t.Fatal("no children")
			}
			sig := syscall.SIGTERM
			if how == "SIGKILL" {
				sig = syscall.SIGKILL
			}
			syscall.Kill(b.bridge.PID(), sig)
			err := b.bridge.Stop() // waits for the exit
			if how == "SIGTERM" && err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
			for _, k := range kids {
				waitFor(t, 10*time.Second, fmt.Sprintf("child %d gone after %s of the bridge", k, how), func() bool { return gone(k) })
			}
		})
	}
}

// TestOnePHPPoolServesEveryScript: --fastcgi '*.php' runs one pool of
// php-cgi for every PHP script.
func TestOnePHPPoolServesEveryScript(t *testing.T) {
	b := newBed(t, "--fastcgi", "*.php", "--fastcgi-procs", "1")
	for _, name := range []string{"a.php", "b.php"} {
		writeFile(t, filepath.Join(b.root, name), "<?php echo \"script="+name+" pid=\", getmypid(), \"\\n\";\n")
	}
	pid := 0
	for i := range 6 {
		name := []string{"a.php", "b.php"}[i%2]
		r := b.get(t, name)
		if r.status != 200 || !strings.Contains(r.body, "script="+name) {
			t.Fatalf("%s: %d %q", name, r.status, r.body)
		}
		p := pidOf(t, r.body)
		if pid != 0 && p != pid {
			t.Fatalf("%s served by pid %d, the pool's child is %d", name, p, pid)
		}
		pid = p
	}
}

// TestDescriptorsAndChildrenBackToIdle: after 10,000 requests the bridge
// holds as many descriptors and children as after the first few.
func TestDescriptorsAndChildrenBackToIdle(t *testing.T) {
	b := newBed(t, "--fastcgi", "hello.fcgi", "--fastcgi-procs", "2")
	load := func(n int) {
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				for range n {
					out, _, err := b.raw(t, "hello.fcgi", "")
					if err == nil && !strings.Contains(out, "hello from pid") {
						err = fmt.Errorf("bad reply %q", out)
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	// Warm up to the pool's full size (a child costs the bridge a pipe and
	// a pidfd or two), then count.
	load(50)
	waitFor(t, 5*time.Second, "both children started", func() bool { return len(b.children(t)) == 2 })
	fds0, err := harness.OpenFDs(b.bridge.PID())
	if err != nil {
		t.Fatal(err)
	}
	kids0 := len(b.children(t))
	load(2500)
	var fds, kids int
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds, _ = harness.OpenFDs(b.bridge.PID())
		kids = len(b.children(t))
		if fds <= fds0 && kids == kids0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fds > fds0 || kids != kids0 {
		t.Fatalf("after 10,000 requests: %d descriptors (%d before) and %d children (%d before)", fds, fds0, kids, kids0)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestStatusPageShowsPools: the status page, its JSON and /metrics show each
// pool with its generation, children and counters.
func TestStatusPageShowsPools(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	b := newBed(t, "--fastcgi", "hello.fcgi", "--status", addr)
	for range 5 {
		b.get(t, "hello.fcgi")
	}
	page := func(path string) string {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return sb.String()
	}
	prog := filepath.Join(b.root, "hello.fcgi")
	text := page("/status")
	for _, want := range []string{"fastcgi " + prog + ":", "generation: 1", "idle: 1", "requests: 5", "processes started: 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("status page lacks %q:\n%s", want, text)
		}
	}
	if js := page("/status?json"); !strings.Contains(js, `"program":"`+prog+`"`) || !strings.Contains(js, `"requests":5`) {
		t.Errorf("JSON status: %s", js)
	}
	if m := page("/metrics"); !strings.Contains(m, `cgibridge_warm_requests_total{runner="fastcgi",program="`+prog+`"} 5`) {
		t.Errorf("metrics lack the pool's requests:\n%s", m)
	}
}
