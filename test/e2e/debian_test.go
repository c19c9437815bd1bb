// This file holds the tests of Debian's /usr/lib/cgi-bin, where packages
// install their CGI programs as symlinks into /usr/bin and /usr/share: by
// default such a link is refused with a log line naming its target and the
// flags that would allow it; --allow-packaged-links serves it, and still
// refuses links that someone other than root could have made.
package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

const debianCGIBin = "/usr/lib/cgi-bin"

// debianMapserv is the link Debian's cgi-mapserver installs (test/run
// installs the package).
func debianMapserv(t *testing.T) string {
	t.Helper()
	link := filepath.Join(debianCGIBin, "mapserv")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is not Debian's symlink (%v): apt-get install cgi-mapserver", link, err)
	}
	return link
}

func TestDebianCGIBinLinksRefusedByDefaultWithTheFix(t *testing.T) {
	debianMapserv(t)
	b := harness.StartBridge(t, []string{"--root", debianCGIBin})
	if got := rawStatus(t, b.Socket, debianCGIBin, "mapserv"); got != 403 {
		t.Errorf("mapserv: status %d, want 403", got)
	}
	if a := rawAnswer(t, b.Socket, debianCGIBin, "mapserv"); strings.Contains(a, "/usr/bin") {
		t.Errorf("the client is told where the link leads:\n%s", a)
	}
	// The log names where the link leads and what would allow it; the
	// client's answer does not.
	waitLog(t, b, "symlink leads outside root", "it leads to /usr/bin/mapserv", "--allow /usr/bin/mapserv", "--allow-packaged-links")
}

func TestDebianCGIBinServedWithAllowPackagedLinks(t *testing.T) {
	debianMapserv(t)
	b := harness.StartBridge(t, []string{"--root", debianCGIBin, "--allow-packaged-links"})
	body := rawBody(t, b.Socket, debianCGIBin, "mapserv")
	if !strings.Contains(body, "MapServer") {
		t.Errorf("mapserv through the link did not run; answer:\n%s", body)
	}
	waitLog(t, b, "uri=/mapserv", "status=200", "runner=exec")
}

// The policy is about who made the link: one owned by another user, or
// one leading to a program in a directory others may write, stays refused.
func TestAllowPackagedLinksRefusesLinksOthersCouldMake(t *testing.T) {
	needRoot(t)
	mapserv := debianMapserv(t)
	tr := newTree(t)
	// Root's link to a packaged program: served.
	if err := os.Symlink(mapserv, filepath.Join(tr.Root, "maps.cgi")); err != nil {
		t.Fatal(err)
	}
	// The same link, but nobody's: refused.
	theirs := filepath.Join(tr.Root, "theirs.cgi")
	if err := os.Symlink(mapserv, theirs); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// Root's links to two copies of a program in directories only root
	// may write (under /run, root's 0755), except that one of them is
	// made 0777: that one is refused, its twin served.
	sys, err := os.MkdirTemp("/run", "cgb-packaged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sys) })
	os.Chmod(sys, 0o755)
	for _, d := range []struct {
		dir  string
		mode os.FileMode
	}{{"closed", 0o755}, {"open", 0o777}} {
		dir := filepath.Join(sys, d.dir)
		if err := os.Mkdir(dir, d.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, d.mode)
		writeFile(t, filepath.Join(dir, "prog"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nran\\n'\n", 0o755)
		if err := os.Symlink(filepath.Join(dir, "prog"), filepath.Join(tr.Root, d.dir+".cgi")); err != nil {
			t.Fatal(err)
		}
	}
	b := harness.StartBridge(t, []string{"--root", tr.Root, "--allow-packaged-links"})
	if body := rawBody(t, b.Socket, tr.Root, "maps.cgi"); !strings.Contains(body, "MapServer") {
		t.Errorf("root's link to mapserv not served; answer:\n%s", body)
	}
	if body := rawBody(t, b.Socket, tr.Root, "closed.cgi"); !strings.Contains(body, "ran") {
		t.Errorf("root's link to a program in a root-only directory not served; answer:\n%s", body)
	}
	for _, name := range []string{"theirs.cgi", "open.cgi"} {
		if got := rawStatus(t, b.Socket, tr.Root, name); got != 403 {
			t.Errorf("%s: status %d, want 403", name, got)
		}
		waitLog(t, b, "symlink leads outside root", name, "--allow-packaged-links does not cover it")
	}
}
