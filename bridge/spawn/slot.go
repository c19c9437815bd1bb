// This file holds a slot: one of the -F places for a child, and the
// goroutine that keeps it filled. A child that dies is restarted after a
// delay that doubles with each quick death up to --restart-delay-max, and
// is never given up (multiwatch abandons a slot after three quick deaths);
// one that exits cleanly is restarted after the first delay.
// A replacement (SIGHUP, --watch) starts the new child first and retires
// the old one only once the new one has stayed up for a moment.

package spawn

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// healthyRun is how long a child must run for its death to count as
// ordinary wear, not a quick death: the slot's backoff then starts over.
const healthyRun = 10 * time.Second

// settle is how long a replacement must stay up before the child it
// replaces is retired. A new version that dies at once leaves the old one
// serving.
const settle = 250 * time.Millisecond

// slot keeps one child running.
type slot struct {
	n       int
	s       *supervisor
	replace chan chan replaced // a rolling restart asks; the reply says how it went
}

// replaced is a slot's answer to a replacement: the new child, or why
// there is none.
type replaced struct {
	c   *child
	err error
}

// backoff is a slot's restart delay.
type backoff struct {
	first, max time.Duration
	quick      int // quick deaths in a row
}

// next returns the delay before the restart that follows a child's end
// after running ran. A clean exit (status 0) is how php-cgi ends after
// PHP_FCGI_MAX_REQUESTS, which under load can come within seconds: it is
// restarted after the first delay and never backs off.
func (b *backoff) next(ran time.Duration, clean bool) time.Duration {
	if ran >= healthyRun || clean {
		b.quick = 0
	}
	if clean {
		return b.first
	}
	d := b.first
	for i := 0; i < b.quick && d < b.max; i++ {
		d *= 2
	}
	b.quick++
	return min(d, b.max)
}

func (b *backoff) reset() { b.quick = 0 }

// run keeps the slot filled, starting from c (which may be nil), until ctx
// ends; then it stops its child.
func (sl *slot) run(ctx context.Context, c *child) {
	cfg := sl.s.plan.cfg
	log := sl.s.log.With("slot", sl.n)
	bo := &backoff{first: cfg.RestartDelay, max: cfg.RestartDelayMax}
	var retry *time.Timer
	var retryC <-chan time.Time
	schedule := func(d time.Duration) {
		retry = time.NewTimer(d)
		retryC = retry.C
		log.Info("restarting child", "delay", d)
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		var exited <-chan struct{}
		if c != nil {
			exited = c.exited
		}
		select {
		case <-ctx.Done():
			if c != nil {
				c.stop(cfg.KillGrace)
			}
			return

		case <-exited:
			// php-cgi exits 0 by itself after PHP_FCGI_MAX_REQUESTS: not
			// a failure, but the slot is refilled all the same.
			clean := c.err == nil && c.exit.Code == 0
			logExit := c.log.Warn
			if clean {
				logExit = c.log.Info
			}
			logExit("child exited", "exit", c.exitString(), "ran", c.ran())
			schedule(bo.next(c.ran(), clean))
			c = nil

		case <-retryC:
			retryC = nil
			nc, err := sl.s.start(sl.n)
			if err != nil {
				log.Error("cannot start child", "error", err)
				schedule(bo.next(0, false))
				continue
			}
			c = nc

		case reply := <-sl.replace:
			nc, err := sl.startSettled(ctx)
			if err != nil {
				reply <- replaced{err: err}
				continue
			}
			if c != nil {
				how := c.retire(ctx, sl.s.sock, cfg.DrainTimeout, cfg.KillGrace)
				c.log.Info("child replaced", "by", nc.pid, "how", how)
			}
			if retryC != nil {
				retry.Stop()
				retryC = nil
			}
			bo.reset()
			c = nc
			reply <- replaced{c: nc}
		}
	}
}

// startSettled starts a replacement and waits for it to stay up for
// settle. A replacement that dies meanwhile is an error, and the slot
// keeps what it had.
func (sl *slot) startSettled(ctx context.Context) (*child, error) {
	nc, err := sl.s.start(sl.n)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(settle)
	defer t.Stop()
	select {
	case <-nc.exited:
		return nil, fmt.Errorf("the new child (pid %d) exited at once: %s", nc.pid, nc.exitString())
	case <-ctx.Done():
		nc.stop(sl.s.plan.cfg.KillGrace)
		return nil, errors.New("stopping")
	case <-t.C:
		return nc, nil
	}
}
