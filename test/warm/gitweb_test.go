package warm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Debian's gitweb (package gitweb) speaks FastCGI — through CGI::Fast,
// package libcgi-fast-perl — when its file name ends in .fcgi or it is run
// with --fastcgi (evaluate_argv in gitweb.cgi), and in that mode ends each
// process after 100 requests (is_last_request: the 101st is its last).
const gitwebCGI = "/usr/share/gitweb/gitweb.cgi"

// gitwebBed serves a copy of gitweb.cgi as gitweb.fcgi over a project root
// with one repository, demo.git. gitweb reads GITWEB_CONFIG from %ENV when
// its first request comes, and CGI::Fast has by then replaced %ENV with the
// request's variables: the config path must come with every request
// (--set-env, or a fastcgi_param), not only in the start environment.
func gitwebBed(t *testing.T, args ...string) *bed {
	t.Helper()
	need(t, "gitweb", gitwebCGI)
	need(t, "libcgi-fast-perl", "/usr/share/perl5/CGI/Fast.pm")
	return newBed(t, func(b *bed) []string {
		copyFile(t, gitwebCGI, filepath.Join(b.root, "gitweb.fcgi"), 0o755)
		projects := filepath.Join(b.dir, "git")
		work := filepath.Join(b.dir, "work")
		for _, d := range []string{projects, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		run(t, work, "git", "init", "-q", "-b", "main")
		writeFile(t, filepath.Join(work, "README"), "served warm\n", 0o644)
		run(t, work, "git", "add", "README")
		run(t, work, "git", "commit", "-q", "-m", "first commit, served warm")
		run(t, b.dir, "git", "clone", "-q", "--bare", work, filepath.Join(projects, "demo.git"))
		writeFile(t, filepath.Join(projects, "demo.git", "description"), "the warm demo repository\n", 0o644)
		conf := filepath.Join(b.dir, "gitweb.conf")
		writeFile(t, conf, "$projectroot = \""+projects+"\";\n$git_temp = \"/tmp\";\n", 0o644)
		return []string{"--fastcgi", "gitweb.fcgi", "--set-env", "GITWEB_CONFIG=" + conf, "--fastcgi-procs", "1"}
	}, args...)
}

// TestGitwebPersists: the project list shows demo.git and the summary its
// commit, from one gitweb process.
func TestGitwebPersists(t *testing.T) {
	b := gitwebBed(t)
	get(t, b.base+"gitweb.fcgi", "the warm demo repository")
	get(t, b.base+"gitweb.fcgi?p=demo.git;a=summary", "first commit, served warm")
	b.persists(t, filepath.Join(b.root, "gitweb.fcgi"), b.base+"gitweb.fcgi", "demo.git", 10)
}

// TestGitwebExitsAfter100RequestsUnnoticed: gitweb ends its own process
// after its 101st request; the next request goes to a new one, and no
// request fails or is slow to come.
func TestGitwebExitsAfter100RequestsUnnoticed(t *testing.T) {
	b := gitwebBed(t)
	prog := filepath.Join(b.root, "gitweb.fcgi")
	for i := range 205 {
		r := fetch(b.base + "gitweb.fcgi?a=project_index")
		if r.err != nil || r.status != 200 || !strings.Contains(r.body, "demo.git") {
			t.Fatalf("request %d: %d %v %q", i+1, r.status, r.err, clip(r.body))
		}
	}
	p := b.pool(t, prog)
	if p.Started != 3 || p.Requests != 205 || p.Crashes != 0 {
		t.Errorf("pool %+v: want 3 processes (101 + 101 + 3 requests), no crash", p)
	}
	// The 102nd request went to a new child, whether it found the old one
	// gone or met its kept connection closing.
	b.logLine(t, "FastCGI child exited", `exit="exit 0"`, "requests=101")
	if n := b.countLines("failed mid-request"); n != 0 {
		t.Errorf("%d requests failed", n)
	}
}

// TestGitwebConfigInTheStartEnvironmentOnlyIsNotSeen: the quirk behind
// --set-env above. With GITWEB_CONFIG given to --fastcgi-env alone, gitweb
// looks for it when its first request comes, in that request's
// environment, does not find it, and serves /etc/gitweb.conf's project
// root instead: not the test's project.
func TestGitwebConfigInTheStartEnvironmentOnlyIsNotSeen(t *testing.T) {
	need(t, "gitweb", gitwebCGI)
	b := newBed(t, func(b *bed) []string {
		copyFile(t, gitwebCGI, filepath.Join(b.root, "gitweb.fcgi"), 0o755)
		projects := filepath.Join(b.dir, "git")
		if err := os.Mkdir(projects, 0o755); err != nil {
			t.Fatal(err)
		}
		run(t, projects, "git", "init", "-q", "--bare", "only-here.git")
		conf := filepath.Join(b.dir, "gitweb.conf")
		writeFile(t, conf, "$projectroot = \""+projects+"\";\n", 0o644)
		return []string{"--fastcgi", "gitweb.fcgi", "--fastcgi-env", "gitweb.fcgi:GITWEB_CONFIG=" + conf}
	})
	r := fetch(b.base + "gitweb.fcgi?a=project_index")
	if r.err != nil || r.status == 200 && strings.Contains(r.body, "only-here.git") {
		t.Fatalf("%d %v %q: gitweb saw a GITWEB_CONFIG given only at start-up", r.status, r.err, clip(r.body))
	}
}
