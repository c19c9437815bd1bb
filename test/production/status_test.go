// This file tests point 5 of "Run it in production": the --status endpoint's
// text and JSON pages, /ping and Prometheus /metrics, counting the requests the
// test made, timeouts and aborts included.

package production

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// httpGet fetches url and returns its body; non-200 fails the test.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: status %d: %s", url, res.StatusCode, body)
	}
	return string(body)
}

func TestStatusEndpointCountsRequests(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "hello.cgi", helloScript)
	writeScript(t, dir, "sleep.cgi", "#!/bin/sh\nsleep 5\nprintf 'Content-Type: text/plain\\r\\n\\r\\nlate\\n'\n")
	addr := freeAddr(t)
	b := harness.StartBridge(t, []string{"--root", dir, "--status", addr, "--timeout", "500ms", "--kill-grace", "200ms"})
	base := "http://" + addr
	if err := b.Logs.WaitFor("serving status", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// Two 200s, one 404, one timeout (504), one client abort.
	for _, s := range []string{"hello.cgi", "hello.cgi", "missing.cgi"} {
		do(t, b.Socket, req{Dir: dir, Script: s})
	}
	if res := do(t, b.Socket, req{Dir: dir, Script: "sleep.cgi"}); res.Status != 504 {
		t.Errorf("sleep.cgi under --timeout 500ms: status %d, want 504", res.Status)
	}
	cc := dial(t, b.Socket)
	go func() { _, _ = doOn(cc, 1, false, req{Dir: dir, Script: "sleep.cgi"}) }()
	time.Sleep(200 * time.Millisecond) // the program is running
	_ = cc.Close()                     // how nginx aborts: it closes the connection
	waitAccess(t, b, 5)

	if got := strings.TrimSpace(httpGet(t, base+"/ping")); got != "pong" {
		t.Errorf("/ping = %q, want pong", got)
	}

	text := httpGet(t, base+"/status")
	for _, key := range []string{"accepted conn:", "active processes:", "max procs:", "timeouts:", "aborts:", "slow requests:"} {
		if !strings.Contains(text, key) {
			t.Errorf("/status lacks %q:\n%s", key, text)
		}
	}

	var st map[string]any
	if err := json.Unmarshal([]byte(httpGet(t, base+"/status?json")), &st); err != nil {
		t.Fatalf("/status?json is not JSON: %v", err)
	}
	num := func(k string) float64 {
		v, ok := st[k].(float64)
		if !ok {
			t.Errorf("/status?json: %q = %v, want a number", k, st[k])
		}
		return v
	}
	if n := num("accepted conn"); n < 5 {
		t.Errorf("accepted conn = %v, want at least 5", n)
	}
	if n := num("timeouts"); n != 1 {
		t.Errorf("timeouts = %v, want 1", n)
	}
	if n := num("aborts"); n != 1 {
		t.Errorf("aborts = %v, want 1", n)
	}
	if n := num("active processes"); n != 0 {
		t.Errorf("active processes = %v after all requests ended, want 0", n)
	}
	byStatus, _ := st["requests by status"].(map[string]any)
	for code, want := range map[string]float64{"200": 2, "404": 1, "504": 1} {
		if got, _ := byStatus[code].(float64); got != want {
			t.Errorf("requests by status[%s] = %v, want %v (all: %v)", code, byStatus[code], want, byStatus)
		}
	}

	metrics := httpGet(t, base+"/metrics")
	if m := regexp.MustCompile(`(?m)^cgibridge_requests_total\{status="200"\} (\d+)$`).FindStringSubmatch(metrics); m == nil || m[1] != "2" {
		t.Errorf("/metrics: want cgibridge_requests_total{status=\"200\"} 2, got %v in:\n%s", m, metrics)
	}
}
