// Package spawn tests `cgibridge spawn` end to end: the built binary
// supervising real libfcgi C programs (legacy-examples/fastcgi/hello-fcgi.c
// and testdata/env-fcgi.c, compiled at test time) on a shared socket, with
// a real nginx talking to that socket directly, as in a spawn-fcgi setup.
//
// This file holds the scaffolding: the supervisor process, the programs,
// nginx in front, requests and a load loop.
package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if err := harness.RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// ioTimeout bounds every request a test expects to be answered.
const ioTimeout = 20 * time.Second

// supervisor is a running `cgibridge spawn -n`.
type supervisor struct {
	cmd  *exec.Cmd
	logs *harness.SafeBuffer
	done chan struct{}
	err  error // how it exited, once done is closed
}

// startSpawn runs `cgibridge spawn -n --log-level debug ARGS...` with an
// environment of PATH and HOME plus env, and waits until it logs its
// children up. On cleanup it sends SIGTERM and fails the test unless the
// supervisor then exits 0 within harness.StopTimeout.
func startSpawn(t *testing.T, env []string, args ...string) *supervisor {
	t.Helper()
	s := launchSpawn(t, env, args...)
	if err := s.waitLog("children up", harness.StartTimeout); err != nil {
		t.Fatalf("cgibridge spawn %q: %v\noutput:\n%s", args, err, s.logs.String())
	}
	return s
}

