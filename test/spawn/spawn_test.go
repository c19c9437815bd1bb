// This file tests the life of the supervisor: foreground and detached
// start, stop, children that die, rolling restarts and the kill -9 case.
package spawn

import (
	"fmt"
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

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestForegroundServesNginxAndSIGTERMStopsEverything(t *testing.T) {
	dir := sockDir(t)
	sock, pidFile := filepath.Join(dir, "s.sock"), filepath.Join(dir, "spawn.pid")
	s := startSpawn(t, nil, "-s", sock, "-P", pidFile, "--", program(t, helloSrc))
	url := front(t, "unix:"+sock)

	body := get(t, url)
	if !strings.Contains(body, "hello from pid") {
		t.Fatalf("body %q is not hello-fcgi's", body)
	}
	kids := s.children(t)
	if len(kids) != 1 || kids[0] != pidIn(body) {
		t.Fatalf("children %v, want exactly the one that answered (pid %d)", kids, pidIn(body))
	}
	if got := strings.TrimSpace(harness.ReadFile(pidFile)); got != strconv.Itoa(s.pid()) {
		t.Errorf("pid file holds %q, want the supervisor's pid %d", got, s.pid())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket: %v, mode %v; want 0660", err, fi.Mode())
	}

	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: %v, want exit 0", err)
	}
	waitGone(t, kids, 5*time.Second)
	for _, f := range []string{sock, pidFile} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind after SIGTERM (%v)", f, err)
		}
	}
}

func TestDetachedReturnsOnceUpAndThePIDFileNamesTheSupervisor(t *testing.T) {
	dir := sockDir(t)
	sock, pidFile, logFile := filepath.Join(dir, "s.sock"), filepath.Join(dir, "spawn.pid"), filepath.Join(dir, "spawn.log")
	var pid int
	t.Cleanup(func() {
		// A failed test must not leave a daemon behind.
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("log file:\n%s", harness.ReadFile(logFile))
		}
	})
	out, code := runSpawn(t, nil, "-s", sock, "-P", pidFile, "--log-file", logFile, "-F", "2", "--", program(t, helloSrc))
	if code != 0 {
		t.Fatalf("detached start exited %d, want 0\n%s", code, out)
	}
	pid, _ = strconv.Atoi(strings.TrimSpace(harness.ReadFile(pidFile)))
	if pid <= 0 || !strings.Contains(out, "supervisor pid: "+strconv.Itoa(pid)) {
		t.Fatalf("pid file holds %d; the start said %q", pid, out)
	}
	// It runs in a session of its own, away from the terminal.
	if sid := statField(t, pid, 6); sid != pid {
		t.Errorf("supervisor's session is %d, want its own (%d)", sid, pid)
	}
	kids, err := harness.Children(pid)
	if err != nil || len(kids) != 2 {
		t.Fatalf("supervisor's children %v (%v), want 2", kids, err)
	}
	// Up means up: no waiting before the first request.
	url := front(t, "unix:"+sock)
	if body := get(t, url); !slices.Contains(kids, pidIn(body)) {
		t.Errorf("answered by pid %d, not one of the children %v", pidIn(body), kids)
	}
	if !strings.Contains(harness.ReadFile(logFile), "children up") {
		t.Errorf("--log-file has no start-up line:\n%s", harness.ReadFile(logFile))
	}

	// The way an init script stops it.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := harness.WaitGone(pid, harness.StopTimeout); err != nil {
		t.Fatal(err)
	}
	waitGone(t, kids, 5*time.Second)
	pid = 0
	for _, f := range []string{sock, pidFile} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind after SIGTERM (%v)", f, err)
		}
	}
	if !strings.Contains(harness.ReadFile(logFile), "stopped") {
		t.Errorf("--log-file does not say it stopped:\n%s", harness.ReadFile(logFile))
	}
}

// statField returns field n (1-based, as in proc(5)) of /proc/PID/stat.
func statField(t *testing.T, pid, n int) int {
	t.Helper()
	data := harness.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	i := strings.LastIndexByte(data, ')')
	f := strings.Fields(data[i+1:])
	if i < 0 || len(f) < n-2 {
		t.Fatalf("cannot read /proc/%d/stat: %q", pid, data)
	}
	v, _ := strconv.Atoi(f[n-3])
	return v
}

