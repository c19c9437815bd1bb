package runner

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLimiterQueuesThenRefuses(t *testing.T) {
	l := NewLimiter(1, 1)
	ctx := context.Background()
	if !l.TryAcquire() {
		t.Fatal("first acquire failed")
	}
	got := make(chan error, 1)
	go func() {
		err := l.Acquire(ctx, 5*time.Second)
		got <- err
	}()
	// Wait until the second caller is queued, then a third is over the queue bound.
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, q := l.Counts(); q == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second caller never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Acquire(ctx, time.Second); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third acquire with a full queue: %v, want ErrOverloaded", err)
	}
	l.Release()
	if err := <-got; err != nil {
		t.Fatalf("queued caller after release: %v", err)
	}
	if a, q := l.Counts(); a != 1 || q != 0 {
		t.Fatalf("counts after hand-over: active %d queued %d", a, q)
	}
}

func TestLimiterWaitTimesOut(t *testing.T) {
	l := NewLimiter(1, 4)
	l.TryAcquire()
	start := time.Now()
	err := l.Acquire(context.Background(), 50*time.Millisecond)
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("got %v, want ErrOverloaded", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("gave up after %v, before the wait", d)
	}
}

func TestLimiterWaitEndsWithContext(t *testing.T) {
	l := NewLimiter(1, 4)
	l.TryAcquire()
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errTestCause)
	if err := l.Acquire(ctx, time.Second); !errors.Is(err, errTestCause) {
		t.Fatalf("got %v, want the context's cause", err)
	}
}

func TestLimiterRaisedLimitWakesWaiters(t *testing.T) {
	l := NewLimiter(1, 4)
	l.TryAcquire()
	got := make(chan error, 1)
	go func() {
		err := l.Acquire(context.Background(), 5*time.Second)
		got <- err
	}()
	// Bounded, so a waiter that never queues fails the test instead of
	// hanging it until the package timeout.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, q := l.Counts(); q == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second caller never queued")
		}
	}
	l.SetLimit(2, 8)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("raising the limit did not admit the waiter")
	}
}

var errTestCause = errors.New("test cause")

// TestLimiterIsFIFO pins the hand-off order: waiters get slots in the order
// they came.
func TestLimiterIsFIFO(t *testing.T) {
	l := NewLimiter(1, 8)
	if !l.TryAcquire() {
		t.Fatal("first acquire failed")
	}
	order := make(chan int, 5)
	for i := range 5 {
		go func() {
			if err := l.Acquire(context.Background(), 10*time.Second); err == nil {
				order <- i
				l.Release()
			}
		}()
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, q := l.Counts(); q == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d never queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	l.Release()
	for want := range 5 {
		select {
		case got := <-order:
			if got != want {
				t.Fatalf("waiter %d ran as number %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiters not admitted")
		}
	}
}
