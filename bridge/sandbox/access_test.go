package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckAccessAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it checks as nobody (run the suite as root, as test/run does)")
	}
	nobody, err := LookupIdentity("nobody", "")
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "cgb-access-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	mk := func(p string, mode os.FileMode) string {
		p = filepath.Join(base, p)
		if err := os.MkdirAll(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	private := mk("private", 0o700)
	inside := mk("private/cgi bin", 0o755) // a space, passed as an argument
	open := mk("open dir", 0o755)
	searchOnly := mk("search-only", 0o711)
	readonly := mk("readonly", 0o755)
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name             string
		need             Need
		blocked, missing string // "" when it passes
	}{
		{"reachable", Need{Path: open + "/", Mode: unix.R_OK | unix.X_OK, What: "--root"}, "", ""},
		{"the root directory", Need{Path: "/", Mode: unix.X_OK, What: "--root"}, "", ""},
		{"search only is enough to reach", Need{Path: searchOnly, Mode: unix.X_OK, What: "--root"}, "", ""},
		{"cannot read a search-only directory", Need{Path: searchOnly, Mode: unix.R_OK, What: "--root"}, searchOnly, "read"},
		{"below a 0700 directory", Need{Path: inside, Mode: unix.X_OK, What: "--root"}, private, "search"},
		{"through a link to it: the directory is named", Need{Path: filepath.Join(link, "cgi bin"), Mode: unix.X_OK, What: "--root"}, private, "search"},
		{"not writable", Need{Path: readonly, Mode: unix.W_OK, What: "--temp-dir"}, readonly, "write"},
		{"missing", Need{Path: filepath.Join(open, "nope"), Mode: unix.X_OK, What: "--root"}, filepath.Join(open, "nope"), "exist"},
	} {
		err := CheckAccess(nobody, []Need{{Path: "/", Mode: unix.X_OK, What: "first"}, c.need})
		var ae *AccessError
		switch {
		case c.blocked == "" && err != nil:
			t.Errorf("%s: %v, want no refusal", c.name, err)
		case c.blocked == "":
		case !errors.As(err, &ae):
			t.Errorf("%s: %v, want an AccessError", c.name, err)
		case ae.Need != c.need || ae.Blocked != c.blocked || ae.Missing != c.missing || ae.User.Name != "nobody":
			t.Errorf("%s: %+v, want need %v blocked %s missing %s", c.name, ae, c.need, c.blocked, c.missing)
		}
	}
	if err := CheckAccess(nil, []Need{{Path: inside, Mode: unix.X_OK, What: "--root"}}); err != nil {
		t.Errorf("as root: %v", err)
	}
	if err := CheckAccess(nobody, []Need{{Path: "relative", Mode: unix.X_OK, What: "--root"}}); err == nil {
		t.Error("a relative path was accepted")
	}
}
