package zygote

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// TestModuleReadingTheEnvironmentAtImportIsNotPreloaded: a module that reads
// a request variable while imported gives each request its own value, and
// the helper says why it left it out.
func TestModuleReadingTheEnvironmentAtImportIsNotPreloaded(t *testing.T) {
	b := serve(t, newRoot(t), "--warm", "*.py")
	b.warmUp(t, "envreader.py")
	for _, mode := range []string{"one", "two", "three"} {
		r, l := b.doAccess(t, "envreader.py", "", nil, fcgi.Pair{Name: "HTTP_X_MODE", Value: mode})
		if strings.TrimSpace(r.body()) != "mode "+mode {
			t.Errorf("X-Mode %s: got %q", mode, r.body())
		}
		if !strings.Contains(l, "runner=warm") {
			t.Errorf("not served warm: %s", l)
		}
	}
	if !strings.Contains(b.bridge.Logs.String(), "not preloaded: module envmod reads HTTP_X_MODE at import") {
		t.Errorf("no log line names the evicted module")
	}
}

// TestUnsupportedFlagsRunInExecModeWithTheReason: a #! line with flags a
// helper cannot honour is served in exec mode, the reason in the access line.
func TestUnsupportedFlagsRunInExecModeWithTheReason(t *testing.T) {
	root := newRoot(t)
	writeScript(t, root, "flags.py", "#!/usr/bin/python3 -X dev\nprint('Content-Type: text/plain\\n\\nok')\n")
	b := serve(t, root, "--warm", "*.py")
	var l string
	for range 3 {
		var r reply
		if r, l = b.doAccess(t, "flags.py", "", nil); r.body() != "ok\n" {
			t.Fatalf("got %q", r.stdout)
		}
	}
	if !strings.Contains(l, "runner=exec") || !strings.Contains(l, "interpreter flag -X is not supported warm") {
		t.Errorf("access line: %s", l)
	}
}

func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o755)
}

// TestSyntaxErrorIsAnsweredAsExecModeAnswersIt: a script that does not
// compile gets exec mode's answer and traceback; fixed, it is served warm.
func TestSyntaxErrorIsAnsweredAsExecModeAnswersIt(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	b := serve(t, root, "--warm", "*.py")
	b.warmUp(t, "hello.py")
	// Broken while warm: the child compiles it anew and fails as python does.
	writeScript(t, root, "hello.py", "#!/usr/bin/python3\nprint('Content-Type: text/plain'\n")
	w, c := b.do(t, "hello.py", "", nil), cold.do(t, "hello.py", "", nil)
	if w.status() != c.status() || w.end.AppStatus != c.end.AppStatus {
		t.Errorf("broken script: warm %s/%d, exec %s/%d", w.status(), w.end.AppStatus, c.status(), c.end.AppStatus)
	}
	for _, bb := range []*bed{b, cold} {
		if !strings.Contains(bb.bridge.Logs.String(), "SyntaxError") {
			t.Errorf("no SyntaxError in the log")
		}
	}
	// Fixed: warm again, the new version.
	writeScript(t, root, "hello.py", "#!/usr/bin/python3\nimport os\nprint('Content-Type: text/plain\\n\\nhello version=v2 pid=%d' % os.getpid())\n")
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, l := b.doAccess(t, "hello.py", "", nil)
		if strings.Contains(r.body(), "version=v2") && strings.Contains(l, "runner=warm") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fixed script is not served warm: %q\n%s", r.stdout, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// helperPIDs returns the bridge's direct children (the helpers, and any
// exec-mode script running): the request children are the helpers'.
func helperPIDs(t *testing.T, b *bed) []int {
	t.Helper()
	kids, err := harness.Children(b.bridge.PID())
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, k := range kids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k))
		i := strings.LastIndexByte(string(st), ')')
		if err != nil || i < 0 || i+2 > len(st) {
			continue // gone meanwhile
		}
		if f := strings.Fields(string(st[i+2:])); len(f) > 1 && f[1] == strconv.Itoa(b.bridge.PID()) {
			out = append(out, k)
		}
	}
	return out
}

// TestHelperKilledMidLoadCostsNoRequest: kill -9 of the helper while
// requests flow: every request gets an answer — a child killed mid-run is
// that request's 502, as in exec mode; the rest run in exec mode until a
// new helper serves warm again.
func TestHelperKilledMidLoadCostsNoRequest(t *testing.T) {
	killHelperUnderLoad(t, "*.py", "hello.py")
}

