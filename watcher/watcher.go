// Package watcher reports changes to a set of files. It watches their
// directories with fsnotify (editors save by write-then-rename, which drops a
// watch on the file itself), debounces bursts (one save can yield several
// events), rescans everything when the kernel's event queue overflowed, and
// reports a file only when its stat signature (device, inode, size, mtime,
// ctime) really changed — `git checkout` can reuse an inode, so no one field
// is enough. For file systems that give no events (NFS, FUSE) it can poll.
// It knows nothing of what the files are for.
package watcher

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Options tune a Watcher.
type Options struct {
	// Debounce is how long the files must be quiet before a change is
	// reported (default 100ms).
	Debounce time.Duration
	// Poll, when non-zero, replaces fsnotify with a stat of every file at
	// this interval.
	Poll time.Duration
	Log  hclog.Logger
}

// Watcher watches files and sends batches of changed paths on Changes.
type Watcher struct {
	opts    Options
	files   map[string]signature // absolute path -> last signature
	changes chan []string
	fsw     *fsnotify.Watcher
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// signature is what must differ for a file to count as changed. A missing
// file has the zero signature.
type signature struct {
	dev, ino, size   uint64
	mtimeNs, ctimeNs int64
	exists           bool
}

func stat(path string) signature {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return signature{}
	}
	return signature{
		dev: uint64(st.Dev), ino: st.Ino, size: uint64(st.Size),
		mtimeNs: st.Mtim.Nano(), ctimeNs: st.Ctim.Nano(), exists: true,
	}
}

// New starts watching the files. Their directories must exist; the files
// themselves may come and go.
func New(files []string, opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	w := &Watcher{
		opts:    opts,
		files:   make(map[string]signature),
		changes: make(chan []string, 1),
		done:    make(chan struct{}),
	}
	dirs := make(map[string]bool)
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", f, err)
		}
		w.files[abs] = stat(abs)
		dirs[filepath.Dir(abs)] = true
	}
	if opts.Poll > 0 {
		w.wg.Add(1)
		go w.poll()
		return w, nil
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("start file watcher: %w", err)
	}
	for dir := range dirs {
		if err := fsw.Add(dir); err != nil {
			fsw.Close()
			return nil, fmt.Errorf("watch directory %s: %w", dir, err)
		}
	}
	w.fsw = fsw
	w.wg.Add(1)
	go w.loop()
	return w, nil
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

// loop turns fsnotify events into debounced rescans.
func (w *Watcher) loop() {
	defer w.wg.Done()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-w.done:
			if timer != nil {
				timer.Stop()
			}
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if _, watched := w.files[filepath.Clean(ev.Name)]; !watched {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(w.opts.Debounce)
			} else {
				timer.Reset(w.opts.Debounce)
			}
			fire = timer.C
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.opts.Log.Warn("file events overflowed; rescanning", "error", err)
			} else {
				w.opts.Log.Warn("file watcher error; rescanning", "error", err)
			}
			w.rescan()
		case <-fire:
			fire = nil
			w.rescan()
		}
	}
}

func (w *Watcher) poll() {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
			w.rescan()
		}
	}
}

// rescan compares every file's signature with the last one seen and
// reports those that differ.
func (w *Watcher) rescan() {
	var changed []string
	for path, old := range w.files {
		if now := stat(path); now != old {
			w.files[path] = now
			changed = append(changed, path)
		}
	}
	if len(changed) == 0 {
		return
	}
	sort.Strings(changed)
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

func mergeSorted(a, b []string) []string {
	seen := make(map[string]bool, len(a)+len(b))
	var out []string
	for _, s := range append(a, b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
