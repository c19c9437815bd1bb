// Package e2e tests cgibridge end to end: a real nginx in front of the built binary,
// real CGI programs behind it, and net/http clients asking what a user would ask.
//
// This file holds the shared set-up: the script tree each test serves, and a stack
// of bridges behind one nginx.
package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// tree is a served directory layout: Base is the nginx document root, Root the
// cgi-bin root under it, Outside a sibling directory the bridge must not run from.
type tree struct {
	Base    string
	Root    string // Base/cgi-bin
	Outside string // Base/outside
	Marker  string // file outside.cgi creates when it runs
}

// newTree builds a fresh world-readable tree: the legacy examples and this
// package's testdata scripts in cgi-bin, hello.c compiled to hello.cgi, a
// subdirectory, a symlink to a program outside the root, and that program, which
// leaves a marker file when it runs.
func newTree(t *testing.T) *tree {
	t.Helper()
	base, err := os.MkdirTemp("", "cgb-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	// Scripts run as nobody, which must be able to reach them.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := &tree{
		Base:    base,
		Root:    filepath.Join(base, "cgi-bin"),
		Outside: filepath.Join(base, "outside"),
	}
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{tr.Root, tr.Outside, filepath.Join(tr.Root, "subdir")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyDir(t, filepath.Join(repo, "legacy-examples", "cgi-bin"), tr.Root)
	copyDir(t, filepath.Join("testdata", "cgi-bin"), tr.Root)

	// Modes the tests depend on are set here rather than trusted to the checkout.
	for name, mode := range map[string]os.FileMode{
		"noshebang.py":  0o644,
		"info.php":      0o644,
		"plain.txt":     0o644,
		"noshebang.cgi": 0o755,
	} {
		if err := os.Chmod(filepath.Join(tr.Root, name), mode); err != nil {
			t.Fatal(err)
		}
	}

	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not installed: apt-get install gcc")
	}
	cc := exec.Command(gcc, "-O2", "-o", filepath.Join(tr.Root, "hello.cgi"), filepath.Join(tr.Root, "hello.c"))
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("compile hello.c: %v\n%s", err, out)
	}

	// outside.cgi records that it ran in a directory nobody may write to.
	markDir := filepath.Join(tr.Outside, "marks")
	if err := os.Mkdir(markDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(markDir, harness.NobodyUID, harness.NobodyUID); err != nil {
		t.Fatal(err)
	}
	tr.Marker = filepath.Join(markDir, "ran")
	outside := fmt.Sprintf("#!/bin/sh\n# outside.cgi: lives outside the root; leaves a marker when run.\n"+
		"touch %s\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho outside ran\n", tr.Marker)
	writeFile(t, filepath.Join(tr.Outside, "outside.cgi"), outside, 0o755)
	if err := os.Symlink(filepath.Join(tr.Outside, "outside.cgi"), filepath.Join(tr.Root, "link.cgi")); err != nil {
		t.Fatal(err)
	}
	return tr
}

// ran reports whether outside.cgi has run, and clears the marker for the next check.
func (tr *tree) ran(t *testing.T) bool {
	t.Helper()
	_, err := os.Stat(tr.Marker)
	if err == nil {
		_ = os.Remove(tr.Marker)
		return true
	}
	return false
}

// copyDir copies the regular files of src into dst, keeping their mode bits.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, e.Name()), string(data), info.Mode().Perm())
	}
}

// writeFile writes data to path with exactly mode (no umask).
func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// upstream is one bridge behind the shared nginx. Requests for /cgi-bin/... go to the
// upstream with an empty Prefix; /PREFIX/cgi-bin/... goes to the one with that
// Prefix, with Extra appended to its location block.
type upstream struct {
	Prefix string
	Args   []string
	Env    []string
	Extra  string
	Via    *upstream // route to this earlier upstream's bridge instead of starting one

	Bridge *harness.Bridge
}

// stack starts every upstream's bridge (with --root tr.Root and a sane PATH) and one
// nginx serving tr.Base that routes to them.
func stack(t *testing.T, tr *tree, ups ...*upstream) *harness.Nginx {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "root %s;\n", tr.Base)
	// Nothing is served statically: a request that nginx normalises out of
	// /cgi-bin/ must not show the scripts' source either.
	b.WriteString("location / {\nreturn 404;\n}\n")
	for _, u := range ups {
		if u.Via != nil {
			u.Bridge = u.Via.Bridge
		} else {
			args := append([]string{"--root", tr.Root}, u.Args...)
			u.Bridge = harness.StartBridge(t, args, append([]string{harness.SafePath}, u.Env...)...)
		}
		if u.Prefix == "" {
			fmt.Fprintf(&b, "location /cgi-bin/ {\n%s"+
				"fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"+
				"%s\nfastcgi_pass unix:%s;\n}\n", harness.FastCGIParams(), u.Extra, u.Bridge.Socket)
			continue
		}
		// The script part of the URI after the prefix becomes SCRIPT_NAME and, under
		// the document root, SCRIPT_FILENAME; later params override the standard ones.
		fmt.Fprintf(&b, "location ~ ^/%s(/cgi-bin/.*)$ {\n%s"+
			"fastcgi_param SCRIPT_NAME $1;\n"+
			"fastcgi_param SCRIPT_FILENAME $document_root$1;\n"+
			"%s\nfastcgi_pass unix:%s;\n}\n", u.Prefix, harness.FastCGIParams(), u.Extra, u.Bridge.Socket)
	}
	return harness.StartNginx(t, b.String())
}

// client is the HTTP client every test uses: no redirect following (the tests look
// at redirects themselves) and a timeout so a hang fails instead of stalling.
var client = &http.Client{
	Timeout: 60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// response is what a test looks at.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// do sends req and reads the whole response.
func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// get fetches url.
func get(t *testing.T, url string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// post sends body to url with the given content type.
func post(t *testing.T, url, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	return do(t, req)
}

// envOf parses env.cgi's output (NAME=value per line) into a map.
func envOf(body string) map[string]string {
	env := make(map[string]string)
	for line := range strings.Lines(body) {
		name, value, ok := strings.Cut(strings.TrimRight(line, "\n"), "=")
		if ok {
			env[name] = value
		}
	}
	return env
}

// waitLog waits briefly for the bridge's log to contain every one of subs on one
// line (the bridge logs after it has answered, so the line may trail the response).
func waitLog(t *testing.T, b *harness.Bridge, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for line := range strings.Lines(b.Logs.String()) {
			if containsAll(line, subs) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("bridge log has no line containing all of %q", subs)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
