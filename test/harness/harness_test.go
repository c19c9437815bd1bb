// This file tests finding the module root and building the cgibridge binary.
package harness

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRepoRootIsTheModuleContainingThisPackage(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "test", "harness", "harness.go")); err != nil {
		t.Errorf("RepoRoot() = %s, which does not hold test/harness: %v", root, err)
	}
	if _, ok := findModuleRoot(t.TempDir()); ok {
		t.Error("findModuleRoot found a module above a temp dir")
	}
}

func TestBinaryBuildsOnceAndIsExecutable(t *testing.T) {
	first := MustBinary(t)
	second, err := Binary()
	if err != nil || second != first {
		t.Fatalf("second Binary() = %q, %v; want the first build %q", second, err, first)
	}
	fi, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable: %v", first, fi.Mode())
	}
}
