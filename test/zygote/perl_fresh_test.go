package zygote

import (
	"bytes"
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
	cases := []probeCase{
		{name: "plain"},
		{name: "query", query: "a=1&b=2"},
		{name: "body", body: bytes.Repeat([]byte("0123456789"), 20000)},
		{name: "small body", body: []byte("a=1&b=2")},
		{name: "tz", extra: []fcgi.Pair{pair("TZ", "Asia/Tokyo")}},
		{name: "locale", extra: []fcgi.Pair{pair("LC_ALL", "C.UTF-8")}},
		{name: "header", extra: []fcgi.Pair{pair("HTTP_X_THING", "yes")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { compareProbe(t, cold, warm, "probe.pl", tc) })
	}
}
