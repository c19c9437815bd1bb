package cgi

// These tests put the real CGI handler and server core in front of a
// dispatcher whose first route is a stub runner, to show that a second
// runner plugs into the request path without the handler knowing: routing,
// capacity, timeout, the fallback to exec mode and the drain all happen in
// the dispatcher.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/execrun"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/cgienv"
	"github.com/hashicorp/go-hclog"
)

// stub is a warm runner stand-in: it serves *.stub scripts itself.
type stub struct {
	unavailable atomic.Bool   // report ErrUnavailable instead of serving
	block       chan struct{} // when set, Run waits for it (or ctx)
	mu          sync.Mutex
	jobs        []*runner.Job
	closed      atomic.Bool
}

func (s *stub) Name() string { return "stub" }

func (s *stub) Run(ctx context.Context, job *runner.Job) runner.Result {
	s.mu.Lock()
	s.jobs = append(s.jobs, job)
	s.mu.Unlock()
	if s.unavailable.Load() {
		return runner.Result{Err: fmt.Errorf("stub: no child ready: %w", runner.ErrUnavailable)}
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return runner.Result{Started: true, Cause: context.Cause(ctx)}
		}
	}
	fmt.Fprintf(job.Stdout, "Content-Type: text/plain\r\n\r\nstub served %s", filepath.Base(job.Script))
	return runner.Result{Started: true, Exited: true, AppStatus: 4}
}

func (s *stub) Close(ctx context.Context) error {
	s.closed.Store(true)
	return nil
}

func (s *stub) lastJob(t *testing.T) *runner.Job {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.jobs) == 0 {
		t.Fatal("the stub got no job")
	}
	return s.jobs[len(s.jobs)-1]
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type bed struct {
	root  string
	stub  *stub
	disp  *runner.Dispatcher
	stats *status.Stats
	logs  *syncBuffer
	sock  string
}

// newBed serves root through [stub for *.stub (limit 1), exec].
func newBed(t *testing.T, timeout time.Duration, queueWait time.Duration) *bed {
	t.Helper()
	root := t.TempDir()
	b := &bed{root: root, stub: &stub{}, stats: status.New(4, nil), logs: &syncBuffer{}}
	log := hclog.New(&hclog.LoggerOptions{Output: b.logs, Level: hclog.Debug})
	routes := []runner.Route{
		{Match: func(j *runner.Job) bool { return strings.HasSuffix(j.Filename, ".stub") }, Runner: b.stub, Limiter: runner.NewLimiter(1, 4)},
		{Runner: execrun.New(execrun.Config{}), Limiter: runner.NewLimiter(4, 16)},
	}
	b.disp = runner.NewDispatcher(routes, queueWait, b.stats)
	cfg := &Config{
		Env:       cgienv.Config{Root: root, Interpreters: cgienv.DefaultInterpreters(), PassEnv: cgienv.DefaultPassEnv()},
		Timeout:   timeout,
		AllowRoot: true,
	}
	h, err := New(cfg, b.disp, log, b.stats)
	if err != nil {
		t.Fatal(err)
	}
	srv := &bridge.Server{Handler: h, Log: log, Stats: b.stats}
	b.sock = filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", b.sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		b.disp.Close(ctx)
		if t.Failed() {
			t.Logf("log:\n%s", b.logs.String())
		}
	})
	return b
}

