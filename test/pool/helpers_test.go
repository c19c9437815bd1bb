// Package pool tests warm FastCGI children end to end: the built bridge with
// --fastcgi behind a real nginx (and, for the load loops and the malformed
// children, a raw FastCGI client), with a fault-injecting Python child
// (testdata/child.fcgi) and a libfcgi C program.
//
// This file holds the scaffolding: a bed of bridge + nginx, requests, and
// the /proc checks on the bridge's children.
package pool

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// ioTimeout bounds every exchange a test expects to finish promptly.
const ioTimeout = 20 * time.Second

// bed is a bridge serving root with --fastcgi, behind its own nginx.
type bed struct {
	root   string
	bridge *harness.Bridge
	nginx  *harness.Nginx
	base   string // http://127.0.0.1:PORT/cgi-bin/
}

// newBed copies testdata into a fresh root (reachable by nobody), builds
// hello.fcgi from legacy-examples, and starts the bridge with args after
// --root ROOT, and an nginx in front of it.
func newBed(t *testing.T, args ...string) *bed {
	t.Helper()
	base := harness.ScriptDir(t)
	root := filepath.Join(base, "cgi-bin")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"child.fcgi"} {
		copyFile(t, filepath.Join("testdata", name), filepath.Join(root, name), 0o755)
	}
	buildHello(t, filepath.Join(root, "hello.fcgi"))
	b := &bed{root: root}
	b.bridge = harness.StartBridge(t, append([]string{"--root", root, "--log-level", "debug"}, args...), harness.SafePath)
	b.nginx = harness.StartNginx(t, fmt.Sprintf("root %s;\nlocation /cgi-bin/ {\n%s"+
		"fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"+
		"fastcgi_pass unix:%s;\n}\n", base, harness.FastCGIParams(), b.bridge.Socket))
	b.base = b.nginx.URL + "/cgi-bin/"
	// Before nginx stops (cleanups run last first): its graceful stop
	// waits for open client connections.
	t.Cleanup(client.CloseIdleConnections)
	return b
}

var helloOnce sync.Once
var helloBin, helloErr = "", error(nil)

// buildHello compiles the libfcgi example once per test binary and copies it
// to dst.
func buildHello(t *testing.T, dst string) {
	t.Helper()
	helloOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cgb-hello-")
		if err != nil {
			helloErr = err
			return
		}
		root, err := harness.RepoRoot()
		if err != nil {
			helloErr = err
			return
		}
		helloBin = filepath.Join(dir, "hello.fcgi")
		out, err := exec.Command("gcc", "-O2", "-o", helloBin, filepath.Join(root, "legacy-examples/fastcgi/hello-fcgi.c"), "-lfcgi").CombinedOutput()
		if err != nil {
			helloErr = fmt.Errorf("build hello-fcgi.c (apt-get install gcc libfcgi-dev): %v\n%s", err, out)
		}
	})
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	copyFile(t, helloBin, dst, 0o755)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}

var client = &http.Client{Timeout: ioTimeout}

type reply struct {
	status int
	body   string
	err    error
}

// get fetches /cgi-bin/NAME through nginx.
func (b *bed) get(t testing.TB, name string) reply {
	t.Helper()
	r := b.tryGet(name)
	if r.err != nil {
		t.Fatalf("GET %s: %v", name, r.err)
	}
	return r
}

func (b *bed) tryGet(name string) reply {
	resp, err := client.Get(b.base + name)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(body), err: err}
}

var pidRE = regexp.MustCompile(`pid=(\d+)`)

// pidOf returns the pid a child printed.
func pidOf(t testing.TB, body string) int {
	t.Helper()
	m := pidRE.FindStringSubmatch(body)
	if m == nil {
		m = regexp.MustCompile(`from pid (\d+)`).FindStringSubmatch(body)
	}
	if m == nil {
		t.Fatalf("no pid in %q", body)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// raw sends one request for NAME straight to the bridge's socket, as nginx
// would, with QUERY_STRING query.
func (b *bed) raw(t testing.TB, name, query string) (string, fcgi.EndRequest, error) {
	t.Helper()
	nc, err := net.DialTimeout("unix", b.bridge.Socket, ioTimeout)
	if err != nil {
		return "", fcgi.EndRequest{}, err
	}
	defer nc.Close()
	params := harness.NginxParams(b.root, name, "GET", -1)
	params[0].Value = query
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	var out strings.Builder
	end, err := fcgi.NewClientConn(nc).Do(ctx, 1, fcgi.RoleResponder, false, params, nil, &out, io.Discard)
	return out.String(), end, err
}

// children returns the bridge's child processes now.
func (b *bed) children(t testing.TB) []int {
	t.Helper()
	kids, err := harness.Children(b.bridge.PID())
	if err != nil {
		t.Fatal(err)
	}
	return kids
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
func gone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
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
