// This file holds the git smart-HTTP test: clone, push a few MiB and clone again
// through nginx and git-http-backend run by the bridge.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

func TestGitCloneAndPushThroughHTTPBackend(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git not installed: apt-get install git")
	}
	if _, err := os.Stat(gitHTTPBackend); err != nil {
		t.Fatalf("git-http-backend missing (apt-get install git): %v", err)
	}
	tr := newTree(t)
	projects := filepath.Join(tr.Base, "git")
	if err := os.Mkdir(projects, 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(tr.Base, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gitBin, args...)
		cmd.Dir = dir
		cmd.Env = []string{
			harness.SafePath, "HOME=" + home, "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.org",
			"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.org",
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	bare := filepath.Join(projects, "project.git")
	git(projects, "init", "--quiet", "--bare", "--initial-branch=main", bare)
	// Anonymous push is what this test is about; without REMOTE_USER
	// git-http-backend only allows it when told to.
	git(projects, "config", "--file", filepath.Join(bare, "config"), "http.receivepack", "true")
	chownTree(t, bare, harness.NobodyUID)

	b := harness.StartBridge(t, []string{"--root", tr.Root, "--allow", gitHTTPBackend}, harness.SafePath)
	ngx := harness.StartNginx(t, fmt.Sprintf(`
location ~ ^/git(/.*)$ {
    client_max_body_size 0;
%s
    fastcgi_param SCRIPT_FILENAME %s;
    fastcgi_param GIT_PROJECT_ROOT %s;
    fastcgi_param GIT_HTTP_EXPORT_ALL "";
    fastcgi_param PATH_INFO $1;
    fastcgi_param REMOTE_USER $remote_user;
    fastcgi_pass unix:%s;
}`, harness.FastCGIParams(), gitHTTPBackend, projects, b.Socket))
	repoURL := ngx.URL + "/git/project.git"

	// GIT_HTTP_EXPORT_ALL arrives with an empty value, as in the shipped nginx.conf:
	// git-http-backend only checks that it is set. (Once a bug: the bridge
	// dropped every empty param, so the variable never reached the program and
	// git-http-backend refused to export the repository: the clone failed.)

	work := filepath.Join(tr.Base, "work")
	git(tr.Base, "clone", "--quiet", repoURL, work)
	data, _ := randomBody(3<<20, 7)
	if err := os.WriteFile(filepath.Join(work, "blob.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	git(work, "add", "blob.bin")
	git(work, "commit", "--quiet", "-m", "a few MiB of random data")
	git(work, "push", "--quiet", "origin", "HEAD:refs/heads/main")

	again := filepath.Join(tr.Base, "again")
	git(tr.Base, "clone", "--quiet", repoURL, again)
	got, err := os.ReadFile(filepath.Join(again, "blob.bin"))
	if err != nil {
		t.Fatalf("second clone lacks the pushed file: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("second clone's blob.bin differs from what was pushed (%d bytes, want %d)", len(got), len(data))
	}
	if a, b := git(work, "rev-parse", "HEAD"), git(again, "rev-parse", "HEAD"); a != b {
		t.Errorf("second clone at %s, pushed %s", b, a)
	}
}

// chownTree gives dir and everything under it to uid (and the same gid).
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
	if err != nil {
		t.Fatalf("chown %s: %v", dir, err)
	}
}
