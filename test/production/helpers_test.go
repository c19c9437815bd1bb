// This file holds the scaffolding the production tests share: directories of
// scripts that the unprivileged program user can read, a FastCGI client that
// speaks like nginx and parses the CGI answer, and readers for the bridge's log.

package production

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// helloScript is the smallest well-behaved CGI program.
const helloScript = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello\\n'\n"

// scriptDir is harness.ScriptDir: a directory nobody can enter and read.
func scriptDir(t *testing.T) string { return harness.ScriptDir(t) }

// writeScript writes an executable script into dir and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask; the tests rely on exact modes.
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// req describes one request as nginx would send it for SCRIPT_FILENAME
// dir/script.
type req struct {
	Dir, Script string
	Method      string // GET if empty
	Body        []byte
	Timeout     time.Duration // 20s if zero
}

// resp is a CGI response as the web server would read it.
type resp struct {
	Status int
	Header http.Header
	Body   string
	Stderr string
	End    fcgi.EndRequest
}

// params builds the FastCGI params nginx sends for r.
func (r req) params() []fcgi.Pair {
	method, bodyLen := r.Method, -1
	if method == "" {
		method = "GET"
	}
	if r.Body != nil {
		bodyLen = len(r.Body)
	}
	return harness.NginxParams(r.Dir, r.Script, method, bodyLen)
}

// dial opens a FastCGI connection to the bridge's socket.
func dial(t *testing.T, sock string) *fcgi.ClientConn {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial bridge: %v", err)
	}
	cc := fcgi.NewClientConn(c)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// do runs r on a fresh connection without KEEP_CONN, as nginx does by default.
func do(t *testing.T, sock string, r req) resp {
	t.Helper()
	cc := dial(t, sock)
	defer cc.Close()
	res, err := doOn(cc, 1, false, r)
	if err != nil {
		t.Fatalf("request %s: %v", r.Script, err)
	}
	return res
}

// doOn runs r as request id on an open connection.
func doOn(cc *fcgi.ClientConn, id uint16, keep bool, r req) (resp, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errb bytes.Buffer
	var body *bytes.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	var end fcgi.EndRequest
	var err error
	if body != nil {
		end, err = cc.Do(ctx, id, fcgi.RoleResponder, keep, r.params(), body, &out, &errb)
	} else {
		end, err = cc.Do(ctx, id, fcgi.RoleResponder, keep, r.params(), nil, &out, &errb)
	}
	if err != nil {
		return resp{}, fmt.Errorf("FastCGI exchange for %s: %w (stdout so far %q)", r.Script, err, out.String())
	}
	res, err := parseCGI(out.Bytes())
	if err != nil {
		return resp{}, err
	}
	res.Stderr, res.End = errb.String(), end
	return res, nil
}

// parseCGI reads a CGI response the way nginx does: Status, else Location (302),
// else 200.
func parseCGI(b []byte) (resp, error) {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return resp{}, fmt.Errorf("parse CGI response header %q: %w", b, err)
	}
	h := http.Header(mh)
	res := resp{Status: 200, Header: h}
	switch {
	case h.Get("Status") != "":
		code, _, _ := strings.Cut(h.Get("Status"), " ")
		if res.Status, err = strconv.Atoi(code); err != nil {
			return resp{}, fmt.Errorf("bad Status header in %q", b)
		}
	case h.Get("Location") != "":
		res.Status = 302
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		res.Body = string(b[i+4:])
	} else if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		res.Body = string(b[i+2:])
	}
	return res, nil
}

// accessLines returns the text-format access log lines in logs.
func accessLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "cgibridge.cgi: request:") {
			out = append(out, l)
		}
	}
	return out
}

// waitAccess waits until logs hold at least n access lines: the access line is
// written after END_REQUEST, so it may trail the response a little.
func waitAccess(t *testing.T, b *harness.Bridge, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := accessLines(b.Logs.String())
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// writeConfig writes a JSON config file the bridge (possibly running as
// nobody after dropping privileges) can read on reload.
func writeConfig(t *testing.T, path string, cfg map[string]any) {
	t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeRaw(t, path, data)
}

// writeRaw replaces path's content atomically (write then rename, as editors
// and config management do), world-readable.
func writeRaw(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// procUID returns the real, effective, saved and filesystem uids of pid.
func procUID(t *testing.T, pid int) []int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			var ids []int
			for _, f := range strings.Fields(rest) {
				n, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("parse %q: %v", line, err)
				}
				ids = append(ids, n)
			}
			return ids
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return nil
}

// countSince counts the log lines after offset that contain sub.
func countSince(logs string, offset int, sub string) int {
	return strings.Count(logs[offset:], sub)
}
