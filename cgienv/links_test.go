package cgienv

import (
	"os"
	"path/filepath"
	"testing"
)

// rootOnlyBase makes a directory only root can write, under /run (itself
// root's, 0755), as a package's directories are.
func rootOnlyBase(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the rule is about what only root could have made (run the suite as root, as test/run does)")
	}
	dir, err := os.MkdirTemp("/run", "cgb-links-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPackagedLink(t *testing.T) {
	base := rootOnlyBase(t)
	mk := func(p string, mode os.FileMode) string {
		p = filepath.Join(base, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // past the umask
		return p
	}
	link := func(name, target string, uid int) string {
		p := filepath.Join(base, "root", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prog := mk("sys/bin/prog", 0o755)
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	openProg := mk("open/prog", 0o755)
	writable := mk("sys/bin/writable", 0o757)
	// A chain through a directory symlink another user owns: they choose
	// where it leads.
	if err := os.Symlink(filepath.Join(base, "sys"), filepath.Join(base, "theirs")); err != nil {
		t.Fatal(err)
	}
	os.Lchown(filepath.Join(base, "theirs"), 65534, 65534)
	// A chain through a root-owned directory symlink (as /etc/alternatives
	// leads on): fine.
	if err := os.Symlink(filepath.Join(base, "sys"), filepath.Join(base, "alt")); err != nil {
		t.Fatal(err)
	}
	hop := link("hop", filepath.Join(base, "alt", "bin", "prog"), 0)
	viaTheirs := link("via-theirs", filepath.Join(base, "theirs", "bin", "prog"), 0)
	for _, c := range []struct {
		name, link, target string
		want               bool
	}{
		{"root's link to root's program", link("ok", prog, 0), prog, true},
		{"relative link", link("rel", "../sys/bin/prog", 0), prog, true},
		{"root's link through root's directory link", hop, prog, true},
		{"link owned by nobody", link("nobodys", prog, 65534), prog, false},
		{"program in a directory anyone may write", link("open", openProg, 0), openProg, false},
		{"program others may write", link("writable", writable, 0), writable, false},
		{"through a directory link nobody owns", viaTheirs, prog, false},
		{"target not what the walk resolved", link("other", prog, 0), writable, false},
	} {
		if got := packagedLink(c.link, c.target); got != c.want {
			t.Errorf("%s: packagedLink = %v, want %v", c.name, got, c.want)
		}
	}
}
