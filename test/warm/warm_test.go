// Package warm_test serves real FastCGI programs warm — Debian's own
// (mapserv, munin's CGIs, smokeping, gitweb as .fcgi) and the examples in
// legacy-examples/fastcgi (CGI::Fast, php-cgi, libfcgi) — through
// `cgibridge serve --fastcgi` behind one real nginx, and checks for each
// that one process answers request after request, and that its quirk is
// handled.
//
// This file holds the scaffolding: the shared nginx, a bed per test (a
// bridge with its own root), requests, the status page, and /proc checks.
package warm_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// ioTimeout bounds every exchange a test expects to finish promptly.
const ioTimeout = 20 * time.Second

// The one nginx of the package. Each bed is reached under /wN/: nginx
// maps /wN/cgi-bin/X to BASE/wN/cgi-bin/X, and /wN/sys/PATH to the
// program /PATH (a Debian program the bed --allows), and passes both to
// the bridge of bed N through the socket link BASE/wN.sock.
var (
	nginxOnce sync.Once
	nginx     *harness.Nginx
	nginxBase string
	nginxErr  error
	beds      atomic.Int32
)

func TestMain(m *testing.M) {
	code := m.Run()
	if nginx != nil {
		if err := nginx.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		os.RemoveAll(nginxBase)
	}
	if err := harness.RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// sharedNginx starts the package's nginx on first use.
func sharedNginx(t *testing.T) (*harness.Nginx, string) {
	t.Helper()
	nginxOnce.Do(func() {
		bin, err := harness.NginxBinary()
		if err != nil {
			nginxErr = err
			return
		}
		base, err := os.MkdirTemp("", "cgb-warm-")
		if err == nil {
			err = os.Chmod(base, 0o755)
		}
		if err != nil {
			nginxErr = err
			return
		}
		if err := os.Mkdir(filepath.Join(base, "nginx"), 0o700); err != nil {
			nginxErr = err
			return
		}
		nginxBase = base
		params := harness.FastCGIParams()
		nginx, nginxErr = harness.LaunchNginx(bin, filepath.Join(base, "nginx"), fmt.Sprintf(`
location ~ ^/(?<bed>w[0-9]+)/sys(?<prog>/.*)$ {
%[2]s
    fastcgi_param SCRIPT_FILENAME $prog;
    fastcgi_pass unix:%[1]s/$bed.sock;
}
location ~ ^/(?<bed>w[0-9]+)/ {
    root %[1]s;
%[2]s
    fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
    fastcgi_pass unix:%[1]s/$bed.sock;
}
`, base, params))
	})
	if nginxErr != nil {
		t.Fatal(nginxErr)
	}
	return nginx, nginxBase
}

// bed is one bridge behind the shared nginx.
type bed struct {
	dir    string // BASE/wN: what the bed's programs may read
	root   string // BASE/wN/cgi-bin, the bridge's --root
	bridge *harness.Bridge
	status string // the --status address
	base   string // http://127.0.0.1:PORT/wN/cgi-bin/
	sys    string // http://127.0.0.1:PORT/wN/sys
}

// newBed makes the bed's directories; setup fills them before the bridge
// starts with `--root ROOT --status ADDR`, setup's arguments, then args.
func newBed(t *testing.T, setup func(b *bed) []string, args ...string) *bed {
	t.Helper()
	n, base := sharedNginx(t)
	id := "w" + strconv.Itoa(int(beds.Add(1)))
	b := &bed{dir: filepath.Join(base, id)}
	b.root = filepath.Join(b.dir, "cgi-bin")
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b.dir) })
	if setup != nil {
		args = append(setup(b), args...)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b.status = "127.0.0.1:" + strconv.Itoa(port)
	b.bridge = harness.StartBridge(t, append([]string{"--root", b.root, "--status", b.status, "--log-level", "debug"}, args...), harness.SafePath)
	link := filepath.Join(base, id+".sock")
	if err := os.Symlink(b.bridge.Socket, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(link) })
	b.base = n.URL + "/" + id + "/cgi-bin/"
	b.sys = n.URL + "/" + id + "/sys"
	// Before the bridge stops (cleanups run last first).
	t.Cleanup(client.CloseIdleConnections)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx error.log:\n%s", tail(n.ErrorLog(), 40))
		}
	})
	return b
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

