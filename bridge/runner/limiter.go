// This file holds Limiter, the capacity of a runner: at most N jobs run at
// once; beyond that a bounded queue of requests waits briefly for a slot, and
// the rest are refused (503).

package runner

import (
	"context"
	"sync"
	"time"
)

// Limiter is a counting semaphore with a bounded queue.
type Limiter struct {
	mu       sync.Mutex
	limit    int
	maxQueue int
	active   int
	queued   int
	freed    chan struct{} // closed and replaced whenever a slot frees
}

// NewLimiter returns a limiter of limit slots and a queue of maxQueue.
func NewLimiter(limit, maxQueue int) *Limiter {
	return &Limiter{limit: limit, maxQueue: maxQueue, freed: make(chan struct{})}
}

// SetLimit changes the limits (on reload); running jobs are not touched.
func (l *Limiter) SetLimit(limit, maxQueue int) {
	l.mu.Lock()
	l.limit, l.maxQueue = limit, maxQueue
	l.wake()
	l.mu.Unlock()
}

// Limit returns the number of slots.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

func (l *Limiter) wake() {
	close(l.freed)
	l.freed = make(chan struct{})
}

// TryAcquire takes a slot if one is free now.
func (l *Limiter) TryAcquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active < l.limit {
		l.active++
		return true
	}
	return false
}

// Acquire takes a slot, waiting in the queue up to wait. It fails with
// ErrOverloaded (queue full, or no slot in time) or the context's cause.
func (l *Limiter) Acquire(ctx context.Context, wait time.Duration) error {
	l.mu.Lock()
	if l.active < l.limit {
		l.active++
		l.mu.Unlock()
		return nil
	}
	if l.queued >= l.maxQueue || wait <= 0 {
		l.mu.Unlock()
		return ErrOverloaded
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
			return nil
		}
		ch := l.freed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
			return ErrOverloaded
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Release frees a slot.
func (l *Limiter) Release() {
	l.mu.Lock()
	l.active--
	l.wake()
	l.mu.Unlock()
}

// Counts returns the running and queued numbers.
func (l *Limiter) Counts() (active, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, l.queued
}
