package zygote

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// pair builds an extra param.
func pair(name, value string) fcgi.Pair { return fcgi.Pair{Name: name, Value: value} }

// probeCase is one request of a probe comparison.
type probeCase struct {
	name  string
	query string
	body  []byte
	extra []fcgi.Pair
}

// compareProbe sends tc for script to the exec-mode bridge cold and the
// warm one, after a warm request that changes its environment, globals and
// modules' state (which must leave no trace), and compares everything the
// probe reports; "random" must differ between two warm requests.
func compareProbe(t *testing.T, cold, warm *bed, script string, tc probeCase) {
	t.Helper()
	want := decode(t, cold.do(t, script, tc.query, tc.body, tc.extra...))
	warm.do(t, script, "leave=1", nil)
	r, line := warm.doAccess(t, script, tc.query, tc.body, tc.extra...)
	got := decode(t, r)
	again := decode(t, warm.do(t, script, tc.query, tc.body, tc.extra...))
	if got["random"] == again["random"] {
		t.Errorf("random gave %v twice: not reseeded per child", got["random"])
	}
	for _, m := range []map[string]any{want, got, again} {
		delete(m, "random")
	}
	for k := range want {
		if !reflect.DeepEqual(want[k], got[k]) {
			t.Errorf("%s: exec mode %s\n              warm %s", k, jsonString(want[k]), jsonString(got[k]))
		}
	}
	if !reflect.DeepEqual(got, again) {
		t.Errorf("two warm requests differ: %s vs %s", jsonString(got), jsonString(again))
	}
	if !strings.Contains(line, "runner=warm") {
		t.Errorf("not served warm: %s", line)
	}
}

// TestWarmIsAFreshProcess runs the same probe requests in exec mode and warm
// and compares everything the script can observe: module globals and the
// state of its own modules start fresh every request, the environment is
// exactly the request's (nothing from an earlier request or the helper;
// subprocesses see it), __name__, __doc__, __file__, argv, sys.path[0], cwd,
// the body, TZ and locale, the descriptors, stdio's encoding and buffering.
func TestWarmIsAFreshProcess(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	warm := serve(t, root, "--warm", "*.py")
	warm.warmUp(t, "probe.py")
	cases := []probeCase{
		{name: "plain"},
		{name: "body", body: bytes.Repeat([]byte("0123456789"), 20000)},
		{name: "small body", body: []byte("a=1&b=2")},
		{name: "tz", extra: []fcgi.Pair{pair("TZ", "Asia/Tokyo")}},
		{name: "locale", extra: []fcgi.Pair{pair("LC_ALL", "C.UTF-8")}},
		{name: "unbuffered", extra: []fcgi.Pair{pair("PYTHONUNBUFFERED", "1")}},
		{name: "header", extra: []fcgi.Pair{pair("HTTP_X_THING", "yes")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { compareProbe(t, cold, warm, "probe.py", tc) })
	}
}

// compareExit sends query for script cold and warm: both must end with
// appStatus status and the same exit in the access line, the warm one
// served warm.
func compareExit(t *testing.T, cold, warm *bed, script, query string, status uint32) {
	t.Helper()
	c, cl := cold.doAccess(t, script, query, nil)
	w, wl := warm.doAccess(t, script, query, nil)
	if c.err != nil || w.err != nil {
		t.Fatalf("%s: %v / %v", query, c.err, w.err)
	}
	if c.end.AppStatus != status || w.end.AppStatus != status {
		t.Errorf("%s: appStatus exec %d, warm %d, want %d", query, c.end.AppStatus, w.end.AppStatus, status)
	}
	if exitOf(cl) != exitOf(wl) || !strings.Contains(wl, "runner=warm") {
		t.Errorf("%s: access lines differ in exit:\n exec %s\n warm %s", query, cl, wl)
	}
}

// TestWarmExitsAsAFreshProcess: sys.exit(n), an uncaught exception,
// sys.exit("message") and os._exit(n) end the request with the status exec
// mode gives, and tracebacks start at the script.
func TestWarmExitsAsAFreshProcess(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	warm := serve(t, root, "--warm", "*.py")
	warm.warmUp(t, "probe.py")
	for _, tc := range []struct {
		query  string
		status uint32
		logged string
	}{
		{"exit=sys&code=3", 3, ""},
		{"exit=sys&code=0", 0, ""},
		{"exit=raise", 1, "ValueError: uncaught on purpose"},
		{"exit=msg", 1, "a message to stderr"},
		{"exit=os&code=4", 4, ""},
	} {
		compareExit(t, cold, warm, "probe.py", tc.query, tc.status)
		if tc.logged != "" && !strings.Contains(warm.bridge.Logs.String(), tc.logged) {
			t.Errorf("%s: %q not in the warm bridge's log", tc.query, tc.logged)
		}
	}
	// The traceback is the script's, as a fresh interpreter prints it.
	logs := warm.bridge.Logs.String()
	if !strings.Contains(logs, `probe.py\", line`) || strings.Contains(logs, `File \"<string>\"`) {
		t.Errorf("the traceback shows the helper, or not the script:\n%s", grepLines(logs, "stderr"))
	}
}

func exitOf(line string) string {
	i := strings.Index(line, "exit=")
	if i < 0 {
		return ""
	}
	rest := line[i+5:]
	if strings.HasPrefix(rest, `"`) {
		end := strings.Index(rest[1:], `"`)
		return rest[:end+2]
	}
	return strings.Fields(rest)[0]
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWarmRunsAtexitAndFlushesUnclosedFiles: atexit hooks of the script run
// (the helper's never do), and a file it left open is flushed at exit.
func TestWarmRunsAtexitAndFlushesUnclosedFiles(t *testing.T) {
	root := newRoot(t)
	warm := serve(t, root, "--warm", "*.py")
	warm.warmUp(t, "probe.py")
	r := warm.do(t, "probe.py", "atexit=1", nil)
	if !strings.HasSuffix(strings.TrimSpace(r.body()), "atexit ran") {
		t.Errorf("atexit did not run: %q", r.body())
	}
	if strings.Count(r.body(), "atexit ran") != 1 {
		t.Errorf("atexit ran %d times", strings.Count(r.body(), "atexit ran"))
	}
	out := filepath.Join(root, "unclosed.txt")
	if err := os.WriteFile(out, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o666)
	_, l := warm.doAccess(t, "probe.py", "unclosed="+out, nil)
	if data, _ := os.ReadFile(out); string(data) != "flushed at exit\n" {
		t.Errorf("unclosed file holds %q", data)
	}
	if !strings.Contains(l, "runner=warm") {
		t.Errorf("not served warm: %s", l)
	}
}
