package zygote

import (
	"strings"
	"testing"
	"time"
)

// TestPerlReloadUnderLoadZeroFailedZeroStale is the reload matrix for a
// Perl script and the module it uses.
func TestPerlReloadUnderLoadZeroFailedZeroStale(t *testing.T) {
	reloadUnderLoad(t, "*.pl", "versioned.pl", "PerlVersionMod.pm", func(v string) string {
		return "#!/usr/bin/perl\nuse strict;\nuse FindBin;\nuse lib $FindBin::Bin;\nuse PerlVersionMod;\n" +
			"print \"Content-Type: text/plain\\n\\n\";\nprint \"script=" + v + " module=$PerlVersionMod::VERSION\\n\";\n"
	}, func(v string) string { return "package PerlVersionMod;\nour $VERSION = \"" + v + "\";\n1;\n" })
}

// TestPerlEditIsServedOnTheNextRequest: an edited script answers the very
// next request, warm; broken, it gets exec mode's answer and perl's
// message; fixed, it is warm again; made a modulino, it runs in exec mode.
func TestPerlEditIsServedOnTheNextRequest(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	b := serve(t, root, "--warm", "*.pl")
	b.warmUp(t, "hello.pl")
	for _, v := range []string{"v2", "v3", "v4"} {
		writeScript(t, root, "hello.pl", "#!/usr/bin/perl\nuse strict;\nuse POSIX ();\nprint \"Content-Type: text/plain\\n\\nhello version="+v+" pid=$$\\n\";\n")
		r, l := b.doAccess(t, "hello.pl", "", nil)
		if !strings.Contains(r.body(), "version="+v) || !strings.Contains(l, "runner=warm") {
			t.Errorf("after the edit to %s: %q\n%s", v, r.stdout, l)
		}
	}
	writeScript(t, root, "hello.pl", "#!/usr/bin/perl\nuse strict;\nprint \"Content-Type: text/plain\\n\\n\"\nprint \"broken\\n\";\n")
	w, wl := b.doAccess(t, "hello.pl", "", nil)
	c, cl := cold.doAccess(t, "hello.pl", "", nil)
	if w.status() != c.status() || w.end.AppStatus != c.end.AppStatus || exitOf(wl) != exitOf(cl) {
		t.Errorf("broken script: warm %s/%d %s, exec %s/%d %s", w.status(), w.end.AppStatus, exitOf(wl), c.status(), c.end.AppStatus, exitOf(cl))
	}
	for _, bb := range []*bed{b, cold} {
		if !strings.Contains(bb.bridge.Logs.String(), "syntax error at "+root+"/hello.pl line 4") {
			t.Errorf("no syntax error in the log:\n%s", grepLines(bb.bridge.Logs.String(), "stderr"))
		}
	}
	writeScript(t, root, "hello.pl", "#!/usr/bin/perl\nuse strict;\nuse POSIX ();\nprint \"Content-Type: text/plain\\n\\nhello version=v5 pid=$$\\n\";\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, l := b.doAccess(t, "hello.pl", "", nil)
		if !strings.Contains(r.body(), "version=v5") {
			t.Fatalf("the fixed script: %q", r.stdout)
		}
		if strings.Contains(l, "runner=warm") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fixed script is not served warm: %s", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	writeScript(t, root, "hello.pl", "#!/usr/bin/perl\nuse strict;\nsub main { print \"Content-Type: text/plain\\n\\nmodulino now\\n\" }\nmain() unless caller;\n")
	for range 3 {
		r, l := b.doAccess(t, "hello.pl", "", nil)
		if r.body() != "modulino now\n" || !strings.Contains(l, "runner=exec") || !strings.Contains(l, "modulino") {
			t.Errorf("made a modulino: %q\n%s", r.stdout, l)
		}
	}
}
