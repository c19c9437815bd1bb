// This file holds the scaffolding the process tests share: a nobody-readable
// script root, nginx-like params, one-shot requests and the /proc checks that
// prove nothing the bridge started is still running.

package process

import (
	"bytes"
	"context"
	"fmt"
	"net"
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

// ioTimeout bounds every exchange a test expects to finish promptly.
const ioTimeout = 15 * time.Second

// scriptRoot copies every testdata script into a fresh directory that the
// bridge's unprivileged user (nobody) can traverse and execute, and returns it.
func scriptRoot(t *testing.T) string {
	t.Helper()
	dir := harness.ScriptDir(t)
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// params is harness.NginxParams: what nginx sends for /name under root.
var params = harness.NginxParams

// result is one finished request as the client saw it.
type result struct {
	stdout, stderr string
	end            fcgi.EndRequest
	elapsed        time.Duration
}

// status returns the response's HTTP status: the Status header's code, or 200
// when a header block without one was sent, or 0 when no header block ended.
func (r result) status() int {
	head, _, ok := strings.Cut(strings.ReplaceAll(r.stdout, "\r\n", "\n"), "\n\n")
	if !ok {
		return 0
	}
	for _, line := range strings.Split(head, "\n") {
		name, value, _ := strings.Cut(line, ":")
		if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)) == "Status" {
			// "Status: 504 Gateway Timeout": the code is the first field.
			f := strings.Fields(value)
			if len(f) == 0 {
				return -1
			}
			code, err := strconv.Atoi(f[0])
			if err != nil {
				return -1
			}
			return code
		}
	}
	return 200
}

// header returns the value of the response header name, or "".
func (r result) header(name string) string {
	head, _, _ := strings.Cut(strings.ReplaceAll(r.stdout, "\r\n", "\n"), "\n\n")
	for _, line := range strings.Split(head, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// body returns what follows the header block.
func (r result) body() string {
	s := strings.ReplaceAll(r.stdout, "\r\n", "\n")
	_, b, _ := strings.Cut(s, "\n\n")
	return b
}

// dial connects to a bridge's unix socket.
func dial(t testing.TB, sock string) *fcgi.ClientConn {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	return fcgi.NewClientConn(c)
}

// do runs one request of a script under root on a fresh connection, as nginx
// does without keepalive, and fails t if no END_REQUEST arrives within d.
func do(t testing.TB, sock, root, name string, body []byte, d time.Duration) result {
	t.Helper()
	r, err := tryDo(sock, root, name, body, d)
	if err != nil {
		t.Fatalf("request %s: %v (stdout so far %q)", name, err, truncate(r.stdout))
	}
	return r
}

// tryDo is do returning its error, for requests made from other goroutines.
func tryDo(sock, root, name string, body []byte, d time.Duration) (result, error) {
	nc, err := net.DialTimeout("unix", sock, ioTimeout)
	if err != nil {
		return result{}, fmt.Errorf("dial: %w", err)
	}
	c := fcgi.NewClientConn(nc)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	method, n := "GET", -1
	var rd *bytes.Reader
	if body != nil {
		method, n = "POST", len(body)
		rd = bytes.NewReader(body)
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	var end fcgi.EndRequest
	if rd != nil {
		end, err = c.Do(ctx, 1, fcgi.RoleResponder, false, params(root, name, method, n), rd, &stdout, &stderr)
	} else {
		end, err = c.Do(ctx, 1, fcgi.RoleResponder, false, params(root, name, method, n), nil, &stdout, &stderr)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), end: end, elapsed: time.Since(start)}, err
}

// truncate shortens s for a failure message.
func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// waitChildren polls until the bridge has at least n descendants and returns
// them, so a test can act while a script is known to be running.
func waitChildren(t testing.TB, pid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		kids, err := harness.Children(pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(kids) >= n {
			return kids
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge %d has %d descendants after %v, want at least %d", pid, len(kids), ioTimeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertAllGone fails t unless every pid exits (or is a reaped-away zombie)
// within d and the bridge then has no descendants at all, zombies included.
func assertAllGone(t testing.TB, bridgePID int, pids []int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, p := range pids {
		if err := harness.WaitGone(p, time.Until(deadline)); err != nil {
			t.Errorf("process of the script still running: %v", err)
		}
	}
	assertNoChildren(t, bridgePID, time.Until(deadline)+time.Second)
}

// assertNoChildren fails t unless the bridge has no descendants, zombies
// included, within d: a zombie means the bridge did not reap.
func assertNoChildren(t testing.TB, bridgePID int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		kids, err := harness.Children(bridgePID)
		if err != nil {
			t.Fatal(err)
		}
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("bridge %d still has descendants %v after %v", bridgePID, describe(kids), d)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// describe names each pid with its command and state, for failure messages.
func describe(pids []int) []string {
	var out []string
	for _, p := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			out = append(out, fmt.Sprintf("%d(gone)", p))
			continue
		}
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		state := "?"
		if f := strings.Fields(s[closing+1:]); len(f) > 0 {
			state = f[0]
		}
		out = append(out, fmt.Sprintf("%d(%s,%s)", p, s[open+1:closing], state))
	}
	return out
}