func (b *bed) script(t *testing.T, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(b.root, name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

type reply struct {
	stdout string
	end    fcgi.EndRequest
}

func (b *bed) get(t *testing.T, name string) reply {
	t.Helper()
	c, err := net.Dial("unix", b.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	params := []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: "GET"},
		{Name: "SCRIPT_FILENAME", Value: filepath.Join(b.root, name)},
		{Name: "SCRIPT_NAME", Value: "/" + name},
		{Name: "REQUEST_URI", Value: "/" + name},
	}
	end, err := fcgi.NewClientConn(c).Do(ctx, 1, fcgi.RoleResponder, false, params, nil, &out, nil)
	if err != nil {
		t.Fatalf("GET /%s: %v", name, err)
	}
	return reply{stdout: out.String(), end: end}
}

// accessLine returns the access line of the request for uri, waiting for it.
func (b *bed) accessLine(t *testing.T, uri string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range strings.Split(b.logs.String(), "\n") {
			if strings.Contains(l, "request:") && strings.Contains(l, "uri="+uri+" ") {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access line for %s", uri)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSecondRunnerServesItsRoute(t *testing.T) {
	b := newBed(t, 10*time.Second, time.Second)
	b.script(t, "real.stub", "#!/bin/sh\necho never run\n")
	if err := os.Symlink("real.stub", filepath.Join(b.root, "link.stub")); err != nil {
		t.Fatal(err)
	}
	b.script(t, "plain.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nexec served'\nexit 6\n")

	r := b.get(t, "link.stub")
	if !strings.HasSuffix(r.stdout, "stub served real.stub") || r.end.AppStatus != 4 {
		t.Fatalf("link.stub: %q appStatus %d", r.stdout, r.end.AppStatus)
	}
	if l := b.accessLine(t, "/link.stub"); !strings.Contains(l, "runner=stub") || !strings.Contains(l, "status=200") {
		t.Errorf("access line: %s", l)
	}
	// The job names the checked, resolved file as what runs, and keeps the
	// requested name for the program's own view.
	j := b.stub.lastJob(t)
	real, _ := filepath.EvalSymlinks(filepath.Join(b.root, "real.stub"))
	if j.Script != real || j.Program != real || j.Filename != filepath.Join(b.root, "link.stub") {
		t.Errorf("job: Script %q Program %q Filename %q", j.Script, j.Program, j.Filename)
	}
	if !containsEnv(j.Env, "SCRIPT_FILENAME="+filepath.Join(b.root, "link.stub")) {
		t.Errorf("job environment lacks the requested SCRIPT_FILENAME: %q", j.Env)
	}

	r = b.get(t, "plain.cgi")
	if !strings.HasSuffix(r.stdout, "exec served") || r.end.AppStatus != 6 {
		t.Fatalf("plain.cgi: %q appStatus %d", r.stdout, r.end.AppStatus)
	}
	if l := b.accessLine(t, "/plain.cgi"); !strings.Contains(l, "runner=exec") {
		t.Errorf("access line: %s", l)
	}
	if n := b.stats.Snapshot().QueueWaits; n != 0 {
		t.Errorf("%d queue waits counted for requests that never waited", n)
	}
}

func containsEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

func TestUnavailableRunnerFallsBackToExec(t *testing.T) {
	b := newBed(t, 10*time.Second, time.Second)
	b.script(t, "app.stub", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncold'\n")
	b.stub.unavailable.Store(true)
	if r := b.get(t, "app.stub"); !strings.HasSuffix(r.stdout, "\r\n\r\ncold") {
		t.Fatalf("got %q, want exec mode's answer", r.stdout)
	}
	l := b.accessLine(t, "/app.stub")
	if !strings.Contains(l, "runner=exec") || !strings.Contains(l, "cold=") || !strings.Contains(l, "no child ready") {
		t.Errorf("access line does not say exec with the cold reason: %s", l)
	}
}

func TestRunnerCapacityQueuesThenRefuses(t *testing.T) {
	b := newBed(t, 10*time.Second, 200*time.Millisecond)
	b.script(t, "slow.stub", "")
	b.stub.block = make(chan struct{})
	first := make(chan reply, 1)
	go func() { first <- b.get(t, "slow.stub") }()
	waitFor(t, func() bool { return b.stub.jobCount() == 1 })
	// The stub's one slot is taken: the next request waits its queue time,
	// counts as queued, and is refused.
	r := b.get(t, "slow.stub")
	if !strings.HasPrefix(r.stdout, "Status: 503") {
		t.Fatalf("second request: %q, want 503", r.stdout)
	}
	if n := b.stats.Snapshot().QueueWaits; n != 1 {
		t.Errorf("queue waits %d, want 1", n)
	}
	close(b.stub.block)
	if r := <-first; !strings.Contains(r.stdout, "stub served") {
		t.Fatalf("first request: %q", r.stdout)
	}
}

func TestRunnerTimeoutIsAnswered504(t *testing.T) {
	b := newBed(t, 300*time.Millisecond, time.Second)
	b.script(t, "hang.stub", "")
	b.stub.block = make(chan struct{})
	defer close(b.stub.block)
	if r := b.get(t, "hang.stub"); !strings.HasPrefix(r.stdout, "Status: 504") {
		t.Fatalf("got %q, want 504", r.stdout)
	}
	if l := b.accessLine(t, "/hang.stub"); !strings.Contains(l, "outcome=timeout") || !strings.Contains(l, "runner=stub") {
		t.Errorf("access line: %s", l)
	}
}

func TestDispatcherDrains(t *testing.T) {
	b := newBed(t, 10*time.Second, time.Second)
	b.script(t, "slow.stub", "")
	b.script(t, "other.stub", "")
	b.stub.block = make(chan struct{})
	first := make(chan reply, 1)
	go func() { first <- b.get(t, "slow.stub") }()
	waitFor(t, func() bool { return b.stub.jobCount() == 1 })

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- b.disp.Close(ctx)
	}()
	// Draining: new jobs are refused, the one in flight goes on.
	waitFor(t, func() bool { return strings.HasPrefix(b.get(t, "other.stub").stdout, "Status: 503") })
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a job was in flight", err)
	default:
	}
	close(b.stub.block)
	if r := <-first; !strings.Contains(r.stdout, "stub served") {
		t.Fatalf("in-flight request: %q", r.stdout)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the last job")
	}
	if !b.stub.closed.Load() {
		t.Error("the stub runner was not closed")
	}
}

func (s *stub) jobCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecentlyServedScriptSettles: a script that was served a moment ago and
// is being replaced (install removes it, writes it, then makes it
// executable) is waited for briefly instead of answered 404 or 403; one that
// really went stays refused.
func TestRecentlyServedScriptSettles(t *testing.T) {
	b := newBed(t, 10*time.Second, time.Second)
	path := filepath.Join(b.root, "app.cgi")
	b.script(t, "app.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nv1'\n")
	if r := b.get(t, "app.cgi"); !strings.HasSuffix(r.stdout, "v1") {
		t.Fatalf("first: %q", r.stdout)
	}
	os.Remove(path)
	go func() {
		time.Sleep(30 * time.Millisecond)
		os.WriteFile(path, []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nv2'\n"), 0o600)
		time.Sleep(30 * time.Millisecond)
		os.Chmod(path, 0o755)
	}()
	if r := b.get(t, "app.cgi"); !strings.HasSuffix(r.stdout, "v2") {
		t.Fatalf("during the replacement: %q, want the new version", r.stdout)
	}
	os.Remove(path)
	if r := b.get(t, "app.cgi"); !strings.HasPrefix(r.stdout, "Status: 404") {
		t.Fatalf("after a real removal: %q, want 404", r.stdout)
	}
	start := time.Now()
	if r := b.get(t, "app.cgi"); !strings.HasPrefix(r.stdout, "Status: 404") || time.Since(start) > settleWait/2 {
		t.Fatalf("a script known gone: %q after %v, want a prompt 404", r.stdout, time.Since(start))
	}
}
