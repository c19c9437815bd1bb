// This file holds Limiter, the capacity of a runner: at most N jobs run at
// once; beyond that a bounded queue of requests waits briefly for a slot, and
// the rest are refused (503).

package runner

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// Limiter is a counting semaphore with a bounded FIFO queue. A freed slot
// is handed to the longest waiter directly: one wake-up per release, and
// the order requests arrived in is the order they run in.
type Limiter struct {
	mu       sync.Mutex
	limit    int
	maxQueue int
	active   int
	waiters  list.List // of chan struct{}, closed when handed a slot
}

// NewLimiter returns a limiter of limit slots and a queue of maxQueue.
func NewLimiter(limit, maxQueue int) *Limiter {
	return &Limiter{limit: limit, maxQueue: maxQueue}
}

// SetLimit changes the limits (on reload); running jobs are not touched.
// Raising the limit admits waiters at once.
func (l *Limiter) SetLimit(limit, maxQueue int) {
	l.mu.Lock()
	l.limit, l.maxQueue = limit, maxQueue
	l.handOff()
	l.mu.Unlock()
}

// Limit returns the number of slots.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// handOff gives free slots to waiters. Called with l.mu.
func (l *Limiter) handOff() {
	for l.active < l.limit && l.waiters.Len() > 0 {
		ch := l.waiters.Remove(l.waiters.Front()).(chan struct{})
		l.active++
		close(ch)
	}
}

// TryAcquire takes a slot if one is free now and nobody waits for one.
func (l *Limiter) TryAcquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active < l.limit && l.waiters.Len() == 0 {
		l.active++
		return true
	}
	return false
}

// Acquire takes a slot, waiting in the queue up to wait. It fails with
// ErrOverloaded (queue full, or no slot in time) or the context's cause.
func (l *Limiter) Acquire(ctx context.Context, wait time.Duration) error {
	l.mu.Lock()
	if l.active < l.limit && l.waiters.Len() == 0 {
		l.active++
		l.mu.Unlock()
		return nil
	}
	if l.waiters.Len() >= l.maxQueue || wait <= 0 {
		l.mu.Unlock()
		return ErrOverloaded
	}
	ch := make(chan struct{})
	e := l.waiters.PushBack(ch)
	l.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	var err error
	select {
	case <-ch:
		return nil
	case <-t.C:
		err = ErrOverloaded
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-ch:
		// Handed a slot just as it gave up: pass it on.
		l.active--
		l.handOff()
	default:
		l.waiters.Remove(e)
	}
	return err
}

// Release frees a slot, handing it to the longest waiter if any.
func (l *Limiter) Release() {
	l.mu.Lock()
	l.active--
	l.handOff()
	l.mu.Unlock()
}

// Counts returns the running and queued numbers.
func (l *Limiter) Counts() (active, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, l.waiters.Len()
}
