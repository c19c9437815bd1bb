package warm_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestChildExitingBetweenRequestsCostsNoRequest: a child that has answered
// its request in full and then exits — with status 0 (gitweb after 100
// requests, php-cgi after PHP_FCGI_MAX_REQUESTS) or not (munin-cgi-html
// after a fatal error) — costs the next request nothing: that request never
// reached it, and exec mode would have answered it. Whether the next request
// finds the child gone (refused: retried) or meets its kept connection
// closing (reset: a 502 unless the exit was 0) is a race, so 10 exits.
func TestChildExitingBetweenRequestsCostsNoRequest(t *testing.T) {
	for _, code := range []string{"0", "1"} {
		t.Run("exit "+code, func(t *testing.T) {
			b := newBed(t, func(b *bed) []string {
				copyFile(t, filepath.Join("testdata", "exits.fcgi"), filepath.Join(b.root, "exits.fcgi"), 0o755)
				return []string{"--fastcgi", "exits.fcgi", "--fastcgi-procs", "1"}
			})
			var failed []string
			pids := map[string]bool{}
			for range 30 {
				r := fetch(b.base + "exits.fcgi?code=" + code)
				if r.err != nil || r.status != 200 || !strings.Contains(r.body, "request=") {
					failed = append(failed, r.body)
					continue
				}
				pids[strings.Fields(r.body)[0]] = true
			}
			if len(failed) > 0 {
				t.Errorf("%d of 30 requests failed after children that answered in full exited %s: %q", len(failed), code, failed)
			}
			if len(failed) == 0 && len(pids) < 10 {
				t.Errorf("%d children for 30 requests, each child exiting after 3", len(pids))
			}
		})
	}
}