func TestDetachedStartReportsAFailureWithExitCode1(t *testing.T) {
	dir := sockDir(t)
	sock := filepath.Join(dir, "s.sock")
	s := startSpawn(t, nil, "-s", sock, "--", program(t, helloSrc))
	// A second one on the same socket fails in the background; the
	// foreground must say so.
	out, code := runSpawn(t, nil, "-s", sock, "--", program(t, helloSrc))
	if code != 1 || !strings.Contains(out, "another server is listening") {
		t.Fatalf("exit %d, output %q; want 1 naming the live socket", code, out)
	}
	if s.exited() {
		t.Fatal("the first supervisor died")
	}
}

func TestThreeChildrenServeWithDistinctPIDs(t *testing.T) {
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, nil, "-F", "3", "-s", sock, "--", program(t, helloSrc))
	url := front(t, "unix:"+sock)
	kids := s.children(t)
	if len(kids) != 3 {
		t.Fatalf("children %v, want 3", kids)
	}
	seen := map[int]bool{}
	for i := 0; i < 300 && len(seen) < 3; i++ {
		seen[pidIn(get(t, url))] = true
	}
	for pid := range seen {
		if !slices.Contains(kids, pid) {
			t.Errorf("answered by pid %d, not one of the children %v", pid, kids)
		}
	}
	if len(seen) != 3 {
		t.Errorf("300 requests were answered by %d distinct pids, want 3", len(seen))
	}
}

func TestKilledChildIsRestartedAndTheRestartLogged(t *testing.T) {
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, nil, "-s", sock, "--", program(t, helloSrc))
	url := front(t, "unix:"+sock)
	old := pidIn(get(t, url))
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now int
	waitFor(t, 10*time.Second, "a new child serving", func() bool {
		r := fetch(url)
		now = pidIn(r.body)
		return r.ok() && now != old && now != 0
	})
	for _, want := range [][]string{
		{"child exited", "pid=" + strconv.Itoa(old), "signal KILL"},
		{"restarting child", "slot=0", "delay="},
		{"child started", "pid=" + strconv.Itoa(now)},
	} {
		// The new child may answer before its supervisor has written
		// the line: wait for it.
		waitFor(t, 5*time.Second, fmt.Sprintf("a log line with %q", want), func() bool { return s.logLine(want...) != "" })
	}
	if kids := s.children(t); !slices.Equal(kids, []int{now}) {
		t.Errorf("children %v, want only the new one %d", kids, now)
	}
}

var restartRE = regexp.MustCompile(`restarting child: slot=0 delay=(\S+)`)

