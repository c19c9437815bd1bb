// Package frontends holds end-to-end tests of cgibridge behind the web servers other
// than nginx (Apache httpd with mod_proxy_fcgi, lighttpd with mod_fastcgi), and the
// test that keeps docs/configuration.md in step with `cgibridge serve --help`.
package frontends

import (
	"bytes"
	"crypto/rand"
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

func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// scripts are the CGI programs every front end is tested with. They are shell
// scripts so that the tests need nothing beyond /bin/sh.
var scripts = map[string]string{
	"hello.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello from cgibridge\\n'\n",
	// info.sh shows how the front end's params were turned into the CGI names.
	"info.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\n" +
		"printf 'SCRIPT_NAME=%s\\nPATH_INFO=%s\\nQUERY_STRING=%s\\n' \"$SCRIPT_NAME\" \"$PATH_INFO\" \"$QUERY_STRING\"\n",
	// echo.sh returns the request body unchanged, so byte-exactness is checkable.
	"echo.sh": "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\nexec cat\n",
	// sleep.sh outlives any --timeout the tests set, before writing anything: once
	// a header is out, a timeout can only cut the response short, not make it a 504.
	"sleep.sh": "#!/bin/sh\nexec sleep 30\n",
	// auth.sh is a FastCGI AUTHORIZER: it lets through only requests that carry the
	// right X-Token header.
	"auth.sh": "#!/bin/sh\nif [ \"$HTTP_X_TOKEN\" = open-sesame ]; then\n" +
		"  printf 'Status: 200\\n\\n'\nelse\n" +
		"  printf 'Status: 403\\nContent-Type: text/plain\\n\\ndenied\\n'\nfi\n",
}

// scriptDir writes the scripts into a fresh directory that user nobody (as whom a
// root bridge runs programs) and an unprivileged web server worker can traverse.
func scriptDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgifront-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serverProc is a web server started in the foreground by a test.
type serverProc struct {
	name    string
	cmd     *exec.Cmd
	out     *harness.SafeBuffer
	url     string // http://127.0.0.1:PORT
	errLog  string // path of its error log
	done    chan struct{}
	waitErr error
}

// startServer runs the command that render returns for a free loopback port until
// the port serves, retrying with a new port if the chosen one was taken meanwhile.
// Cleanup sends SIGTERM, then SIGKILL to the process group.
func startServer(t *testing.T, name, errLog string, render func(port int) []string) *serverProc {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(errLog)
		s, err := launch(name, errLog, port, render(port))
		if err == nil {
			t.Cleanup(func() {
				s.stop(t)
				if t.Failed() {
					t.Logf("%s output:\n%s\n%s error log:\n%s", name, s.out.String(), name, harness.ReadFile(errLog))
				}
			})
			return s
		}
		lastErr = err
		if !strings.Contains(harness.ReadFile(errLog)+err.Error(), "in use") {
			break
		}
	}
	t.Fatal(lastErr)
	return nil
}

func launch(name, errLog string, port int, argv []string) (*serverProc, error) {
	s := &serverProc{
		name:   name,
		out:    &harness.SafeBuffer{},
		url:    "http://127.0.0.1:" + strconv.Itoa(port),
		errLog: errLog,
		done:   make(chan struct{}),
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(harness.StartTimeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
			// The port may belong to a stranger; only a live child counts.
			select {
			case <-s.done:
			default:
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited before serving on port %d: %v\n%s\n%s",
				name, port, s.waitErr, s.out.String(), harness.ReadFile(errLog))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
			return nil, fmt.Errorf("%s not serving on port %d after %v", name, port, harness.StartTimeout)
		}
	}
}

// stop ends the server and all its workers.
func (s *serverProc) stop(t *testing.T) {
	select {
	case <-s.done:
		t.Errorf("%s exited during the test: %v", s.name, s.waitErr)
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(harness.StopTimeout):
		t.Errorf("%s ignored SIGTERM for %v; killing it", s.name, harness.StopTimeout)
	}
	// Workers that outlive their master would hold the port and the bridge socket.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// mustTool returns the path of a web server binary, failing (never skipping) the
// test with the package to install when it is missing.
func mustTool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not installed: apt-get install %s", name, pkg)
	return ""
}

// reply is one HTTP response, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{Timeout: 20 * time.Second}

func do(t *testing.T, method, url string, body []byte, header ...string) (reply, time.Duration) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: got}, time.Since(start)
}

// runCommonCases checks what every front end must get right, against base (the URL
// of the cgi-bin directory, ending in "/").
func runCommonCases(t *testing.T, base string) {
	t.Run("Hello", func(t *testing.T) {
		r, _ := do(t, "GET", base+"hello.sh", nil)
		if r.status != 200 || string(r.body) != "hello from cgibridge\n" {
			t.Fatalf("got %d %q, want 200 %q", r.status, r.body, "hello from cgibridge\n")
		}
		if ct := r.header.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type %q, want text/plain", ct)
		}
	})
	t.Run("PathInfo", func(t *testing.T) {
		r, _ := do(t, "GET", base+"info.sh/extra/path?a=1", nil)
		u := strings.TrimPrefix(base, "http://")
		prefix := u[strings.Index(u, "/"):]
		want := "SCRIPT_NAME=" + prefix + "info.sh\nPATH_INFO=/extra/path\nQUERY_STRING=a=1\n"
		if r.status != 200 || string(r.body) != want {
			t.Fatalf("got %d\n%s\nwant 200\n%s", r.status, r.body, want)
		}
	})
	t.Run("PostEchoOneMiB", func(t *testing.T) {
		body := make([]byte, 1<<20)
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		r, _ := do(t, "POST", base+"echo.sh", body, "Content-Type", "application/octet-stream")
		if r.status != 200 {
			t.Fatalf("status %d, want 200; body %.200q", r.status, r.body)
		}
		if !bytes.Equal(r.body, body) {
			t.Fatalf("echoed %d bytes, not the %d sent byte for byte", len(r.body), len(body))
		}
	})
	t.Run("TimeoutIs504", func(t *testing.T) {
		r, took := do(t, "GET", base+"sleep.sh", nil)
		if r.status != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504 (body %.200q)", r.status, r.body)
		}
		// --timeout 1s plus the kill grace: anything near sleep's 30 s means the
		// bridge did not enforce its limit.
		if took > 10*time.Second {
			t.Errorf("504 took %v, want about the 1s --timeout", took)
		}
	})
	t.Run("MissingIs404", func(t *testing.T) {
		r, _ := do(t, "GET", base+"no-such.sh", nil)
		if r.status != http.StatusNotFound {
			t.Fatalf("status %d, want 404", r.status)
		}
	})
}

// startBridgeFor starts the bridge on the scripts with a 1 s timeout and makes its
// socket reachable for a web server worker running as nobody/nogroup.
func startBridgeFor(t *testing.T, root string, extra ...string) *harness.Bridge {
	t.Helper()
	args := append([]string{"--root", root, "--timeout", "1s", "--kill-grace", "1s",
		"--socket-group", "nogroup"}, extra...)
	b := harness.StartBridge(t, args)
	if err := os.Chmod(b.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}
