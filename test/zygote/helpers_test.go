// Package zygote tests warm Python scripts end to end: the built bridge
// with --warm, against the same bridge in exec mode, compared field by
// field; the helper's faults; reloads under load.
//
// This file holds the scaffolding.
package zygote

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const ioTimeout = 20 * time.Second

// bed is a script root served by a bridge.
type bed struct {
	root   string
	bridge *harness.Bridge
}

// newRoot copies testdata into a root nobody can read.
func newRoot(t *testing.T) string {
	t.Helper()
	root := harness.ScriptDir(t)
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if (strings.HasSuffix(e.Name(), ".py") || strings.HasSuffix(e.Name(), ".pl")) && bytes.HasPrefix(data, []byte("#!")) {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(root, e.Name()), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func serve(t *testing.T, root string, args ...string) *bed {
	t.Helper()
	b := &bed{root: root}
	b.bridge = harness.StartBridge(t, append([]string{"--root", root, "--log-level", "debug"}, args...), harness.SafePath)
	return b
}

// reply is one request as a web server sees it.
type reply struct {
	stdout string
	end    fcgi.EndRequest
	err    error
}

func (r reply) body() string {
	_, b, _ := strings.Cut(r.stdout, "\r\n\r\n")
	return b
}

func (r reply) status() string {
	if strings.HasPrefix(r.stdout, "Status: ") {
		return r.stdout[8:11]
	}
	return "200"
}

// do sends a request for name with query and extra params, and body.
func (b *bed) do(t testing.TB, name, query string, body []byte, extra ...fcgi.Pair) reply {
	t.Helper()
	return b.request(name, query, body, extra...)
}

// request is do for goroutines of load loops, which have no testing.TB.
func (b *bed) request(name, query string, body []byte, extra ...fcgi.Pair) reply {
	nc, err := net.DialTimeout("unix", b.bridge.Socket, ioTimeout)
	if err != nil {
		return reply{err: err}
	}
	defer nc.Close()
	method, n := "GET", -1
	if body != nil {
		method, n = "POST", len(body)
	}
	params := harness.NginxParams(b.root, name, method, n)
	params[0].Value = query
	if query != "" {
		for i := range params {
			if params[i].Name == "REQUEST_URI" {
				params[i].Value += "?" + query
			}
		}
	}
	params = append(params, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	var out strings.Builder
	var in io.Reader
	if body != nil {
		in = bytes.NewReader(body)
	}
	end, err := fcgi.NewClientConn(nc).Do(ctx, 1, fcgi.RoleResponder, false, params, in, &out, io.Discard)
	return reply{stdout: out.String(), end: end, err: err}
}

// warmUp requests name until the bridge serves it warm.
func (b *bed) warmUp(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		before := strings.Count(b.bridge.Logs.String(), "runner=warm")
		b.do(t, name, "", nil)
		if waitCount(b, "runner=warm", before+1, time.Second) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never served warm:\n%s", name, b.bridge.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCount waits until the log holds at least n occurrences of sub.
func waitCount(b *bed, sub string, n int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for strings.Count(b.bridge.Logs.String(), sub) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// doAccess is do, returning also the request's own access line.
func (b *bed) doAccess(t testing.TB, name, query string, body []byte, extra ...fcgi.Pair) (reply, string) {
	t.Helper()
	before := strings.Count(b.bridge.Logs.String(), "request: ")
	r := b.do(t, name, query, body, extra...)
	if !waitCount(b, "request: ", before+1, 5*time.Second) {
		t.Fatalf("no access line for %s?%s", name, query)
	}
	lines := strings.Split(b.bridge.Logs.String(), "\n")
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "request: ") {
			n++
			if n == before+1 {
				return r, l
			}
		}
	}
	return r, ""
}

func decode(t *testing.T, r reply) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(strings.SplitN(r.body(), "\n", 2)[0])), &m); err != nil {
		t.Fatalf("probe output %q: %v", r.stdout, err)
	}
	return m
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var _ = fmt.Sprint
