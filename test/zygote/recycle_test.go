package zygote

import (
	"strings"
	"testing"
)

// TestRecycledHelperHandsOverWithoutColdRequests: a helper worn out by
// --warm-max-requests keeps serving until its successor is ready, so a
// recycle costs no request served in exec mode ("helper starting"), and
// the successor really is a new helper (a new pid serves).
func TestRecycledHelperHandsOverWithoutColdRequests(t *testing.T) {
	for _, script := range []string{"hello.py", "hello.pl"} {
		t.Run(script, func(t *testing.T) {
			b := serve(t, newRoot(t), "--warm", "*.py", "--warm", "*.pl", "--warm-max-requests", "5")
			b.warmUp(t, script)
			before := strings.Count(b.bridge.Logs.String(), "cold=")
			for i := range 40 {
				r, line := b.doAccess(t, script, "", nil)
				if r.err != nil || r.status() != "200" {
					t.Fatalf("request %d: %v %q", i, r.err, r.stdout)
				}
				if !strings.Contains(line, "runner=warm") {
					t.Errorf("request %d was not served warm: %s", i, line)
				}
			}
			if n := strings.Count(b.bridge.Logs.String(), "cold=") - before; n != 0 {
				t.Errorf("%d requests ran cold while helpers were recycled", n)
			}
			n := 0
			for _, l := range strings.Split(b.bridge.Logs.String(), "\n") {
				if strings.Contains(l, "helper retired:") && strings.Contains(l, "reason=recycled") {
					n++
				}
			}
			if n < 3 {
				t.Errorf("%d helpers recycled in 40 requests with --warm-max-requests 5, want several:\n%s", n, b.bridge.Logs.String())
			}
		})
	}
}
