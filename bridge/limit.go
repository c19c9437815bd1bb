// This file holds the limiter behind --max-procs: at most N programs run at
// once; beyond that a bounded queue of requests waits briefly for a slot,
// and the rest are answered 503.

package bridge

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrOverloaded means no slot came free in time, or the queue was full.
var ErrOverloaded = errors.New("too many programs running")

type limiter struct {
	mu       sync.Mutex
	limit    int
	maxQueue int
	active   int
	queued   int
	freed    chan struct{} // closed and replaced whenever a slot frees
}

func newLimiter(limit, maxQueue int) *limiter {
	return &limiter{limit: limit, maxQueue: maxQueue, freed: make(chan struct{})}
}

// setLimit changes the limits (on reload); running programs are not touched.
func (l *limiter) setLimit(limit, maxQueue int) {
	l.mu.Lock()
	l.limit, l.maxQueue = limit, maxQueue
	l.wake()
	l.mu.Unlock()
}

func (l *limiter) wake() {
	close(l.freed)
	l.freed = make(chan struct{})
}

// acquire takes a slot, waiting up to wait. It reports whether the request
// had to queue. It fails with ErrOverloaded or the context's cause.
func (l *limiter) acquire(ctx context.Context, wait time.Duration) (queued bool, err error) {
	l.mu.Lock()
	if l.active < l.limit {
		l.active++
		l.mu.Unlock()
		return false, nil
	}
	if l.queued >= l.maxQueue || wait <= 0 {
		l.mu.Unlock()
		return false, ErrOverloaded
	}
	l.queued++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.queued--
		l.mu.Unlock()
	}()

	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		l.mu.Lock()
		if l.active < l.limit {
			l.active++
			l.mu.Unlock()
			return true, nil
		}
		ch := l.freed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			return true, ErrOverloaded
		case <-ctx.Done():
			return true, context.Cause(ctx)
		}
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	l.active--
	l.wake()
	l.mu.Unlock()
}

// counts returns the running and queued numbers.
func (l *limiter) counts() (active, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, l.queued
}
