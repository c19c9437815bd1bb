package devfront

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestMirrorGivesNobodyAHandle: the copy is root's and the programs'
// group's alone; nothing in it is writable by others, whatever the
// source's modes; links keep their owner and their meaning; fifos are not
// copied; edits and removals follow.
func TestMirrorGivesNobodyAHandle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the mirror is for a root bridge (run the suite as root, as test/run does)")
	}
	base := t.TempDir()
	src := filepath.Join(base, "src")
	write := func(rel, data string, mode os.FileMode) {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	write("hello.sh", "#!/bin/sh\n", 0o755)
	write("uploads/keep", "x", 0o666)
	os.Chmod(filepath.Join(src, "uploads"), 0o777)
	write("lib/helper.py", "x = 1\n", 0o644)
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o755)
	links := map[string]string{
		"inside-rel":  "lib/helper.py",                     // stays relative
		"inside-abs":  filepath.Join(src, "lib/helper.py"), // into the copy
		"outside-rel": "../outside",                        // the absolute path it led to
		"outside-abs": "/usr/bin/id",                       // kept
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(src, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.Lchown(filepath.Join(src, "outside-abs"), 65534, 65534)
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	m, err := NewMirror(src, 65534, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		m.Close()
		if _, err := os.Stat(m.Dir()); err == nil {
			t.Error("the copy is left after Close")
		}
	}()
	dir := m.Dir()
	fi, err := os.Stat(dir)
	if st := fi.Sys().(*syscall.Stat_t); err != nil || fi.Mode().Perm() != 0o750 || st.Uid != 0 || st.Gid != 65534 {
		t.Errorf("the copy's top directory: %v uid %d gid %d, want 0750 root:65534", fi.Mode(), st.Uid, st.Gid)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s is writable by group or others: %v", p, fi.Mode())
		}
		return nil
	})
	want := map[string]string{
		"inside-rel":  "lib/helper.py",
		"inside-abs":  filepath.Join(dir, "lib/helper.py"),
		"outside-rel": outside,
		"outside-abs": "/usr/bin/id",
	}
	for name, target := range want {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != target {
			t.Errorf("link %s in the copy -> %q (%v), want %q", name, got, err, target)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dir, "outside-abs"), &st); err != nil || st.Uid != 65534 {
		t.Errorf("a link nobody owned is uid %d in the copy (%v): its owner must stay", st.Uid, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "fifo")); err == nil {
		t.Error("a fifo was copied")
	}

	// Edits, additions and removals follow, through the watcher.
	write("hello.sh", "#!/bin/sh\necho v2\n", 0o755)
	write("new.sh", "#!/bin/sh\n", 0o755)
	os.Remove(filepath.Join(src, "lib/helper.py"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(dir, "hello.sh"))
		_, newErr := os.Stat(filepath.Join(dir, "new.sh"))
		_, goneErr := os.Stat(filepath.Join(dir, "lib/helper.py"))
		if strings.Contains(string(data), "v2") && newErr == nil && os.IsNotExist(goneErr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy did not follow: hello.sh %q, new.sh %v, helper.py %v", data, newErr, goneErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
