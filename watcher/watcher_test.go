package watcher

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// next waits for one batch of changes or fails.
func next(t *testing.T, w *Watcher) []string {
	t.Helper()
	select {
	case got, ok := <-w.Changes():
		if !ok {
			t.Fatal("Changes closed")
		}
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
		return nil
	}
}

// expect waits until exactly the paths want have been reported (in one
// batch or several, as the debounce splits them) and fails on any other.
func expect(t *testing.T, w *Watcher, what string, want ...string) {
	t.Helper()
	var got []string
	for len(got) < len(want) {
		for _, p := range next(t, w) {
			if !slices.Contains(want, p) || slices.Contains(got, p) {
				t.Fatalf("%s: got %v after %v, want %v", what, p, got, want)
			}
			got = append(got, p)
		}
	}
}

// sentinel proves that nothing else was reported before it: it changes a
// watched file of its own and expects that file alone as the next batch.
// An unwanted report would arrive before, or merged with, the sentinel's,
// so no fixed sleep is needed to show an absence.
func sentinel(t *testing.T, w *Watcher, path string) {
	t.Helper()
	write(t, path, time.Now().String())
	expect(t, w, "sentinel", path)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var modes = []struct {
	name string
	opts Options
}{
	{"fsnotify", Options{Debounce: 30 * time.Millisecond}},
	{"poll", Options{Poll: 20 * time.Millisecond}},
}

func TestReportsChanges(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "config.json")
			other := filepath.Join(dir, "other.txt")
			mark := filepath.Join(t.TempDir(), "sentinel")
			write(t, cfg, "{}")
			w, err := Files([]string{cfg, mark}, mode.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()

			write(t, cfg, `{"a": 1}`)
			expect(t, w, "in-place edit", cfg)
			// An editor's save: write a temp file, rename it over.
			tmp := filepath.Join(dir, ".config.json.swp")
			write(t, tmp, `{"a": 2}`)
			if err := os.Rename(tmp, cfg); err != nil {
				t.Fatal(err)
			}
			expect(t, w, "rename over", cfg)
			// Another file in the same directory is not reported.
			write(t, other, "x")
			sentinel(t, w, mark)
			// Removal is a change too.
			os.Remove(cfg)
			expect(t, w, "remove", cfg)
		})
	}
}

func TestDebouncesBursts(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c")
	mark := filepath.Join(dir, "sentinel")
	write(t, cfg, "0")
	w, err := Files([]string{cfg, mark}, Options{Debounce: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 10 {
		write(t, cfg, string(rune('a'+i)))
	}
	expect(t, w, "burst", cfg)
	// One report for the burst: the next one is the sentinel's alone.
	sentinel(t, w, mark)
}

func TestUnchangedSignatureNotReported(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c")
	mark := filepath.Join(dir, "sentinel")
	write(t, cfg, "0")
	w, err := Files([]string{cfg, mark}, Options{Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Opening for reading, and touching another file's events, change no
	// signature of cfg.
	f, err := os.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	sentinel(t, w, mark)
}

// TestFileAppearingLater pins a file whose directory does not exist yet:
// the watch follows the directories as they are made, and a directory
// removed and made again is watched again.
func TestFileAppearingLater(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			base := t.TempDir()
			file := filepath.Join(base, "a", "b", "prog")
			w, err := Files([]string{file}, mode.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, file, "v1")
			expect(t, w, "created under new directories", file)
			if err := os.RemoveAll(filepath.Join(base, "a")); err != nil {
				t.Fatal(err)
			}
			expect(t, w, "removed with its directory", file)
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, file, "v2")
			expect(t, w, "made again", file)
			write(t, file, "v3, longer")
			expect(t, w, "edited in the new directory", file)
		})
	}
}

// TestTree pins trees: files made, edited, renamed and removed anywhere
// under the root, directories made later included, are reported.
func TestTree(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			root := t.TempDir()
			old := filepath.Join(root, "old.py")
			write(t, old, "x = 1")
			w, err := New(mode.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.AddTree(root); err != nil {
				t.Fatal(err)
			}
			write(t, old, "x = 2")
			expect(t, w, "edit", old)
			sub := filepath.Join(root, "pkg", "deep")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			mod := filepath.Join(sub, "mod.py")
			write(t, mod, "y = 1")
			expect(t, w, "new file in a new directory", mod)
			write(t, mod, "y = 22")
			expect(t, w, "edit in the new directory", mod)
			moved := filepath.Join(root, "moved.py")
			if err := os.Rename(old, moved); err != nil {
				t.Fatal(err)
			}
			expect(t, w, "rename", moved, old)
			if err := os.RemoveAll(filepath.Join(root, "pkg")); err != nil {
				t.Fatal(err)
			}
			expect(t, w, "removed directory", mod)
		})
	}
}

func TestAddTreeNeedsADirectory(t *testing.T) {
	w, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.AddTree("/nonexistent-dir-cgibridge"); err == nil {
		t.Fatal("watching a missing tree succeeded")
	}
}

func TestCloseClosesChanges(t *testing.T) {
	dir := t.TempDir()
	w, err := Files([]string{filepath.Join(dir, "c")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, ok := <-w.Changes(); ok {
		t.Fatal("Changes still open after Close")
	}
}
