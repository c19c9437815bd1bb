// Package watcher reports changes to files and directory trees. It watches
// directories with fsnotify, never files (editors save by write-then-rename,
// which drops a watch on the file itself); debounces bursts (one save can
// yield several events); rescans everything when the kernel's event queue
// overflowed; follows a file whose directory does not exist yet, or is
// removed and made again, by watching its nearest existing ancestor; and
// reports a path only when its stat signature (device, inode, size, mtime,
// ctime) really changed — `git checkout` can reuse an inode, so no one field
// is enough. For file systems that give no events (NFS, FUSE) it can poll.
// It knows nothing of what the files are for.
package watcher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Options tune a Watcher.
type Options struct {
	// Debounce is how long the files must be quiet before a change is
	// reported (default 100ms). Under a stream of events a change is
	// reported at the latest after 10 × Debounce.
	Debounce time.Duration
	// Poll, when non-zero, replaces fsnotify with a stat of everything
	// watched at this interval.
	Poll time.Duration
	Log  hclog.Logger
}

// Watcher watches files and trees and sends batches of changed paths on
// Changes. Its methods are safe for concurrent use.
type Watcher struct {
	opts    Options
	changes chan []string
	fsw     *fsnotify.Watcher // nil when polling
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	mu        sync.Mutex
	files     map[string]Signature // watched files -> last signature
	trees     map[string]bool      // watched tree roots
	treeFiles map[string]Signature // regular files seen under the trees
	dirs      map[string]bool      // directories with an fsnotify watch
}

// Signature is what must differ for a file to count as changed. A missing
// file has the zero Signature.
type Signature struct {
	Dev, Ino, Size   uint64
	MtimeNs, CtimeNs int64
	Exists           bool
}

// Stat returns the signature of the file at path (following symlinks).
func Stat(path string) Signature {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return Signature{}
	}
	return signatureOf(&st)
}

func signatureOf(st *syscall.Stat_t) Signature {
	return Signature{
		Dev: uint64(st.Dev), Ino: st.Ino, Size: uint64(st.Size),
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(), Exists: true,
	}
}

// New starts a watcher with nothing to watch yet.
func New(opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	w := &Watcher{
		opts:      opts,
		changes:   make(chan []string, 1),
		done:      make(chan struct{}),
		files:     make(map[string]Signature),
		trees:     make(map[string]bool),
		treeFiles: make(map[string]Signature),
		dirs:      make(map[string]bool),
	}
	if opts.Poll <= 0 {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			return nil, fmt.Errorf("start file watcher: %w", err)
		}
		w.fsw = fsw
	}
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

// Files starts a watcher of the given files.
func Files(files []string, opts Options) (*Watcher, error) {
	w, err := New(opts)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := w.AddFile(f); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// AddFile watches the file at path, which may not exist yet (nor its
// directory). Its signature now is the base of later comparisons.
func (w *Watcher) AddFile(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.files[abs]; ok {
		return nil
	}
	w.files[abs] = Stat(abs)
	return w.watchNearest(filepath.Dir(abs))
}

// AddTree watches every regular file under dir, which must exist, and the
// directories made in it later.
func (w *Watcher) AddTree(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("watch tree %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("watch tree %s: not a directory", dir)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trees[abs] = true
	w.scanTree(abs, nil, nil)
	return nil
}

// Remove stops watching a file or a tree added before. (The directory
// watches stay until Close: they are cheap, and shared.)
func (w *Watcher) Remove(path string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.files, abs)
	if w.trees[abs] {
		delete(w.trees, abs)
		for p := range w.treeFiles {
			if within(p, abs) && !w.underTree(p) {
				delete(w.treeFiles, p)
			}
		}
	}
}

// Changes delivers the paths whose signature changed, sorted, after each
// quiet period. A slow reader gets the batches merged, never lost.
func (w *Watcher) Changes() <-chan []string { return w.changes }

// Close stops watching; Changes is closed.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		if w.fsw != nil {
			err = w.fsw.Close()
		}
		w.wg.Wait()
		close(w.changes)
	})
	return err
}

