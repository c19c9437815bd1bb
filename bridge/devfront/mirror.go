// This file holds the Mirror: a copy of a cgi-bin root, kept in sync with
// it, for a development bridge started as root from a checkout its
// programs' user cannot enter (a clone in /root, mode 0700). The programs
// run from the copy as that user; the bridge, which keeps root to read the
// original, copies every change it sees.
//
// Root writes the copy, so the copy must give no one else a handle on
// those writes: its top directory is root's, mode 0750, group the
// programs' group (other local users cannot even enter it); nothing in it
// is writable by group or others, whatever the source's modes; every
// write goes through an os.Root, so no path in it can lead outside; the
// source is read with O_NOFOLLOW and O_NONBLOCK, so a link or a fifo
// swapped in there reads nothing. Links keep their owner (the packaged-
// links rule looks at it) and their meaning: one that leads out of the
// source is written as the absolute path it led to.

package devfront

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/watcher"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Bounds of what a mirror copies: a development tree, not a file server.
const (
	mirrorMaxFiles = 10000
	mirrorMaxBytes = 256 << 20
)

// Mirror is a synchronised copy of a directory tree.
type Mirror struct {
	given string // the source as configured
	src   string // the same, symlinks resolved
	dir   string
	root  *os.Root // the copy; every write goes through it
	log   hclog.Logger
	w     *watcher.Watcher
	mu    sync.Mutex // one sync at a time
	done  chan struct{}
}

