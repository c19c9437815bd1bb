package execrun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
)

// TestMain lets the test binary act as the limits shim, as cgibridge does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.ShimArg {
		sandbox.ShimMain(os.Args)
	}
	os.Exit(m.Run())
}

// slowSink is a front end that takes its time over the first write, like a
// slow client behind nginx with fastcgi_buffering off.
type slowSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	delay time.Duration
	once  sync.Once
}

func (s *slowSink) Write(p []byte) (int, error) {
	s.once.Do(func() { time.Sleep(s.delay) })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *slowSink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func job(prog string, stdout, stderr *bytes.Buffer) *runner.Job {
	j := &runner.Job{Script: prog, Filename: prog, Program: prog, Argv: []string{prog}}
	if stdout != nil {
		j.Stdout = stdout
	}
	if stderr != nil {
		j.Stderr = stderr
	}
	return j
}

// testCtx bounds a run like the dispatcher does with --timeout.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeoutCause(context.Background(), d, runner.ErrTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestExecSlowFrontEndLosesNoOutput pins that a program which writes a lot
// and exits at once has all its output delivered, however long the front end
// takes: the output grace after exit is for descendants holding the pipe
// open, not for delivery.
func TestExecSlowFrontEndLosesNoOutput(t *testing.T) {
	// 60 KB fits in the pipe: the program exits at once, and all of its
	// output is still to be delivered when it has.
	prog := script(t, "head -c 60000 /dev/zero | tr '\\0' x; exit 0\n")
	sink := &slowSink{delay: 1500 * time.Millisecond}
	r := New(Config{Grace: process.Grace{Output: 200 * time.Millisecond}})
	j := job(prog, nil, nil)
	j.Stdout = sink
	res := r.Run(testCtx(t, 10*time.Second), j)
	if res.Err != nil || !res.Exited || res.Exit.Code != 0 {
		t.Fatalf("run: %+v", res)
	}
	if got := sink.Len(); got != 60000 {
		t.Fatalf("front end got %d bytes, want 60000 (lingered=%v)", got, res.Lingered)
	}
	if res.Lingered {
		t.Error("a slow front end was taken for descendants holding the output")
	}
}

// TestExecGrandchildHoldingOutputIsEnded pins the other side: a descendant
// that keeps the output open after the program exited is ended after the
// grace, and the run returns.
func TestExecGrandchildHoldingOutputIsEnded(t *testing.T) {
	prog := script(t, "printf 'Content-Type: text/plain\\r\\n\\r\\nhi\\n'; sleep 30 &\nexit 0\n")
	var out bytes.Buffer
	r := New(Config{Grace: process.Grace{Output: 200 * time.Millisecond}})
	res := r.Run(testCtx(t, 20*time.Second), job(prog, &out, nil))
	if res.Cause != nil {
		t.Fatalf("the run was ended by its timeout, not the output grace: %v", res.Cause)
	}
	if !res.Lingered || !strings.HasSuffix(out.String(), "hi\n") {
		t.Fatalf("lingered=%v output %q", res.Lingered, out.String())
	}
}

func TestExecOutputIntact(t *testing.T) {
	prog := script(t, "head -c 1000000 /dev/urandom | tee /dev/stderr\n")
	var out, errOut bytes.Buffer
	res := New(Config{}).Run(context.Background(), job(prog, &out, &errOut))
	if res.Exit.Code != 0 || out.Len() != 1000000 || sha256.Sum256(out.Bytes()) != sha256.Sum256(errOut.Bytes()) {
		t.Fatalf("exit %v, stdout %d bytes, stderr %d bytes", res.Exit, out.Len(), errOut.Len())
	}
}

// TestTimeoutBoundsOutputAfterExit is defect 1 of "One request path": a
// backgrounded writer holding stdout after the program exited ran on past
// the timeout, delivering without end. The timeout bounds the whole run.
func TestTimeoutBoundsOutputAfterExit(t *testing.T) {
	prog := script(t, "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n(while :; do head -c 65536 /dev/zero; done) &\nexit 0\n")
	sink := &countingSink{}
	r := New(Config{Grace: process.Grace{Output: 30 * time.Second}})
	start := time.Now()
	j := job(prog, nil, nil)
	j.Stdout = sink
	res := r.Run(testCtx(t, time.Second), j)
	if !res.TimedOut() {
		t.Fatalf("cause %v, want the timeout; result %+v", res.Cause, res)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("run took %v under a 1s timeout", d)
	}
}

type countingSink struct {
	mu sync.Mutex
	n  int
}

func (c *countingSink) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n += len(p)
	c.mu.Unlock()
	return len(p), nil
}

