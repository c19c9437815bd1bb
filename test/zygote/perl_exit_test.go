package zygote

import (
	"strings"
	"testing"
)

// TestPerlWarmExitsAsAFreshProcess: exit n, die (255 and the message as perl
// prints it, "at SCRIPT line N." included) and die with $! set end the
// request with the status exec mode gives, served warm.
func TestPerlWarmExitsAsAFreshProcess(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	warm := serve(t, root, "--warm", "*.pl")
	warm.warmUp(t, "probe.pl")
	for _, tc := range []struct {
		query  string
		status uint32
		logged string
	}{
		{"exit=exit&code=3", 3, ""},
		{"exit=exit&code=0", 0, ""},
		{"exit=die", 255, "uncaught on purpose"},
		{"exit=dieline", 255, "with a line at " + root + "/probe.pl line "},
		{"exit=errno", 5, "errno 5"},
	} {
		compareExit(t, cold, warm, "probe.pl", tc.query, tc.status)
		if tc.logged != "" {
			for _, b := range []*bed{cold, warm} {
				if !strings.Contains(b.bridge.Logs.String(), tc.logged) {
					t.Errorf("%s: %q not in the log:\n%s", tc.query, tc.logged, grepLines(b.bridge.Logs.String(), "stderr"))
				}
			}
		}
	}
	// The helper's frames never show: no "-e line" in what the script said.
	if logs := grepLines(warm.bridge.Logs.String(), "stderr"); strings.Contains(logs, "-e line") {
		t.Errorf("the helper shows in the script's messages:\n%s", logs)
	}
}

// TestPerlWarmRunsENDBlocksAndReadsDATA: the script's END blocks (compiled
// and added at run time) and its modules' run, in perl's order, after exit
// as after the end of the script; the helper's never do; DATA reads what
// follows __END__.
func TestPerlWarmRunsENDBlocksAndReadsDATA(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	warm := serve(t, root, "--warm", "*.pl")
	warm.warmUp(t, "probe.pl")
	for _, q := range []string{"end=1", "end=1&exit=exit&code=2"} {
		c := cold.do(t, "probe.pl", q, nil)
		w, l := warm.doAccess(t, "probe.pl", q, nil)
		tail := func(r reply) string {
			_, after, _ := strings.Cut(r.body(), "}\n")
			return after
		}
		if tail(c) != "END ran\nscript END\nmodule END\n" || tail(w) != tail(c) {
			t.Errorf("%s: END output exec %q, warm %q", q, tail(c), tail(w))
		}
		if !strings.Contains(l, "runner=warm") {
			t.Errorf("not served warm: %s", l)
		}
	}
	m := decode(t, warm.do(t, "probe.pl", "", nil))
	if jsonString(m["data"]) != `["data line one\n","data line two\n"]` {
		t.Errorf("DATA: %s", jsonString(m["data"]))
	}
}