func TestProgramThatExitsAtOnceIsRestartedWithGrowingBackoffNeverGivenUp(t *testing.T) {
	crash := filepath.Join(harness.ScriptDir(t), "crash.sh")
	if err := os.WriteFile(crash, []byte("#!/bin/sh\necho \"crashing as pid $$\" >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, nil, "-s", sock, "--restart-delay", "50ms", "--restart-delay-max", "400ms", "--", crash)
	// 50+100+200+400 ms, then every 400 ms: about ten restarts in 4 s,
	// where multiwatch gives a slot up after three.
	time.Sleep(4 * time.Second)
	if s.exited() {
		t.Fatalf("the supervisor exited (%v)", s.err)
	}
	var delays []time.Duration
	for _, m := range restartRE.FindAllStringSubmatch(s.logs.String(), -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("delay %q: %v", m[1], err)
		}
		delays = append(delays, d)
	}
	if len(delays) < 6 {
		t.Fatalf("%d restarts in 4s (%v), want at least 6", len(delays), delays)
	}
	want := []time.Duration{50, 100, 200, 400}
	for i := range want {
		if delays[i] != want[i]*time.Millisecond {
			t.Errorf("restart %d after %v, want %v (doubling from 50ms)", i+1, delays[i], want[i]*time.Millisecond)
		}
	}
	for i, d := range delays[len(want):] {
		if d != 400*time.Millisecond {
			t.Errorf("restart %d after %v, want the 400ms cap", len(want)+i+1, d)
		}
	}
	// Each start and each death is logged, with the program's own words.
	var exits, starts int
	for _, l := range s.lines() {
		if containsAll(l, []string{"child exited", "slot=0"}) {
			exits++
		}
		if containsAll(l, []string{"child started", "slot=0"}) {
			starts++
		}
	}
	if exits < len(delays) || starts < len(delays) {
		t.Errorf("%d restarts but %d exits and %d starts logged", len(delays), exits, starts)
	}
	if s.logLine("child output", "crashing as pid") == "" || s.logLine("child exited", "exit 3") == "" {
		t.Error("the child's stderr or its exit status is not in the log")
	}
	if strings.Contains(strings.ToLower(s.logs.String()), "giving up") {
		t.Error("the supervisor gave up")
	}
}

func TestSIGHUPReplacesEveryChildOneAtATimeWithNoFailedRequest(t *testing.T) {
	for _, tt := range []struct {
		name, src, query string
		env              []string
		workers          int
	}{
		// hello-fcgi answers in microseconds: four clients keep it busy.
		{"hello-fcgi", helloSrc, "", nil, 4},
		// Requests of 5ms keep a child busy most of the time, and this one
		// dies on SIGTERM mid-request: a child stopped without looking
		// would fail requests. This case shows the old children are ended
		// between requests.
		{"5ms requests, dies on SIGTERM", envSrc, "?sleep_ms=5", []string{"DIE_ON_SIGTERM=1"}, 3},
		// A socket of the program's own is no FastCGI connection: the
		// child is still seen between requests.
		{"keeps a socket of its own", envSrc, "?sleep_ms=5", []string{"DIE_ON_SIGTERM=1", "HOLD_SOCKET=1"}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(sockDir(t), "s.sock")
			s := startSpawn(t, tt.env, "-F", "3", "-s", sock, "--", program(t, tt.src))
			url := front(t, "unix:"+sock) + tt.query
			rollUnderLoad(t, s, url, tt.workers)
		})
	}
}

// rollUnderLoad sends SIGHUP while workers fetch url, and checks that no
// request failed, that there were always three children, and that each was
// replaced, one at a time.
func rollUnderLoad(t *testing.T, s *supervisor, url string, workers int) {
	t.Helper()
	old := s.children(t)
	stop := make(chan struct{})
	wait := load(url, workers, 1_000_000, stop)
	// The socket must never be without a child: sample the count.
	minKids := len(old)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if kids, err := harness.Children(s.pid()); err == nil {
				minKids = min(minKids, len(kids))
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err := s.waitLog("children replaced", 30*time.Second, "reason=SIGHUP")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	replies := wait()
	<-sampled
	if err != nil {
		t.Fatal(err)
	}

	if bad := failures(replies); len(bad) > 0 {
		t.Errorf("%d of %d requests failed across the SIGHUP, e.g. %v", len(bad), len(replies), bad[0])
	}
	if minKids < 3 {
		t.Errorf("at one point only %d children ran, want always at least 3", minKids)
	}
	now := s.children(t)
	if len(now) != 3 {
		t.Fatalf("after the SIGHUP: children %v, want 3", now)
	}
	for _, pid := range now {
		if slices.Contains(old, pid) {
			t.Errorf("child %d of before the SIGHUP still runs (before %v, after %v)", pid, old, now)
		}
	}
	checkOneAtATime(t, s, old)
	if s.logLine("not seen between requests") != "" {
		t.Error("an old child had to be stopped with SIGTERM")
	}
	t.Logf("%d requests, children %v -> %v", len(replies), old, now)
}

// checkOneAtATime checks the log of a rolling restart: slot by slot, the
// new child started before the old one went, and the next slot only after.
func checkOneAtATime(t *testing.T, s *supervisor, old []int) {
	t.Helper()
	lines := s.lines()
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "replacing the children") })
	if i < 0 {
		t.Fatal("no rolling restart in the log")
	}
	var order []string
	for _, l := range lines[i:] {
		switch {
		case strings.Contains(l, "child started"):
			order = append(order, "start "+field(l, "slot"))
		case strings.Contains(l, "child replaced"):
			order = append(order, "replaced "+field(l, "slot"))
			if !slices.Contains(old, atoi(field(l, "pid"))) {
				t.Errorf("replaced child %s is not one of %v", field(l, "pid"), old)
			}
		}
	}
	want := []string{"start 0", "replaced 0", "start 1", "replaced 1", "start 2", "replaced 2"}
	if !slices.Equal(order, want) {
		t.Errorf("rolling restart went %q, want %q", order, want)
	}
}

