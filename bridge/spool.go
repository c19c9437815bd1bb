// This file holds the request body spool: the connection reader writes a
// request's FastCGI STDIN into it without ever waiting for the handler, and
// the handler reads it back. Up to a small bound it stays in memory; past
// that it moves to an unlinked temporary file, so memory per request stays
// bounded whatever the body size.

package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// ErrBodyTooLarge is the cause of a request refused because its body passed
// the configured cap.
var ErrBodyTooLarge = errors.New("request body larger than the configured limit")

// ErrSpoolFull is the cause of a request refused because the bodies spooled
// across all connections passed the bridge-wide bound.
var ErrSpoolFull = errors.New("request bodies spooled by the bridge passed its limit")

// spoolBudget bounds what all spools hold together: their bytes in memory
// (past memMax a body goes to a temporary file at once) and their bytes in
// all (past totalMax a body is refused).
type spoolBudget struct {
	memMax, totalMax int64
	mem, total       atomic.Int64
}

// take reserves n bytes of total; false when that passes the bound.
func (b *spoolBudget) take(n int64) bool {
	if b.total.Add(n) > b.totalMax {
		b.total.Add(-n)
		return false
	}
	return true
}

// takeMem reserves n bytes of memory; false when that passes the bound.
func (b *spoolBudget) takeMem(n int64) bool {
	if b.mem.Add(n) > b.memMax {
		b.mem.Add(-n)
		return false
	}
	return true
}

// Spool holds one request body.
type Spool struct {
	memLimit int
	tempDir  string
	budget   *spoolBudget

	mu       sync.Mutex
	mem      []byte
	file     *os.File
	size     int64
	done     bool
	released bool
	err      error         // set when the body ended abnormally
	notify   chan struct{} // closed and replaced on every change
}

func newSpool(memLimit int, tempDir string, budget *spoolBudget) *Spool {
	return &Spool{memLimit: memLimit, tempDir: tempDir, budget: budget, notify: make(chan struct{})}
}

// changed wakes waiters; called with mu held.
func (s *Spool) changed() {
	close(s.notify)
	s.notify = make(chan struct{})
}

// write appends p. It is called only by the connection reader and never
// waits for a reader of the spool.
func (s *Spool) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	n := int64(len(p))
	if !s.budget.take(n) {
		return ErrSpoolFull
	}
	if err := s.store(p); err != nil {
		s.budget.total.Add(-n)
		return err
	}
	s.size += n
	s.changed()
	return nil
}

// store keeps p in memory while the body and all spools' memory stay under
// their bounds, else in the body's temporary file.
func (s *Spool) store(p []byte) error {
	if s.file == nil {
		if len(s.mem)+len(p) <= s.memLimit && s.budget.takeMem(int64(len(p))) {
			s.mem = append(s.mem, p...)
			return nil
		}
		f, err := os.CreateTemp(s.tempDir, "cgibridge-body-*")
		if err != nil {
			return fmt.Errorf("spool request body: %w", err)
		}
		// Unlinked at once: the data lives only as long as the descriptor,
		// so nothing is left behind by a crash.
		os.Remove(f.Name())
		if _, err := f.Write(s.mem); err != nil {
			f.Close()
			return fmt.Errorf("spool request body: %w", err)
		}
		s.budget.mem.Add(-int64(len(s.mem)))
		s.file, s.mem = f, nil
	}
	if _, err := s.file.Write(p); err != nil {
		return fmt.Errorf("spool request body: %w", err)
	}
	return nil
}

// finish marks the end of the body; err is non-nil when it ended abnormally
// (too large, aborted), and is then what readers get.
func (s *Spool) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done, s.err = true, err
	s.changed()
}

// Size returns the bytes spooled so far.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Wait blocks until the whole body has arrived and returns its length, or
// the reason it never will.
func (s *Spool) Wait(ctx context.Context) (int64, error) {
	for {
		s.mu.Lock()
		done, size, err, ch := s.done, s.size, s.err, s.notify
		s.mu.Unlock()
		if done {
			return size, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// Stdin returns what to give a process as its standard input once Wait has
// succeeded: nil for an empty body, the spool file itself (rewound, so the
// process reads it directly with no copying goroutine) or a reader over the
// in-memory bytes.
func (s *Spool) Stdin() (io.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.size == 0:
		return nil, nil
	case s.file != nil:
		if _, err := s.file.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("rewind spooled body: %w", err)
		}
		return s.file, nil
	default:
		return bytes.NewReader(s.mem), nil
	}
}

// NewReader returns a reader of the body that streams it while it is still
// arriving: Read waits for more data, returns io.EOF at the end, and the
// abnormal end's error if there was one.
func (s *Spool) NewReader(ctx context.Context) io.Reader {
	return &spoolReader{s: s, ctx: ctx}
}

type spoolReader struct {
	s   *Spool
	ctx context.Context
	off int64
}

func (r *spoolReader) Read(p []byte) (int, error) {
	s := r.s
	for {
		s.mu.Lock()
		if r.off < s.size {
			var n int
			var err error
			if s.file != nil {
				n, err = s.file.ReadAt(p[:min(int64(len(p)), s.size-r.off)], r.off)
			} else {
				n = copy(p, s.mem[r.off:])
			}
			s.mu.Unlock()
			r.off += int64(n)
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		done, err, ch := s.done, s.err, s.notify
		s.mu.Unlock()
		if done {
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
	}
}

// release frees the memory and closes the file, and gives their bytes back
// to the budget. The request's owner calls it once, after the handler has
// returned or when the request ends without one.
func (s *Spool) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return
	}
	s.released = true
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.budget.mem.Add(-int64(len(s.mem)))
	s.budget.total.Add(-s.size)
	s.mem = nil
	if !s.done {
		s.done, s.err = true, io.ErrClosedPipe
		s.changed()
	}
}
