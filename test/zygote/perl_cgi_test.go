package zygote

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// throughNginx puts a real nginx in front of b; it returns its URL.
func throughNginx(t *testing.T, b *bed) string {
	t.Helper()
	n := harness.StartNginx(t, "        location / {\n"+harness.FastCGIParams()+
		"            fastcgi_param SCRIPT_FILENAME "+b.root+"$fastcgi_script_name;\n"+
		"            fastcgi_pass unix:"+b.bridge.Socket+";\n        }\n")
	return n.URL
}

var httpClient = &http.Client{Timeout: ioTimeout}

// httpDo sends one request through nginx; it returns the status and body.
func httpDo(t testing.TB, method, u, form string) (int, string) {
	t.Helper()
	var body io.Reader
	if form != "" {
		body = strings.NewReader(form)
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestPerlCGIpmScriptWorksWarm: a CGI.pm script (CGI.pm reads request
// variables while it loads — its IIS and PerlEx probes — and the helper
// knows these) is served warm
// through nginx, GET and POST, with exec mode's answers; and warm is the
// faster by far (the timings are logged).
func TestPerlCGIpmScriptWorksWarm(t *testing.T) {
	root := newRoot(t)
	cold := serve(t, root)
	warm := serve(t, root, "--warm", "*.pl")
	coldURL, warmURL := throughNginx(t, cold), throughNginx(t, warm)
	warm.warmUp(t, "cgipm.pl")
	for _, tc := range []struct{ method, query, form, want string }{
		{"GET", "?name=ann", "", "name=ann\nmethod=GET\nposted=\nhello ann\n"},
		{"POST", "", "name=bob&posted=" + url.QueryEscape("a b&c"), "name=bob\nmethod=POST\nposted=a b&c\nhello bob\n"},
	} {
		before := strings.Count(warm.bridge.Logs.String(), "runner=warm")
		cs, cb := httpDo(t, tc.method, coldURL+"/cgipm.pl"+tc.query, tc.form)
		ws, wb := httpDo(t, tc.method, warmURL+"/cgipm.pl"+tc.query, tc.form)
		if cs != 200 || ws != 200 || cb != tc.want || wb != cb {
			t.Errorf("%s: exec %d %q, warm %d %q, want %q", tc.method, cs, cb, ws, wb, tc.want)
		}
		if !waitCount(warm, "runner=warm", before+1, 5*time.Second) {
			t.Errorf("%s not served warm:\n%s", tc.method, grepLines(warm.bridge.Logs.String(), "request: "))
		}
	}
	median := func(u string) time.Duration {
		var ds []time.Duration
		for range 25 {
			start := time.Now()
			if s, _ := httpDo(t, "GET", u, ""); s != 200 {
				t.Fatalf("GET %s: %d", u, s)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	c, w := median(coldURL+"/cgipm.pl?name=x"), median(warmURL+"/cgipm.pl?name=x")
	t.Logf("CGI.pm script through nginx, median of 25: exec mode %v, warm %v (%.1fx)", c, w, float64(c)/float64(w))
	if w*2 > c {
		t.Errorf("warm (%v) is not even twice as fast as exec mode (%v)", w, c)
	}
}
