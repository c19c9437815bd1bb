// This file tests point 6 of "Run it in production": SIGHUP re-reads the
// --config file, new requests see the change while an open KEEP_CONN
// connection keeps working, a bad file leaves the running configuration in
// place, a listener change is reported as needing a restart, and SIGTERM
// drains the request in flight before exiting 0.

package production

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestReloadOnSIGHUP(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "greet.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$GREETING\"\n")
	writeScript(t, dir, "nap.cgi", "#!/bin/sh\nsleep 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\nrested\\n'\n")
	// No shebang and no exec bit: it runs only once .tst is mapped to sh.
	if err := os.WriteFile(filepath.Join(dir, "mapped.tst"), []byte("printf 'Content-Type: text/plain\\r\\n\\r\\nmapped\\n'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cgibridge.json")
	statusA, statusB := freeAddr(t), freeAddr(t)
	base := map[string]any{"root": dir, "max-procs": 1, "timeout": "10s", "set-env": []string{"GREETING=one"}, "status": statusA}
	writeConfig(t, cfg, base)
	b := harness.StartBridge(t, []string{"--config", cfg})

	keep := dial(t, b.Socket)
	var id uint16
	onKeep := func(r req) resp {
		t.Helper()
		id++
		res, err := doOn(keep, id, true, r)
		if err != nil {
			t.Fatalf("on the KEEP_CONN connection: %v", err)
		}
		return res
	}
	reload := func(cfgData map[string]any, raw []byte, wait string) int {
		t.Helper()
		if raw != nil {
			writeRaw(t, cfg, raw)
		} else {
			writeConfig(t, cfg, cfgData)
		}
		mark := len(b.Logs.String())
		if err := syscall.Kill(b.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for countSince(b.Logs.String(), mark, wait) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", wait, b.Logs.String()[mark:])
			}
			time.Sleep(10 * time.Millisecond)
		}
		return mark
	}

	if res := onKeep(req{Dir: dir, Script: "greet.cgi"}); res.Body != "one\n" {
		t.Fatalf("before reload: %d %q", res.Status, res.Body)
	}
	if res := onKeep(req{Dir: dir, Script: "mapped.tst"}); res.Status == 200 {
		t.Fatalf("mapped.tst ran before .tst was mapped: %q", res.Body)
	}

	t.Run("good config applies to new requests, open connection survives", func(t *testing.T) {
		next := map[string]any{"root": dir, "max-procs": 1, "timeout": "300ms", "kill-grace": "200ms",
			"set-env": []string{"GREETING=two"}, "interpreter": []string{".tst=sh"}, "status": statusA}
		reload(next, nil, "configuration reloaded")
		if res := onKeep(req{Dir: dir, Script: "greet.cgi"}); res.Body != "two\n" {
			t.Errorf("set-env after reload, same connection: %d %q, want two", res.Status, res.Body)
		}
		if res := do(t, b.Socket, req{Dir: dir, Script: "greet.cgi"}); res.Body != "two\n" {
			t.Errorf("set-env after reload, new connection: %d %q, want two", res.Status, res.Body)
		}
		if res := onKeep(req{Dir: dir, Script: "mapped.tst"}); res.Status != 200 || res.Body != "mapped\n" {
			t.Errorf("interpreter mapping after reload: %d %q", res.Status, res.Body)
		}
		if res := onKeep(req{Dir: dir, Script: "nap.cgi"}); res.Status != 504 {
			t.Errorf("nap.cgi (1s) after the timeout became 300ms: status %d, want 504", res.Status)
		}
	})

	t.Run("bad config is logged and the old one stays", func(t *testing.T) {
		for name, raw := range map[string]string{
			"not JSON":    `{"root": `,
			"max-procs 0": `{"root": "` + dir + `", "max-procs": 0, "set-env": ["GREETING=three"]}`,
		} {
			mark := reload(nil, []byte(raw), "reload failed")
			if !strings.Contains(b.Logs.String()[mark:], "[ERROR]") {
				t.Errorf("%s: reload failure not logged at error level:\n%s", name, b.Logs.String()[mark:])
			}
			if res := onKeep(req{Dir: dir, Script: "greet.cgi"}); res.Body != "two\n" {
				t.Errorf("%s: after a bad reload: %d %q, want the old two", name, res.Status, res.Body)
			}
		}
	})

	t.Run("listener change needs a restart", func(t *testing.T) {
		next := map[string]any{"root": dir, "max-procs": 1, "timeout": "10s", "set-env": []string{"GREETING=four"}, "status": statusB}
		mark := reload(next, nil, "configuration reloaded")
		if !strings.Contains(b.Logs.String()[mark:], "takes effect only after a restart: option=--status") {
			t.Errorf("changed status listener not reported as needing a restart:\n%s", b.Logs.String()[mark:])
		}
		if res := onKeep(req{Dir: dir, Script: "greet.cgi"}); res.Body != "four\n" {
			t.Errorf("after the reload: %d %q, want four", res.Status, res.Body)
		}
	})

	t.Run("SIGTERM drains the request in flight and exits 0", func(t *testing.T) {
		type result struct {
			res resp
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := doOn(keep, id+1, true, req{Dir: dir, Script: "nap.cgi"})
			done <- result{res, err}
		}()
		// SIGTERM only once nap.cgi is running: the request is in flight.
		deadline := time.Now().Add(10 * time.Second)
		for {
			kids, err := harness.Children(b.PID())
			if err != nil {
				t.Fatal(err)
			}
			if len(kids) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nap.cgi not running 10s after it was requested")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := b.Stop(); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		// The bridge has exited, so the answer, if any, has been written;
		// doOn's own deadline bounds the wait as well.
		select {
		case d := <-done:
			if d.err != nil {
				t.Errorf("request in flight during SIGTERM: %v", d.err)
			} else if d.res.Status != 200 || d.res.Body != "rested\n" {
				t.Errorf("request in flight during SIGTERM: %d %q, want 200 rested", d.res.Status, d.res.Body)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("request in flight never finished")
		}
	})
}
