package watcher

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// next waits for one batch of changes or fails.
func next(t *testing.T, w *Watcher) []string {
	t.Helper()
	select {
	case got := <-w.Changes():
		return got
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported")
		return nil
	}
}

// quiet fails if a change is reported within d.
func quiet(t *testing.T, w *Watcher, d time.Duration) {
	t.Helper()
	select {
	case got := <-w.Changes():
		t.Fatalf("unexpected change %v", got)
	case <-time.After(d):
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReportsChanges(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts Options
	}{
		{"fsnotify", Options{Debounce: 50 * time.Millisecond}},
		{"poll", Options{Poll: 20 * time.Millisecond}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "config.json")
			other := filepath.Join(dir, "other.txt")
			write(t, cfg, "{}")
			w, err := New([]string{cfg}, mode.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()

			// In-place edit.
			write(t, cfg, `{"a": 1}`)
			if got := next(t, w); !reflect.DeepEqual(got, []string{cfg}) {
				t.Fatalf("in-place edit: got %v", got)
			}
			// An editor's save: write a temp file, rename it over.
			tmp := filepath.Join(dir, ".config.json.swp")
			write(t, tmp, `{"a": 2}`)
			if err := os.Rename(tmp, cfg); err != nil {
				t.Fatal(err)
			}
			if got := next(t, w); !reflect.DeepEqual(got, []string{cfg}) {
				t.Fatalf("rename over: got %v", got)
			}
			// Another file in the same directory is not reported.
			write(t, other, "x")
			quiet(t, w, 300*time.Millisecond)
			// Removal is a change too.
			os.Remove(cfg)
			if got := next(t, w); !reflect.DeepEqual(got, []string{cfg}) {
				t.Fatalf("remove: got %v", got)
			}
		})
	}
}

func TestDebouncesBursts(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c")
	write(t, cfg, "0")
	w, err := New([]string{cfg}, Options{Debounce: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 10 {
		write(t, cfg, string(rune('a'+i)))
		time.Sleep(10 * time.Millisecond)
	}
	if got := next(t, w); len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	quiet(t, w, 400*time.Millisecond)
}

func TestUnchangedSignatureNotReported(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c")
	write(t, cfg, "0")
	w, err := New([]string{cfg}, Options{Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Opening for reading produces no modify event and no change.
	f, err := os.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	quiet(t, w, 200*time.Millisecond)
}

func TestMissingDirectoryIsAnError(t *testing.T) {
	if _, err := New([]string{"/nonexistent-dir-cgibridge/x"}, Options{}); err == nil {
		t.Fatal("watching a file in a missing directory succeeded")
	}
}

func TestCloseClosesChanges(t *testing.T) {
	dir := t.TempDir()
	w, err := New([]string{filepath.Join(dir, "c")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, ok := <-w.Changes(); ok {
		t.Fatal("Changes still open after Close")
	}
}