// field returns the value of key=value in a log line.
func field(line, key string) string {
	m := regexp.MustCompile(`\b` + key + `=(\S+)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return m[1]
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func TestWatchServesTheNewProgramAfterAMoveWithNoFailedRequest(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// hello-fcgi's version 2 says so: the same source, one word more.
	helloV2 := filepath.Join(t.TempDir(), "hello-v2.c")
	src := strings.Replace(harness.ReadFile(filepath.Join(root, helloSrc)), "hello from pid", "hello v2 from pid", 1)
	if err := os.WriteFile(helloV2, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name        string
		v1, v2      func(t *testing.T) string
		query, isV2 string
		env         []string
	}{
		{
			name:  "hello-fcgi",
			v1:    func(t *testing.T) string { return program(t, helloSrc) },
			v2:    func(t *testing.T) string { return buildProgram(t, helloV2) },
			query: "", isV2: "hello v2 from pid",
		},
		{
			name:  "5ms requests, dies on SIGTERM",
			v1:    func(t *testing.T) string { return program(t, envSrc) },
			v2:    func(t *testing.T) string { return buildProgram(t, envSrc, `-DVERSION="2"`) },
			query: "?sleep_ms=5", isV2: "version=2\n", env: []string{"DIE_ON_SIGTERM=1"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prog, v2 := tt.v1(t), tt.v2(t)
			sock := filepath.Join(sockDir(t), "s.sock")
			s := startSpawn(t, tt.env, "--watch", "-F", "2", "-s", sock, "--", prog)
			url := front(t, "unix:"+sock) + tt.query
			deployUnderLoad(t, s, url, prog, v2, tt.isV2)
		})
	}
}

// deployUnderLoad replaces prog by v2 as deploy tools do while clients
// fetch url, and checks that no request failed and that the new version,
// told by isV2 in its answers, serves everything from the end of the
// rolling restart on.
func deployUnderLoad(t *testing.T, s *supervisor, url, prog, v2, isV2 string) {
	t.Helper()
	if body := get(t, url); strings.Contains(body, isV2) {
		t.Fatalf("the new version answers before the deploy: %q", body)
	}
	stop := make(chan struct{})
	wait := load(url, 3, 1_000_000, stop)
	time.Sleep(200 * time.Millisecond)
	// A copy under a temporary name, then a rename over the old file (cp
	// over a running program fails with ETXTBSY).
	tmp := filepath.Join(filepath.Dir(prog), ".new.tmp")
	copyFile(t, v2, tmp)
	if err := os.Rename(tmp, prog); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	err := s.waitLog("children replaced", 20*time.Second, "reason=\"program changed\"")
	replaced := time.Now()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	replies := wait()
	if err != nil {
		t.Fatal(err)
	}

	if bad := failures(replies); len(bad) > 0 {
		t.Errorf("%d of %d requests failed across the deploy, e.g. %v", len(bad), len(replies), bad[0])
	}
	var v2Seen, staleAfter int
	for _, r := range replies {
		isNew := strings.Contains(r.body, isV2)
		if isNew {
			v2Seen++
		}
		if r.sent.After(replaced) && !isNew {
			staleAfter++
		}
	}
	if v2Seen == 0 {
		t.Error("no request was served by the new version")
	}
	if staleAfter > 0 {
		t.Errorf("%d requests sent after the children were replaced were served by the old version", staleAfter)
	}
	if d := replaced.Sub(moved); d > 5*time.Second {
		t.Errorf("the new version took %v after the mv to serve everything", d)
	}
	if body := get(t, url); !strings.Contains(body, isV2) {
		t.Errorf("after the deploy: %q", body)
	}
	if s.logLine("not seen between requests") != "" {
		t.Error("an old child had to be stopped with SIGTERM")
	}
	t.Logf("%d requests; all children on the new version %v after the mv", len(replies), replaced.Sub(moved).Round(time.Millisecond))
}

func TestKill9OfTheSupervisorLeavesNoChildAndTheNextStartReplacesTheSocket(t *testing.T) {
	sock := filepath.Join(sockDir(t), "s.sock")
	prog := program(t, helloSrc)
	s := startSpawn(t, nil, "-F", "3", "-s", sock, "--", prog)
	kids := s.children(t)
	if len(kids) != 3 {
		t.Fatalf("children %v, want 3", kids)
	}
	if err := syscall.Kill(s.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.waitExit(5 * time.Second); !ok {
		t.Fatal("the supervisor survived SIGKILL")
	}
	waitGone(t, kids, 5*time.Second)

	// What is left is a socket file nobody listens on: stale.
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("socket file after kill -9: %v (expected a stale one)", err)
	}
	next := startSpawn(t, nil, "-s", sock, "--", prog)
	if next.logLine("removed stale socket") == "" {
		t.Error("the stale socket's replacement is not logged")
	}
	url := front(t, "unix:"+sock)
	if body := get(t, url); !strings.Contains(body, "hello from pid") {
		t.Fatalf("after replacing the stale socket: %q", body)
	}
}

func TestBrokenNewVersionLeavesTheOldChildrenServing(t *testing.T) {
	prog := program(t, helloSrc)
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, nil, "--watch", "-F", "2", "-s", sock, "--", prog)
	url := front(t, "unix:"+sock)
	old := s.children(t)

	stop := make(chan struct{})
	wait := load(url, 2, 1_000_000, stop)
	broken := filepath.Join(filepath.Dir(prog), ".broken.tmp")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken build' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(broken, prog); err != nil {
		t.Fatal(err)
	}
	err := s.waitLog("cannot replace a child", 20*time.Second)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	replies := wait()
	if err != nil {
		t.Fatal(err)
	}
	if bad := failures(replies); len(bad) > 0 {
		t.Errorf("%d of %d requests failed while a broken version was deployed, e.g. %v", len(bad), len(replies), bad[0])
	}
	if now := s.children(t); !slices.Equal(now, old) {
		t.Errorf("children %v, want the old ones %v still serving", now, old)
	}
	if s.logLine("child output", "broken build") == "" {
		t.Error("the broken version's stderr is not in the log")
	}
}

func TestRollingRestartStopsAChildStuckInARequestAfterTheDrainTimeout(t *testing.T) {
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, nil, "--drain-timeout", "500ms", "--kill-grace", "500ms", "-s", sock, "--", program(t, envSrc))
	url := front(t, "unix:"+sock)
	old := s.children(t)
	stuck := make(chan reply, 1)
	go func() { stuck <- fetch(url + "?sleep_ms=60000") }()
	waitFor(t, 5*time.Second, "the child busy with the long request", func() bool { return holdsConnection(old[0]) })
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGHUP)
	if err := s.waitLog("children replaced", 10*time.Second, "reason=SIGHUP"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the rolling restart took %v with a 500ms drain timeout", d)
	}
	if s.logLine("child not seen between requests; stopping it", "pid="+strconv.Itoa(old[0])) == "" {
		t.Error("the stop of the stuck child is not logged")
	}
	// libfcgi ends the request it has on SIGTERM; either way it is over.
	select {
	case <-stuck:
	case <-time.After(ioTimeout):
		t.Fatal("the long request is still open")
	}
	if body := get(t, url); pidIn(body) == old[0] {
		t.Errorf("still served by the old child: %q", body)
	}
}

// holdsConnection reports whether pid holds a socket other than fd 0: an
// accepted connection.
func holdsConnection(pid int) bool {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name() == "0" {
			continue
		}
		if l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}

func TestSIGTERMDuringARollingRestartStopsEverything(t *testing.T) {
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, []string{"DIE_ON_SIGTERM=1"}, "--drain-timeout", "60s", "-s", sock, "--", program(t, envSrc))
	url := front(t, "unix:"+sock)
	old := s.children(t)
	go fetch(url + "?sleep_ms=60000")
	waitFor(t, 5*time.Second, "the child busy with a long request", func() bool { return holdsConnection(old[0]) })
	s.cmd.Process.Signal(syscall.SIGHUP)
	// The replacement is up; the old child is being waited for.
	waitFor(t, 5*time.Second, "the replacement", func() bool { return len(s.children(t)) == 2 })
	all := s.children(t)
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM during a rolling restart: %v, want exit 0", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %v", d)
	}
	waitGone(t, all, 5*time.Second)
}

func TestPHPCGIChildrenAreRefilledWhenTheyExitAfterMaxRequests(t *testing.T) {
	php, err := exec.LookPath("php-cgi")
	if err != nil {
		t.Fatal("php-cgi not installed: apt-get install php-cgi")
	}
	root := harness.ScriptDir(t)
	if err := os.WriteFile(filepath.Join(root, "pid.php"), []byte("<?php echo 'php pid=', getmypid(), \"\\n\";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir(t), "s.sock")
	// php-cgi ends itself, status 0, after PHP_FCGI_MAX_REQUESTS.
	s := startSpawn(t, []string{"PHP_FCGI_MAX_REQUESTS=5"}, "-F", "2", "-s", sock, "--", php)
	n := harness.StartNginx(t, "root "+root+";\nlocation / {\n"+harness.FastCGIParams()+
		"fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\nfastcgi_pass unix:"+sock+";\n}\n")
	t.Cleanup(client.CloseIdleConnections)
	pids := map[int]bool{}
	for range 40 {
		r := fetch(n.URL + "/pid.php")
		if !r.ok() || pidIn(r.body) == 0 {
			t.Fatalf("php-cgi: %v", r)
		}
		pids[pidIn(r.body)] = true
	}
	// 40 requests, 5 each: at least 8 php-cgi processes served.
	if len(pids) < 8 {
		t.Errorf("%d php-cgi processes served 40 requests at 5 each", len(pids))
	}
	if s.logLine("[INFO]", "child exited", "exit 0") == "" {
		t.Error("php-cgi's clean exits are not logged as such")
	}
	// A clean exit never backs off, however soon it comes.
	var delays []string
	for _, l := range s.lines() {
		if strings.Contains(l, "restarting child") {
			delays = append(delays, field(l, "delay"))
		}
	}
	if len(delays) < 6 || slices.ContainsFunc(delays, func(d string) bool { return d != "100ms" }) {
		t.Errorf("restart delays after clean exits %v, want 100ms (the first delay) every time", delays)
	}
}

func TestNewVersionThatDiesSoonStopsTheRollingRestart(t *testing.T) {
	prog := program(t, helloSrc)
	sock := filepath.Join(sockDir(t), "s.sock")
	s := startSpawn(t, nil, "--watch", "-F", "3", "-s", sock, "--", prog)
	url := front(t, "unix:"+sock)
	old := s.children(t)
	// It outlives the quarter second a replacement must stay up, then dies:
	// by the third slot's turn the first replacement is dead.
	late := filepath.Join(filepath.Dir(prog), ".late.tmp")
	if err := os.WriteFile(late, []byte("#!/bin/sh\nsleep 0.35\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(late, prog); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.logLine("a new child died after it replaced an old one") == "" && s.logLine("cannot replace a child") == "" {
		if time.Now().After(deadline) {
			t.Fatal("the rolling restart of a dying version was not stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.logLine("children replaced") != "" {
		t.Error("the rolling restart went through")
	}
	still := 0
	for _, pid := range s.children(t) {
		if slices.Contains(old, pid) {
			still++
		}
	}
	if still == 0 {
		t.Fatalf("no child of the old version is left (before %v, now %v)", old, s.children(t))
	}
	if body := get(t, url); !strings.Contains(body, "hello from pid") {
		t.Errorf("the old version no longer serves: %q", body)
	}
}