// TestPerlHelperKilledMidLoadCostsNoRequest is the same for a Perl helper.
func TestPerlHelperKilledMidLoadCostsNoRequest(t *testing.T) {
	killHelperUnderLoad(t, "*.pl", "hello.pl")
}

// killHelperUnderLoad kills the helper of a bridge serving name (which
// answers "version=v1") while it loads, then while 4 clients request it.
func killHelperUnderLoad(t *testing.T, glob, name string) {
	b := serve(t, newRoot(t), "--warm", glob)
	// While loading: the first request starts the helper, exec mode serves it.
	if r := b.do(t, name, "", nil); !strings.Contains(r.body(), "version=v1") {
		t.Fatalf("first request: %v %q", r.err, r.stdout)
	}
	for _, h := range helperPIDs(t, b) {
		syscall.Kill(h, syscall.SIGKILL)
	}
	b.warmUp(t, name)
	stop := make(chan struct{})
	var mu sync.Mutex
	var failed, total, bad int
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				select {
				case <-stop:
					return
				default:
				}
				r := b.do(t, name, "", nil)
				mu.Lock()
				total++
				switch {
				case r.err != nil:
					failed++
				case r.status() == "200" && strings.Contains(r.body(), "version=v1"):
				case r.status() == "502":
					bad++
				default:
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for _, h := range helperPIDs(t, b) {
		syscall.Kill(h, syscall.SIGKILL)
	}
	time.Sleep(300 * time.Millisecond)
	b.warmUp(t, name)
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d answered 502 (their child was killed), %d failed", total, bad, failed)
	if !strings.Contains(b.bridge.Logs.String(), "generation=3") {
		t.Errorf("no third helper generation: the helpers were not killed?")
	}
	if failed > 0 {
		t.Errorf("%d requests got no answer or a wrong one", failed)
	}
	if bad > 4 {
		t.Errorf("%d requests answered 502: only those running when the helper died should", bad)
	}
}

// TestTimeoutAndAbortKillTheChildsGroup: a warm script's timeout and a
// client's abort end its child and the child's own children.
func TestTimeoutAndAbortKillTheChildsGroup(t *testing.T) {
	root := newRoot(t)
	b := serve(t, root, "--warm", "*.py", "--timeout", "1s", "--kill-grace", "300ms")
	b.warmUp(t, "sleeper.py")
	pidFile := filepath.Join(root, "grandchild.pid")
	os.WriteFile(pidFile, nil, 0o666)
	os.Chmod(pidFile, 0o666)
	r, l := b.doAccess(t, "sleeper.py", pidFile, nil)
	if !strings.Contains(l, "outcome=timeout") || !strings.Contains(l, "runner=warm") {
		t.Fatalf("timeout: %q\n%s\n%s", r.stdout, l, b.bridge.Logs.String())
	}
	data, _ := os.ReadFile(pidFile)
	gc, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("no grandchild pid: %q", data)
	}
	waitGone(t, gc)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		i := strings.LastIndexByte(string(st), ')')
		if err != nil || i < 0 || strings.HasPrefix(string(st[i:]), ") Z") {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDescriptorsAndProcessesBackToIdle: 10,000 warm requests leave the
// bridge with the descriptors and processes it had after the first few.
func TestDescriptorsAndProcessesBackToIdle(t *testing.T) {
	b := serve(t, newRoot(t), "--warm", "*.py")
	b.warmUp(t, "hello.py")
	load := func(n int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if r := b.do(t, "hello.py", "", nil); r.err != nil || !strings.Contains(r.body(), "version=v1") {
						mu.Lock()
						if first == nil {
							first = fmt.Errorf("%v %q", r.err, r.stdout)
						}
						mu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
		if first != nil {
			t.Fatal(first)
		}
	}
	load(25)
	time.Sleep(200 * time.Millisecond)
	fds0, _ := harness.OpenFDs(b.bridge.PID())
	kids0, _ := harness.Children(b.bridge.PID())
	load(2500)
	var fds int
	var kids []int
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds, _ = harness.OpenFDs(b.bridge.PID())
		kids, _ = harness.Children(b.bridge.PID())
		if fds <= fds0 && len(kids) <= len(kids0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fds > fds0 || len(kids) > len(kids0) {
		t.Fatalf("after 10,000 requests: %d descriptors (%d before), %d processes (%d before)", fds, fds0, len(kids), len(kids0))
	}
	if n := strings.Count(b.bridge.Logs.String(), "runner=warm"); n < 9000 {
		t.Errorf("only %d of 10,000 requests served warm", n)
	}
}
