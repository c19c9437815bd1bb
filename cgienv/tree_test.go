// This file builds the temporary directory tree the Resolve tests and fuzz target
// run against: scripts, directories, symlinks in and out of the root, a fifo.

package cgienv

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// testTree is a fixture: Top holds root/ (the cgi-bin root), root2/ (a sibling
// whose name has root as a prefix) and outside/ (never allowed except allowed/
// and prog).
type testTree struct {
	Top, Root string
}

func newTestTree(tb testing.TB) testTree {
	tb.Helper()
	top, err := filepath.EvalSymlinks(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tr := testTree{Top: top, Root: filepath.Join(top, "root")}
	files := []struct {
		path string
		mode os.FileMode
		body string
	}{
		{"root/t.cgi", 0o755, "#!/bin/sh\necho\n"},
		{"root/nph-x.cgi", 0o755, "#!/bin/sh\n"},
		{"root/plain.txt", 0o644, "text\n"},
		{"root/nosh.py", 0o644, "print(1)\n"},
		{"root/sh.py", 0o755, "#!/usr/bin/python3 -u\n"},
		{"root/noshx.py", 0o755, "print(2)\n"},
		{"root/UPPER.PY", 0o644, "print(3)\n"},
		{"root/page.php", 0o644, "<?php echo 1;\n"},
		{"root/empty.sh", 0o755, ""},
		{"root/%2e%2e", 0o755, "#!/bin/sh\n"},
		{"root/sub/s.cgi", 0o755, "#!/bin/sh\n"},
		{"root2/r.cgi", 0o755, "#!/bin/sh\n"},
		{"outside/evil.cgi", 0o755, "#!/bin/sh\n"},
		{"outside/prog", 0o755, "#!/bin/sh\n"},
		{"outside/allowed/a.cgi", 0o755, "#!/bin/sh\n"},
	}
	for _, f := range files {
		p := filepath.Join(top, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // umask must not decide the exec bit
			tb.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(top, "root/sub/deeper"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(top, "root/fifo"), 0o755); err != nil {
		tb.Fatal(err)
	}
	links := []struct{ name, target string }{
		{"root/in-link.cgi", "t.cgi"},
		{"root/out-link.cgi", "../outside/evil.cgi"},
		{"root/abs-out.cgi", filepath.Join(top, "outside/evil.cgi")},
		{"root/root2-link.cgi", "../root2/r.cgi"},
		{"root/out-dir", "../outside"},
		{"root/in-dir", "sub"},
		{"root/up-dir", ".."},
		{"root/loop", "loop"},
		{"root/dangling.cgi", "../outside/missing.cgi"},
		{"alink", "outside/prog"},
	}
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(top, l.name)); err != nil {
			tb.Fatal(err)
		}
	}
	return tr
}

// config returns a validated Config over the tree with the default interpreters.
func (tr testTree) config(tb testing.TB) *Config {
	tb.Helper()
	c := &Config{
		Root:           tr.Root,
		Allow:          []string{filepath.Join(tr.Top, "outside/allowed"), filepath.Join(tr.Top, "alink")},
		Interpreters:   DefaultInterpreters(),
		PassEnv:        DefaultPassEnv(),
		ServerSoftware: "cgibridge/test",
	}
	if err := c.Validate(); err != nil {
		tb.Fatal(err)
	}
	return c
}

// expand replaces $R with the root and $T with the top of the tree.
func (tr testTree) expand(s string) string {
	return strings.NewReplacer("$R", tr.Root, "$T", tr.Top).Replace(s)
}