// TestLimitsKeepExecSemantics is defect 3: through prlimit(1) a file without
// #! was run by /bin/sh and a permission-denied script became a 502. With
// limits the start errors are exactly those without.
func TestLimitsKeepExecSemantics(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noShebang := write("plain.cgi", "echo Content-Type: text/plain; echo; echo ran by sh\n", 0o755)
	notExec := write("noexec.cgi", "#!/bin/sh\necho hi\n", 0o644)
	badInterp := write("badinterp.cgi", "#!/nonexistent/interpreter\n", 0o755)
	for _, limits := range []sandbox.Limits{{}, {OpenFiles: 64}} {
		r := New(Config{Limits: limits, Shim: self})
		for _, tc := range []struct {
			prog string
			want runner.StartKind
		}{
			{noShebang, runner.StartNotExecutable},
			{notExec, runner.StartPermission},
			{badInterp, runner.StartNotFound},
			{filepath.Join(dir, "missing.cgi"), runner.StartNotFound},
		} {
			var out, errOut bytes.Buffer
			res := r.Run(context.Background(), job(tc.prog, &out, &errOut))
			var se *runner.StartError
			if !errors.As(res.Err, &se) || se.Kind != tc.want || res.Started {
				t.Errorf("limits %v, %s: result %+v, want a start error of kind %d", limits, filepath.Base(tc.prog), res, tc.want)
			}
			if out.Len() != 0 || errOut.Len() != 0 {
				t.Errorf("limits %v, %s: output %q, stderr %q; want none", limits, filepath.Base(tc.prog), out.String(), errOut.String())
			}
		}
		var out bytes.Buffer
		res := r.Run(context.Background(), job(script(t, "ulimit -n\n"), &out, nil))
		want := "64\n"
		if limits.IsZero() {
			want = out.String() // whatever the bridge's is
		}
		if res.Err != nil || out.String() != want {
			t.Errorf("limits %v: ran with %q, %v", limits, out.String(), res.Err)
		}
	}
}

// TestRunsTheCheckedFile is defect 8: the runner executes Program (the
// resolved path the confinement checked), never a name that could since
// have been swapped for a link.
func TestRunsTheCheckedFile(t *testing.T) {
	checked := script(t, "echo checked\n")
	other := filepath.Join(t.TempDir(), "swapped")
	if err := os.Symlink("/bin/echo", other); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	j := &runner.Job{Script: checked, Filename: other, Program: checked, Argv: []string{other}, Stdout: &out}
	res := New(Config{}).Run(context.Background(), j)
	if res.Err != nil || out.String() != "checked\n" {
		t.Fatalf("ran %q (%v), want the checked file", out.String(), res.Err)
	}
}

// TestStopKillsTheGroup pins that a stop signals the process group, not
// the pid alone: a grandchild that detached from the output pipes is ended
// too.
func TestStopKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	prog := script(t, "sleep 300 >/dev/null 2>&1 </dev/null &\necho $! > "+pidFile+"\nsleep 300\n")
	ctx := testCtx(t, 500*time.Millisecond)
	res := New(Config{Grace: process.Grace{Kill: 200 * time.Millisecond}}).Run(ctx, job(prog, nil, nil))
	if !res.TimedOut() {
		t.Fatalf("result %+v, want a timeout", res)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if isZombie(pid) {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still alive after the stop", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isZombie reports whether pid has exited and waits for its parent's reap
// (init's, for an orphan).
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// cgroupParent opens a cgroup parent of the test's own, or skips where the
// machine has no writable cgroup v2.
func cgroupParent(t *testing.T) *sandbox.CgroupParent {
	t.Helper()
	p, err := sandbox.OpenCgroupParent("cgibridge-execrun-test-" + strconv.Itoa(os.Getpid()) + "-" + strings.ReplaceAll(t.Name(), "/", "-"))
	if err != nil {
		t.Skipf("no writable cgroup v2 here: %v", err)
	}
	t.Cleanup(func() { p.Remove() })
	return p
}

// TestCgroupFailureRefusesTheProgram is defect 7: a cgroup that cannot be
// made used to run the program unconfined. It must not run at all.
func TestCgroupFailureRefusesTheProgram(t *testing.T) {
	p := cgroupParent(t)
	marker := filepath.Join(t.TempDir(), "ran")
	prog := script(t, "touch "+marker+"\n")
	// The parent vanishes behind the bridge's back.
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	res := New(Config{Cgroups: p}).Run(context.Background(), job(prog, nil, nil))
	var se *runner.StartError
	if !errors.As(res.Err, &se) || se.Kind != runner.StartSandbox || res.Started {
		t.Fatalf("result %+v, want a sandbox start error", res)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the program ran without its cgroup")
	}
}

// TestCgroupNamesDoNotCollideWithLeftovers is defect 7's other half: names
// restarted at req-1 after a crash, so a leftover cgroup (EEXIST) disabled
// the limits. Names carry the bridge's pid, and a collision moves on.
func TestCgroupNamesDoNotCollideWithLeftovers(t *testing.T) {
	p := cgroupParent(t)
	leftover := filepath.Join(p.Path(), "req-"+strconv.Itoa(os.Getpid())+"-1")
	if err := os.Mkdir(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Rmdir(leftover) })
	var out bytes.Buffer
	res := New(Config{Cgroups: p}).Run(context.Background(), job(script(t, "cat /proc/self/cgroup\n"), &out, nil))
	if res.Err != nil {
		t.Fatalf("run: %v", res.Err)
	}
	if !strings.Contains(out.String(), "/req-"+strconv.Itoa(os.Getpid())+"-2") {
		t.Fatalf("program's cgroups:\n%s\nwant it in req-%d-2", out.String(), os.Getpid())
	}
}