var client = &http.Client{Timeout: ioTimeout}

type reply struct {
	status int
	header http.Header
	body   string
	err    error
}

// fetch GETs url.
func fetch(url string) reply {
	resp, err := client.Get(url)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body), err: err}
}

// get GETs url and wants a 200 whose body holds want.
func get(t testing.TB, url, want string) reply {
	t.Helper()
	r := fetch(url)
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, want) {
		t.Fatalf("GET %s: %d %v, want 200 with %q in:\n%s", url, r.status, r.err, want, clip(r.body))
	}
	return r
}

func clip(s string) string {
	if len(s) > 1500 {
		return s[:1500] + "…"
	}
	return s
}

// pool is one entry of the status page's warm list (GET /status?json).
type pool struct {
	Runner     string `json:"runner"`
	Program    string `json:"program"`
	Generation int    `json:"generation"`
	Busy       int    `json:"busy"`
	Idle       int    `json:"idle"`
	Draining   int    `json:"draining"`
	Requests   uint64 `json:"requests"`
	Started    uint64 `json:"started"`
	Crashes    uint64 `json:"crashes"`
	LastExit   string `json:"last_exit"`
	Failing    string `json:"failing"`
}

// pool returns the status page's entry for program.
func (b *bed) pool(t testing.TB, program string) pool {
	t.Helper()
	r := fetch("http://" + b.status + "/status?json")
	if r.err != nil || r.status != 200 {
		t.Fatalf("status page: %d %v", r.status, r.err)
	}
	var page struct {
		Warm []pool `json:"warm"`
	}
	if err := json.Unmarshal([]byte(r.body), &page); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, r.body)
	}
	for _, p := range page.Warm {
		if p.Program == program {
			return p
		}
	}
	t.Fatalf("no pool for %s on the status page:\n%s", program, r.body)
	return pool{}
}

// kids returns the bridge's own children (the pools' processes, not what
// they start in turn).
func (b *bed) kids(t testing.TB) []int {
	t.Helper()
	all, err := harness.Children(b.bridge.PID())
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, k := range all {
		if ppid(k) == b.bridge.PID() {
			out = append(out, k)
		}
	}
	return out
}

func ppid(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// persists sends n requests to url, each wanting want, and checks that one
// child answered all of them: the status page counts one process started
// and n more requests, and the bridge's one child is the same process
// before and after.
func (b *bed) persists(t *testing.T, program, url, want string, n int) int {
	t.Helper()
	get(t, url, want)
	before := b.pool(t, program)
	kids := b.kids(t)
	if len(kids) != 1 || before.Started != 1 {
		t.Fatalf("after the first request: children %v, status %+v; want one child", kids, before)
	}
	for range n {
		get(t, url, want)
	}
	after := b.pool(t, program)
	if after.Started != 1 || after.Requests != before.Requests+uint64(n) || after.Crashes != 0 {
		t.Fatalf("after %d more requests: %+v, want the same one process (%+v before)", n, after, before)
	}
	if now := b.kids(t); !slices.Equal(now, kids) {
		t.Fatalf("the child changed: %v, then %v", kids, now)
	}
	b.logLine(t, "request:", "runner=fastcgi", "exit=running")
	return kids[0]
}

// logLine waits for a bridge log line holding every one of subs.
func (b *bed) logLine(t testing.TB, subs ...string) string {
	t.Helper()
	return b.bridge.LogLine(t, 5*time.Second, subs...)
}

// countLines counts the bridge's log lines holding sub.
func (b *bed) countLines(sub string) int {
	return strings.Count(b.bridge.Logs.String(), sub)
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

// gone reports whether pid has exited (a zombie counts).
func gone(pid int) bool { return harness.WaitGone(pid, 0) == nil }

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(data), mode)
}

// own gives the paths to the user the bridge runs programs as (nobody,
// when the tests run as root), for the directories programs write to.
func own(t *testing.T, paths ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for _, p := range paths {
		err := filepath.Walk(p, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, harness.NobodyUID, harness.NobodyUID)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a command and fails the test if it fails.
func run(t *testing.T, dir string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
}

// need fails the test when a file a program needs is missing: test/run
// installs the package that has it.
func need(t *testing.T, pkg string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing (%v): apt-get install %s (test/run installs it)", p, err, pkg)
		}
	}
}