// NewMirror copies src into a new directory under the system's temporary
// directory that root and the group gid can read, and keeps it in sync
// until Close.
func NewMirror(src string, gid int, log hclog.Logger) (*Mirror, error) {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return nil, fmt.Errorf("make a copy of %s: %w", src, err)
	}
	dir, err := os.MkdirTemp("", "cgibridge-root-")
	if err != nil {
		return nil, fmt.Errorf("make a copy of %s: %w", src, err)
	}
	m := &Mirror{given: src, src: real, dir: dir, log: log, done: make(chan struct{})}
	fail := func(err error) (*Mirror, error) {
		m.Close()
		return nil, fmt.Errorf("make a copy of %s: %w", src, err)
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return fail(err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fail(err)
	}
	if m.root, err = os.OpenRoot(dir); err != nil {
		return fail(err)
	}
	// Watched before the first copy, so that no edit in between is missed.
	w, err := watcher.New(watcher.Options{Log: log.Named("watch"), Debounce: 50 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	if err := w.AddTree(real); err != nil {
		w.Close()
		return fail(err)
	}
	m.w = w
	if err := m.Sync(); err != nil {
		return fail(err)
	}
	go m.follow()
	return m, nil
}

// Dir is the copy's path.
func (m *Mirror) Dir() string { return m.dir }

// Source is the directory copied, as it was given.
func (m *Mirror) Source() string { return m.given }

// Close stops following changes and removes the copy.
func (m *Mirror) Close() error {
	if m.w != nil {
		m.w.Close()
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			// A sync stuck on the source (a hung file system): the copy
			// is removed all the same.
		}
	}
	if m.root != nil {
		m.root.Close()
	}
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
// (by size, mtime and mode), vanished ones removed, links recreated. An
// entry that cannot be copied is logged and skipped; only the bounds stop
// a sync.
func (m *Mirror) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	files, bytes := 0, int64(0)
	seen := map[string]bool{".": true}
	err := filepath.WalkDir(m.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			m.log.Warn("not copied", "path", p, "error", err)
			return nil
		}
		rel, err := filepath.Rel(m.src, p)
		if err != nil || rel == "." {
			return nil
		}
		if files++; files > mirrorMaxFiles {
			return fmt.Errorf("more than %d files: too many to copy (pass --user for a user who can read the root instead)", mirrorMaxFiles)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil // gone meanwhile
		}
		seen[rel] = true
		switch {
		case fi.IsDir():
			err = m.syncDir(rel, fi)
		case fi.Mode()&fs.ModeSymlink != 0:
			err = m.syncLink(p, rel, fi)
		case fi.Mode().IsRegular():
			if bytes += fi.Size(); bytes > mirrorMaxBytes {
				return fmt.Errorf("more than %d MiB: too much to copy (pass --user for a user who can read the root instead)", mirrorMaxBytes>>20)
			}
			err = m.syncFile(p, rel, fi)
		default:
			delete(seen, rel) // fifos, sockets, devices: not programs
		}
		if err != nil {
			m.log.Warn("not copied", "path", p, "error", err)
			if fi.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", m.src, err)
	}
	// Remove what the source no longer has, deepest first. The copy is
	// root's alone, so nothing changes under this walk but by root.
	var gone []string
	fs.WalkDir(m.root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil || rel == "." {
			return nil
		}
		if !seen[filepath.FromSlash(rel)] {
			gone = append(gone, rel)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	for _, rel := range gone {
		m.root.RemoveAll(rel)
	}
	return nil
}

// copyPerm is the mode a copy gets: the source's, without group or other
// write (only root writes the copy).
func copyPerm(fi fs.FileInfo) fs.FileMode { return fi.Mode().Perm() &^ 0o022 }

func (m *Mirror) syncDir(rel string, fi fs.FileInfo) error {
	if cur, err := m.root.Lstat(rel); err == nil && !cur.IsDir() {
		m.root.RemoveAll(rel)
	}
	if err := m.root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return m.root.Chmod(rel, copyPerm(fi))
}

// syncLink recreates the link at p as rel, with its meaning and its owner:
// a target inside the source stays as it is (the copy has the same
// shape), a relative one leading out of it becomes the absolute path it
// led to, an absolute one into the source points into the copy.
func (m *Mirror) syncLink(p, rel string, fi fs.FileInfo) error {
	target, err := os.Readlink(p)
	if err != nil {
		return err
	}
	abs := target
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(filepath.Dir(p), target)
	}
	switch {
	case within(abs, m.src) && filepath.IsAbs(target):
		target = filepath.Join(m.dir, strings.TrimPrefix(abs, m.src))
	case !within(abs, m.src):
		target = abs
	}
	if cur, err := m.root.Readlink(rel); err != nil || cur != target {
		m.root.RemoveAll(rel)
		if err := m.root.Symlink(target, rel); err != nil {
			return err
		}
	}
	st := fi.Sys().(*syscall.Stat_t)
	return m.root.Lchown(rel, int(st.Uid), int(st.Gid))
}

// syncFile copies the file at p over rel unless rel already has its size,
// mtime and mode. The copy is written beside rel and renamed over it, so a
// program starting meanwhile sees the old file or the new one.
func (m *Mirror) syncFile(p, rel string, fi fs.FileInfo) error {
	perm := copyPerm(fi)
	if cur, err := m.root.Lstat(rel); err == nil && cur.Mode().IsRegular() && cur.Mode().Perm() == perm &&
		cur.Size() == fi.Size() && cur.ModTime().Equal(fi.ModTime()) {
		return nil
	}
	// Not a link or a fifo swapped in since the Lstat: read only the
	// regular file that is there.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	in := os.NewFile(uintptr(fd), p)
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	tmp := rel + ".cgibridge-copy"
	m.root.Remove(tmp) // a leftover of a sync cut short
	out, err := m.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.CopyN(out, in, st.Size())
	if errors.Is(err, io.EOF) {
		err = nil // shrunk meanwhile: the next sync sees it
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = m.root.Chmod(tmp, perm)
	}
	if err == nil {
		err = m.root.Chtimes(tmp, st.ModTime(), st.ModTime())
	}
	if err == nil {
		err = m.root.Rename(tmp, rel)
	}
	if err != nil {
		m.root.Remove(tmp)
	}
	return err
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
