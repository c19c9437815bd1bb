// This file holds the Mirror: a copy of a cgi-bin root, kept in sync with
// it, for a development bridge started as root from a checkout its
// programs' user cannot enter (a clone in /root, mode 0700). The programs
// run from the copy as nobody; the bridge, which keeps root to read the
// original, copies every change it sees.

package devfront

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
)

// Bounds of what a mirror copies: a development tree, not a file server.
const (
	mirrorMaxFiles = 10000
	mirrorMaxBytes = 256 << 20
)

// Mirror is a synchronised copy of a directory tree.
type Mirror struct {
	src, dir string
	log      hclog.Logger
	w        *watcher.Watcher
	mu       sync.Mutex // one sync at a time
	done     chan struct{}
}

// NewMirror copies src into a new directory under the system's temporary
// directory, readable by every user as far as src's own modes allow, and
// keeps it in sync until Close.
func NewMirror(src string, log hclog.Logger) (*Mirror, error) {
	dir, err := os.MkdirTemp("", "cgibridge-root-")
	if err != nil {
		return nil, fmt.Errorf("make a copy of %s: %w", src, err)
	}
	m := &Mirror{src: src, dir: dir, log: log, done: make(chan struct{})}
	if err := os.Chmod(dir, 0o755); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.Sync(); err != nil {
		m.Close()
		return nil, err
	}
	w, err := watcher.New(watcher.Options{Log: log.Named("watch"), Debounce: 50 * time.Millisecond})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("watch %s: %w", src, err)
	}
	if err := w.AddTree(src); err != nil {
		w.Close()
		m.Close()
		return nil, fmt.Errorf("watch %s: %w", src, err)
	}
	m.w = w
	go m.follow()
	return m, nil
}

// Dir is the copy's path.
func (m *Mirror) Dir() string { return m.dir }

// Source is the directory copied.
func (m *Mirror) Source() string { return m.src }

// Close stops following changes and removes the copy.
func (m *Mirror) Close() error {
	if m.w != nil {
		m.w.Close()
		<-m.done
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return os.RemoveAll(m.dir)
}

func (m *Mirror) follow() {
	defer close(m.done)
	for changed := range m.w.Changes() {
		if err := m.Sync(); err != nil {
			m.log.Error("cannot update the copy of the root; it serves what it had", "error", err)
			continue
		}
		m.log.Debug("copy of the root updated", "changed", changed)
	}
}

// Sync makes the copy equal to the source: new and changed files copied
// (by size, mtime and mode), vanished ones removed, symlinks recreated.
func (m *Mirror) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	files, bytes := 0, int64(0)
	seen := map[string]bool{}
	err := filepath.WalkDir(m.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(m.src, p)
		if err != nil {
			return err
		}
		seen[rel] = true
		if files++; files > mirrorMaxFiles {
			return fmt.Errorf("more than %d files: too many to copy (pass --user for a user who can read the root instead)", mirrorMaxFiles)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(m.dir, rel)
		switch {
		case rel == ".":
			return nil
		case fi.IsDir():
			return syncDir(dst, fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			return syncLink(p, dst)
		case fi.Mode().IsRegular():
			if bytes += fi.Size(); bytes > mirrorMaxBytes {
				return fmt.Errorf("more than %d MiB: too much to copy (pass --user for a user who can read the root instead)", mirrorMaxBytes>>20)
			}
			return syncFile(p, dst, fi)
		}
		return nil // fifos, sockets, devices: not programs
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", m.src, err)
	}
	// Remove what the source no longer has, deepest first.
	var gone []string
	filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if rel, _ := filepath.Rel(m.dir, p); !seen[rel] {
			gone = append(gone, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	for _, p := range gone {
		os.RemoveAll(p)
	}
	return nil
}

func syncDir(dst string, perm fs.FileMode) error {
	fi, err := os.Lstat(dst)
	if err == nil && !fi.IsDir() {
		os.Remove(dst)
	}
	if err := os.Mkdir(dst, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dst, perm)
}

func syncLink(src, dst string) error {
	target, err := os.Readlink(src)
	if err != nil {
		return err
	}
	if cur, err := os.Readlink(dst); err == nil && cur == target {
		return nil
	}
	os.RemoveAll(dst)
	return os.Symlink(target, dst)
}

// syncFile copies src over dst unless dst already has its size, mtime and
// mode. The copy is written beside dst and renamed over it, so a program
// starting meanwhile sees the old file or the new one, never half of one.
func syncFile(src, dst string, fi fs.FileInfo) error {
	if cur, err := os.Lstat(dst); err == nil && cur.Mode().IsRegular() && cur.Mode().Perm() == fi.Mode().Perm() && cur.Size() == fi.Size() && cur.ModTime().Equal(fi.ModTime()) {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".cgibridge-copy"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, fi.Mode().Perm())
	}
	if err == nil {
		err = os.Chtimes(tmp, fi.ModTime(), fi.ModTime())
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
