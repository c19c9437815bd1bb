// This file tests point 3 of "Run it in production": the request body cap
// (413), the response header cap (502) and the --max-procs queue that turns
// overload into a 503 with Retry-After.

package production

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestBodyAndHeaderCaps(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "echo.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\ncat\n")
	// 40 KiB of headers: 640 lines of 64 bytes.
	writeScript(t, dir, "bighead.cgi", `#!/usr/bin/perl
print "Content-Type: text/plain\r\n";
print "X-Filler-$_: ", "y" x 50, "\r\n" for 1 .. 640;
print "\r\nbody\n";
`)
	b := harness.StartBridge(t, []string{"--root", dir, "--max-body", "1K", "--max-header", "32K"})

	tests := []struct {
		name       string
		r          req
		wantStatus int
	}{
		{"body under the cap passes", req{Dir: dir, Script: "echo.cgi", Method: "POST", Body: bytes.Repeat([]byte("a"), 512)}, 200},
		{"4 KiB body over 1K cap is 413", req{Dir: dir, Script: "echo.cgi", Method: "POST", Body: bytes.Repeat([]byte("a"), 4096)}, 413},
		{"40 KiB header block over 32K cap is 502", req{Dir: dir, Script: "bighead.cgi"}, 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, b.Socket, tc.r)
			if res.Status != tc.wantStatus {
				t.Errorf("status %d, want %d (body %.200q)", res.Status, tc.wantStatus, res.Body)
			}
			if tc.wantStatus == 200 && len(res.Body) != len(tc.r.Body) {
				t.Errorf("echoed %d bytes, sent %d", len(res.Body), len(tc.r.Body))
			}
		})
	}
}

func TestOverloadAnswers503WithRetryAfter(t *testing.T) {
	dir := scriptDir(t)
	writeScript(t, dir, "slow.cgi", "#!/bin/sh\nsleep 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\ndone\\n'\n")
	b := harness.StartBridge(t, []string{"--root", dir, "--max-procs", "1", "--queue-timeout", "200ms"})

	const n = 3
	results := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cc := dial(t, b.Socket)
			res, err := doOn(cc, 1, false, req{Dir: dir, Script: "slow.cgi"})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	var ok, busy int
	for i, res := range results {
		switch res.Status {
		case 200:
			ok++
		case 503:
			busy++
			if ra := res.Header.Get("Retry-After"); ra == "" {
				t.Errorf("request %d: 503 without Retry-After (header %v)", i, res.Header)
			}
		default:
			t.Errorf("request %d: status %d, want 200 or 503", i, res.Status)
		}
	}
	if ok < 1 || busy < 1 {
		t.Errorf("%d answered 200 and %d 503; want at least one of each with one slot and a 200ms queue", ok, busy)
	}
	if !strings.Contains(b.Logs.String(), "overloaded") {
		t.Errorf("no log line saying the bridge was overloaded")
	}
}