// launchSpawn starts the supervisor without waiting for it.
func launchSpawn(t *testing.T, env []string, args ...string) *supervisor {
	t.Helper()
	s := &supervisor{logs: &harness.SafeBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(harness.MustBinary(t), append([]string{"spawn", "-n", "--log-level", "debug"}, args...)...)
	s.cmd.Env = append([]string{harness.SafePath, "HOME=/"}, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A test binary that dies must not leave a supervisor behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		if s.exited() {
			if t.Failed() {
				t.Logf("cgibridge spawn output:\n%s", s.logs.String())
			}
			return
		}
		if err := s.stop(); err != nil {
			t.Errorf("cgibridge spawn (pid %d) did not stop cleanly on SIGTERM: %v", s.pid(), err)
		}
		if t.Failed() {
			t.Logf("cgibridge spawn output:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *supervisor) pid() int { return s.cmd.Process.Pid }

func (s *supervisor) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit, killing the process group
// after harness.StopTimeout. It returns the exit error (nil for status 0).
func (s *supervisor) stop() error {
	if !s.exited() {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.done:
		return s.err
	case <-time.After(harness.StopTimeout):
		syscall.Kill(-s.pid(), syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("ignored SIGTERM for %v and was killed", harness.StopTimeout)
	}
}

// waitExit waits up to d for the supervisor to exit by itself.
func (s *supervisor) waitExit(d time.Duration) (exitCode int, ok bool) {
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// waitLog waits for a log line holding every one of subs.
func (s *supervisor) waitLog(sub string, d time.Duration, more ...string) error {
	deadline := time.Now().Add(d)
	for {
		if line := s.logLine(append([]string{sub}, more...)...); line != "" {
			return nil
		}
		if s.exited() {
			return fmt.Errorf("exited (%v) before logging %q", s.err, sub)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no log line with %q within %v", append([]string{sub}, more...), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLine returns the first log line holding every one of subs, or "".
func (s *supervisor) logLine(subs ...string) string {
	for _, l := range s.lines() {
		if containsAll(l, subs) {
			return l
		}
	}
	return ""
}

func (s *supervisor) lines() []string { return strings.Split(s.logs.String(), "\n") }

func containsAll(l string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(l, sub) {
			return false
		}
	}
	return true
}

// children returns the supervisor's child processes now.
func (s *supervisor) children(t testing.TB) []int {
	t.Helper()
	kids, err := harness.Children(s.pid())
	if err != nil {
		t.Fatal(err)
	}
	return kids
}

// runSpawn runs `cgibridge spawn ARGS...` to its end, for command lines
// that must be refused or that detach; one still running after
// harness.StartTimeout is killed and fails the test.
func runSpawn(t *testing.T, env []string, args ...string) (out string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.StartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.MustBinary(t), append([]string{"spawn"}, args...)...)
	cmd.Env = append([]string{harness.SafePath, "HOME=/"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	data, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("cgibridge spawn %q still running after %v\noutput:\n%s", args, harness.StartTimeout, data)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run cgibridge spawn: %v", err)
	}
	return string(data), cmd.ProcessState.ExitCode()
}

// sockDir makes a short directory for sockets and pid files.
func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgb-spawn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// programs built once per test binary: source and flags → binary, in
// buildDir, which TestMain removes.
var (
	builtMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// program compiles a libfcgi C source (relative to the module root, or
// absolute) once,
// with extra gcc flags, and copies the binary to a fresh directory that
// user nobody can reach, returning its path there.
func program(t *testing.T, src string, flags ...string) string {
	t.Helper()
	bin := buildProgram(t, src, flags...)
	dst := filepath.Join(harness.ScriptDir(t), strings.TrimSuffix(filepath.Base(src), ".c"))
	copyFile(t, bin, dst)
	return dst
}

func buildProgram(t *testing.T, src string, flags ...string) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	key := src + " " + strings.Join(flags, " ")
	if bin, ok := built[key]; ok {
		return bin
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "cgb-spawn-build-"); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(buildDir, fmt.Sprintf("prog%d", len(built)))
	if !filepath.IsAbs(src) {
		src = filepath.Join(root, src)
	}
	args := append([]string{"-O2", "-o", bin, src}, flags...)
	if out, err := exec.Command("gcc", append(args, "-lfcgi")...).CombinedOutput(); err != nil {
		t.Fatalf("build %s (apt-get install gcc libc6-dev libfcgi-dev): %v\n%s", src, err, out)
	}
	built[key] = bin
	return bin
}

const (
	helloSrc = "legacy-examples/fastcgi/hello-fcgi.c"
	envSrc   = "test/spawn/testdata/env-fcgi.c"
)

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// front starts nginx passing every request to pass (unix:/path or
// HOST:PORT) and returns its base URL.
func front(t *testing.T, pass string) string {
	t.Helper()
	n := harness.StartNginx(t, "location / {\n"+harness.FastCGIParams()+"fastcgi_pass "+pass+";\n}\n")
	// Before nginx stops (cleanups run last first): its graceful stop waits
	// for open client connections.
	t.Cleanup(client.CloseIdleConnections)
	return n.URL + "/"
}

var client = &http.Client{Timeout: ioTimeout}

// reply is one answer through nginx.
type reply struct {
	status int
	body   string
	err    error
	sent   time.Time
}

func (r reply) ok() bool { return r.err == nil && r.status == http.StatusOK }

func (r reply) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("%d %q", r.status, r.body)
}

func fetch(url string) reply {
	r := reply{sent: time.Now()}
	resp, err := client.Get(url)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r.status, r.body, r.err = resp.StatusCode, string(body), err
	return r
}

// get fetches url and fails the test unless it is a 200.
func get(t testing.TB, url string) string {
	t.Helper()
	r := fetch(url)
	if !r.ok() {
		t.Fatalf("GET %s: %v", url, r)
	}
	return r.body
}

var pidRE = regexp.MustCompile(`(?:from pid |pid=)(\d+)`)

// pidIn returns the pid a program printed, or 0.
func pidIn(body string) int {
	m := pidRE.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// load runs workers that fetch url in a loop, each at most max times,
// until stop is closed; the returned function waits for them and returns
// every reply.
func load(url string, workers, max int, stop <-chan struct{}) func() []reply {
	var mu sync.Mutex
	var all []reply
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range max {
				select {
				case <-stop:
					return
				default:
				}
				r := fetch(url)
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		}()
	}
	return func() []reply {
		wg.Wait()
		return all
	}
}

// failures returns the replies that are not 200s.
func failures(rs []reply) []reply {
	var bad []reply
	for _, r := range rs {
		if !r.ok() {
			bad = append(bad, r)
		}
	}
	return bad
}

// waitFor polls cond until it holds, or fails after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGone waits for every pid to exit.
func waitGone(t testing.TB, pids []int, d time.Duration) {
	t.Helper()
	for _, pid := range pids {
		if err := harness.WaitGone(pid, d); err != nil {
			t.Error(err)
		}
	}
}
