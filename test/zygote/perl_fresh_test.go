package zygote

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// TestPerlWarmIsAFreshProcess runs the same Perl probe requests in exec mode
// and warm and compares everything the script can observe: package globals
// and its module's state start fresh every request, the environment is
// exactly the request's (subprocesses see it), $0, @ARGV, cwd, __FILE__,
// __LINE__, FindBin, the body, TZ and locale, the descriptors (DATA's
// included), %INC and main's subs (nothing of the helper's), -w and its
// warnings, $$ and the process group, DATA, $^T, $| and $!.
func TestPerlWarmIsAFreshProcess(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	warm := serve(t, root, "--warm", "*.pl")
	warm.warmUp(t, "probe.pl")
	cases := []struct {
		name  string
		query string
		body  []byte
		extra []fcgi.Pair
	}{
		{name: "plain"},
		{name: "query", query: "a=1&b=2"},
		{name: "body", body: bytes.Repeat([]byte("0123456789"), 20000)},
		{name: "small body", body: []byte("a=1&b=2")},
		{name: "tz", extra: []fcgi.Pair{pair("TZ", "Asia/Tokyo")}},
		{name: "locale", extra: []fcgi.Pair{pair("LC_ALL", "C.UTF-8")}},
		{name: "header", extra: []fcgi.Pair{pair("HTTP_X_THING", "yes")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := decode(t, cold.do(t, "probe.pl", tc.query, tc.body, tc.extra...))
			// An earlier warm request that changes its environment, its
			// globals and its module's state must leave no trace.
			warm.do(t, "probe.pl", "leave=1", nil)
			r, line := warm.doAccess(t, "probe.pl", tc.query, tc.body, tc.extra...)
			got := decode(t, r)
			again := decode(t, warm.do(t, "probe.pl", tc.query, tc.body, tc.extra...))
			if got["random"] == again["random"] {
				t.Errorf("rand gave %v twice: not reseeded per child", got["random"])
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
		})
	}
}
