package zygote

import (
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// coldWithReason requests name until its access line says it ran in exec
// mode for reason (the first requests may say "helper starting"); each
// answer must be want.
func coldWithReason(t *testing.T, b *bed, name, want, reason string, extra ...fcgi.Pair) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, l := b.doAccess(t, name, "", nil, extra...)
		if r.body() != want {
			t.Fatalf("%s: got %q, want %q", name, r.stdout, want)
		}
		if strings.Contains(l, "runner=warm") {
			t.Fatalf("%s served warm: %s", name, l)
		}
		if strings.Contains(l, "runner=exec") && strings.Contains(l, reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no exec-mode access line with %q; last: %s", name, reason, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPerlScriptsThatCannotBeWarmedRunInExecMode: a modulino (caller at its
// top level), taint mode, a BEGIN block reading a request variable, a
// module reading one while it loads, a BEGIN block that exits, a module
// leaving a file open and threads are served
// in exec mode, the reason in the access line and logged once.
func TestPerlScriptsThatCannotBeWarmedRunInExecMode(t *testing.T) {
	root := newRoot(t)
	b := serve(t, root, "--warm", "*.pl")
	mode := pair("HTTP_X_MODE", "fast")
	for _, tc := range []struct {
		name, want, reason string
		extra              []fcgi.Pair
	}{
		{"modulino.pl", "modulino ran\n", "the script calls caller (a modulino?)", nil},
		{"taint.pl", "tainted ok\n", "taint mode (-T) is not supported warm", nil},
		{"beginenv.pl", "mode fast\n", "the script (a BEGIN block or use) reads $ENV{HTTP_X_MODE} at compile time", []fcgi.Pair{mode}},
		{"reqmod.pl", "mode fast\n", "module PerlReqMod.pm reads $ENV{HTTP_X_MODE} at load", []fcgi.Pair{mode}},
		{"beginexit.pl", "bye\n", "the script exits while it is compiled", nil},
		{"fdmod.pl", "fd ok\n", "loading left 1 files open", nil},
		{"threads.pl", "threads ok\n", "the script uses threads", nil},
	} {
		coldWithReason(t, b, tc.name, tc.want, tc.reason, tc.extra...)
	}
	for _, reason := range []string{"the script calls caller", "reads $ENV{HTTP_X_MODE} at compile time", "PerlReqMod.pm reads", "exits while it is compiled"} {
		if n := strings.Count(grepLines(b.bridge.Logs.String(), "script cannot be warmed"), reason); n != 1 {
			t.Errorf("%d log lines say the script cannot be warmed because %q, want 1", n, reason)
		}
	}
}

// TestPerlModuleReadingTheEnvironmentAtLoad: a module that reads a
// variable at load is preloaded with the helper's value; a request that
// brings another value runs in exec mode (and gets it), the others warm.
func TestPerlModuleReadingTheEnvironmentAtLoad(t *testing.T) {
	b := serve(t, newRoot(t), "--warm", "*.pl")
	b.warmUp(t, "envmod.pl")
	r, l := b.doAccess(t, "envmod.pl", "", nil)
	if r.body() != "mode none\n" || !strings.Contains(l, "runner=warm") {
		t.Errorf("without APP_MODE: %q %s", r.stdout, l)
	}
	r, l = b.doAccess(t, "envmod.pl", "", nil, pair("APP_MODE", "special"))
	if r.body() != "mode special\n" || !strings.Contains(l, "runner=exec") || !strings.Contains(l, "reads $ENV{APP_MODE} at load") {
		t.Errorf("with APP_MODE: %q %s", r.stdout, l)
	}
}
