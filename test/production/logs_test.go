// This file tests point 4 of "Run it in production": one access line per
// request in text and JSON, the slow-request line emitted while the program
// still runs, and changing the log level with a config edit and SIGHUP.

package production

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// accessKeys are the fields every access line carries.
var accessKeys = []string{"method", "uri", "script", "status", "bytes_in", "bytes_out", "duration", "exit", "runner"}

func TestAccessLineTextOnePerRequest(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "hello.cgi", helloScript)
	b := harness.StartBridge(t, []string{"--root", dir})

	reqs := []req{
		{Dir: dir, Script: "hello.cgi"},
		{Dir: dir, Script: "hello.cgi", Method: "POST", Body: []byte("abc")},
		{Dir: dir, Script: "missing.cgi"},
	}
	wantStatus := []string{"status=200", "status=200", "status=404"}
	for _, r := range reqs {
		do(t, b.Socket, r)
	}
	waitAccess(t, b, len(reqs))
	time.Sleep(100 * time.Millisecond) // a duplicate line would come right after
	lines := accessLines(b.Logs.String())
	if len(lines) != len(reqs) {
		t.Fatalf("%d access lines for %d requests:\n%s", len(lines), len(reqs), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		for _, k := range accessKeys {
			if !regexp.MustCompile(`\s` + k + `=\S`).MatchString(l) {
				t.Errorf("access line %d lacks %s=: %s", i, k, l)
			}
		}
		if !strings.Contains(l, wantStatus[i]) || !strings.Contains(l, "uri=/"+reqs[i].Script) {
			t.Errorf("access line %d: want %s and uri=/%s: %s", i, wantStatus[i], reqs[i].Script, l)
		}
	}
	if !strings.Contains(lines[1], "method=POST") || !strings.Contains(lines[1], "bytes_in=3") {
		t.Errorf("POST line lacks method=POST bytes_in=3: %s", lines[1])
	}
}

func TestAccessLineJSON(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "hello.cgi", helloScript)
	b := harness.StartBridge(t, []string{"--root", dir, "--log-format", "json"})
	do(t, b.Socket, req{Dir: dir, Script: "hello.cgi"})

	var access []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for len(access) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		access = access[:0]
		for _, l := range strings.Split(strings.TrimSpace(b.Logs.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, l)
			}
			if m["@message"] == "request" {
				access = append(access, m)
			}
		}
	}
	if len(access) != 1 {
		t.Fatalf("%d JSON access lines, want 1:\n%s", len(access), b.Logs.String())
	}
	for _, k := range accessKeys {
		if _, ok := access[0][k]; !ok {
			t.Errorf("JSON access line lacks %q: %v", k, access[0])
		}
	}
	if s, _ := access[0]["status"].(float64); s != 200 {
		t.Errorf("JSON status = %v, want the number 200", access[0]["status"])
	}
}

func TestSlowRequestLoggedWhileRunning(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "slow.cgi", "#!/bin/sh\nsleep 1.5\nprintf 'Content-Type: text/plain\\r\\n\\r\\ndone\\n'\n")
	writeScript(t, dir, "hello.cgi", helloScript)
	b := harness.StartBridge(t, []string{"--root", dir, "--slow", "200ms"})

	do(t, b.Socket, req{Dir: dir, Script: "hello.cgi"})
	if strings.Contains(b.Logs.String(), "slow request") {
		t.Fatalf("a fast request was logged as slow:\n%s", b.Logs.String())
	}

	done := make(chan resp, 1)
	go func() {
		cc := dial(t, b.Socket)
		res, err := doOn(cc, 1, false, req{Dir: dir, Script: "slow.cgi"})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	// The line must come while the program still sleeps, not at the end.
	err := b.Logs.WaitFor("slow request", time.Second)
	select {
	case <-done:
		t.Errorf("the request finished before any slow-request line was checked")
	default:
	}
	if err != nil {
		t.Errorf("no slow-request line within 1s of a 200ms threshold: %v", err)
	}
	res := <-done
	if res.Status != 200 {
		t.Errorf("slow request: status %d", res.Status)
	}
	var slow string
	for _, l := range strings.Split(b.Logs.String(), "\n") {
		if strings.Contains(l, "slow request") {
			slow = l
		}
	}
	for _, want := range []string{"[WARN]", "pid=", "elapsed=", "script=" + filepath.Join(dir, "slow.cgi")} {
		if !strings.Contains(slow, want) {
			t.Errorf("slow-request line lacks %q: %s", want, slow)
		}
	}
	if m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(slow); m == nil || m[1] == "0" {
		t.Errorf("slow-request line has no real pid: %s", slow)
	}
}

func TestLogLevelChangesOnSIGHUP(t *testing.T) {
	dir := scriptDir(t)
	cfg := filepath.Join(dir, "cgibridge.json")
	writeConfig(t, cfg, map[string]any{"root": dir, "log-level": "info"})
	b := harness.StartBridge(t, []string{"--config", cfg})

	// A record of a type FastCGI does not define is ignored with a debug line.
	stray := func() {
		cc := dial(t, b.Socket)
		if err := cc.WriteRecord(fcgi.RecType(42), 99, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = cc.Close()
	}
	stray()
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(b.Logs.String(), "[DEBUG]") {
		t.Fatalf("debug line at log-level info:\n%s", b.Logs.String())
	}

	writeConfig(t, cfg, map[string]any{"root": dir, "log-level": "debug"})
	mark := len(b.Logs.String())
	if err := syscall.Kill(b.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := b.Logs.WaitFor("configuration reloaded", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stray()
	deadline := time.Now().Add(3 * time.Second)
	for countSince(b.Logs.String(), mark, "[DEBUG]") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if countSince(b.Logs.String(), mark, "[DEBUG]") == 0 {
		t.Errorf("no debug line after reloading with log-level debug:\n%s", b.Logs.String()[mark:])
	}
}