// watchNearest puts a watch on dir, or while it does not exist on its
// nearest existing ancestor, so its creation is seen. Called with w.mu.
func (w *Watcher) watchNearest(dir string) error {
	if w.fsw == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return w.watchDir(d)
		}
		if d == "/" || d == "." {
			return fmt.Errorf("watch %s: no existing directory above it", dir)
		}
	}
}

// watchDir adds an fsnotify watch on dir (again, if the kernel dropped it
// when the directory was removed). Called with w.mu.
func (w *Watcher) watchDir(dir string) error {
	if w.fsw == nil {
		return nil
	}
	if err := w.fsw.Add(dir); err != nil {
		return fmt.Errorf("watch directory %s: %w", dir, err)
	}
	w.dirs[dir] = true
	return nil
}

// loop turns events into debounced rescans.
func (w *Watcher) loop() {
	defer w.wg.Done()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	var poll <-chan time.Time
	if w.opts.Poll > 0 {
		t := time.NewTicker(w.opts.Poll)
		defer t.Stop()
		poll = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // first event of the burst being debounced
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if !w.interesting(ev.Name) {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			// Quiet for Debounce, or the burst has lasted 10 × Debounce.
			wait := w.opts.Debounce
			if limit := first.Add(10 * w.opts.Debounce); now.Add(wait).After(limit) {
				wait = max(limit.Sub(now), 0)
			}
			timer.Reset(wait)
		case err, ok := <-errs:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.opts.Log.Warn("file events overflowed; rescanning", "error", err)
			} else {
				w.opts.Log.Warn("file watcher error; rescanning", "error", err)
			}
			w.rescan()
		case <-poll:
			w.rescan()
		case <-timer.C:
			first = time.Time{}
			w.rescan()
		}
	}
}

// interesting reports whether an event's path can matter: a watched file,
// anything under a tree, or a directory on the way to a watched file.
func (w *Watcher) interesting(name string) bool {
	name = filepath.Clean(name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.files[name]; ok || w.underTree(name) {
		return true
	}
	for f := range w.files {
		if within(f, name) {
			return true
		}
	}
	return false
}

// rescan compares everything watched with its last signature, renews the
// directory watches, and reports what differs.
func (w *Watcher) rescan() {
	w.mu.Lock()
	var changed []string
	for path, old := range w.files {
		if now := Stat(path); now != old {
			w.files[path] = now
			changed = append(changed, path)
		}
		if err := w.watchNearest(filepath.Dir(path)); err != nil {
			w.opts.Log.Debug("cannot watch", "path", path, "error", err)
		}
	}
	seen := make(map[string]bool, len(w.treeFiles))
	for root := range w.trees {
		changed = w.scanTree(root, changed, seen)
	}
	for p := range w.treeFiles {
		if !seen[p] {
			delete(w.treeFiles, p)
			changed = append(changed, p)
		}
	}
	w.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	slices.Sort(changed)
	changed = slices.Compact(changed)
	for {
		select {
		case w.changes <- changed:
			return
		case prev := <-w.changes:
			// The reader is behind: merge rather than block or drop.
			changed = mergeSorted(prev, changed)
		case <-w.done:
			return
		}
	}
}

// scanTree walks root, watching its directories and recording its files.
// When seen is not nil (a rescan, not the first scan) it marks every file
// found there and appends to changed the files that are new or differ.
// Called with w.mu.
func (w *Watcher) scanTree(root string, changed []string, seen map[string]bool) []string {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile, or unreadable: reported as missing
		}
		if d.IsDir() {
			if err := w.watchDir(p); err != nil {
				w.opts.Log.Debug("cannot watch", "dir", p, "error", err)
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil
		}
		sig := signatureOf(&st)
		if seen != nil {
			seen[p] = true
			if old, ok := w.treeFiles[p]; !ok || old != sig {
				changed = append(changed, p)
			}
		}
		w.treeFiles[p] = sig
		return nil
	})
	return changed
}

// underTree reports whether p lies under a watched tree. Called with w.mu.
func (w *Watcher) underTree(p string) bool {
	for root := range w.trees {
		if within(p, root) {
			return true
		}
	}
	return false
}

// within reports whether p is dir or lies under it.
func within(p, dir string) bool {
	if p == dir || dir == "/" {
		return true
	}
	return len(p) > len(dir) && p[:len(dir)] == dir && p[len(dir)] == '/'
}

func mergeSorted(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
