package warm_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

// The warm examples of legacy-examples/fastcgi, served as its README says.

func example(t *testing.T, name string) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "legacy-examples", name)
}

var helloRE = regexp.MustCompile(`^hello (\S+) from pid (\d+), request (\d+), up since (\d+)\n$`)

// TestCGIFastExamplePersists: hello-cgi-fast.fcgi answers every request
// from one process that keeps what it set up once.
func TestCGIFastExamplePersists(t *testing.T) {
	need(t, "libcgi-fast-perl", "/usr/share/perl5/CGI/Fast.pm")
	b := newBed(t, func(b *bed) []string {
		copyFile(t, example(t, "fastcgi/hello-cgi-fast.fcgi"), filepath.Join(b.root, "hello-cgi-fast.fcgi"), 0o755)
		return []string{"--fastcgi", "hello-cgi-fast.fcgi", "--fastcgi-procs", "1"}
	})
	var pid, since string
	for i := 1; i <= 20; i++ {
		r := get(t, b.base+"hello-cgi-fast.fcgi?name=warm", "hello warm")
		m := helloRE.FindStringSubmatch(r.body)
		if m == nil || m[3] != fmt.Sprint(i) || pid != "" && (m[2] != pid || m[4] != since) {
			t.Fatalf("request %d: %q, want request %d from pid %s up since %s", i, r.body, i, pid, since)
		}
		pid, since = m[2], m[4]
	}
	b.persists(t, filepath.Join(b.root, "hello-cgi-fast.fcgi"), b.base+"hello-cgi-fast.fcgi", "from pid "+pid, 5)
}

var phpRE = regexp.MustCompile(`^sapi=cgi-fcgi pid=(\d+) calls=1 script=(\S+)\n$`)

// TestPHPPoolExample: --fastcgi '*.php' runs one pool of php-cgi for
// counter.php and info.php alike; each request starts PHP afresh (the
// static counts 1) in the same process; and php-cgi ending itself after
// PHP_FCGI_MAX_REQUESTS costs no request.
func TestPHPPoolExample(t *testing.T) {
	need(t, "php-cgi", "/usr/bin/php-cgi")
	b := newBed(t, func(b *bed) []string {
		copyFile(t, example(t, "fastcgi/counter.php"), filepath.Join(b.root, "counter.php"), 0o644)
		copyFile(t, example(t, "cgi-bin/info.php"), filepath.Join(b.root, "info.php"), 0o644)
		return []string{"--fastcgi", "*.php", "--fastcgi-procs", "1", "--fastcgi-env", "*.php:PHP_FCGI_MAX_REQUESTS=5"}
	})
	pids := map[string]int{}
	for i := range 23 {
		if i%4 == 3 {
			get(t, b.base+"info.php?name=warm", "cgi-fcgi")
			continue
		}
		r := get(t, b.base+"counter.php", "sapi=cgi-fcgi")
		m := phpRE.FindStringSubmatch(r.body)
		if m == nil || m[2] != "counter.php" {
			t.Fatalf("request %d: %q", i+1, r.body)
		}
		pids[m[1]]++
	}
	if len(pids) != 5 {
		t.Errorf("pids %v: want 5 php-cgi processes for 23 requests, 5 each", pids)
	}
	if n := b.countLines("failed mid-request"); n != 0 {
		t.Errorf("%d requests failed", n)
	}
	p := b.pool(t, "/usr/bin/php-cgi")
	if p.Requests != 23 || p.Started != 5 || p.Crashes != 0 {
		t.Errorf("php-cgi pool %+v: want one pool of 5 processes for both scripts", p)
	}
}
