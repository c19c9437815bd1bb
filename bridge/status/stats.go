// Package status counts the bridge's work and serves those counts over HTTP: a
// PHP-FPM-like status page (text and JSON), a liveness /ping, and Prometheus metrics.
//
// It knows nothing of FastCGI or processes; the bridge reports events to a *Stats
// (Accepted, QueueEnter/QueueLeave, Started/Stopped, Done) and Handler shows them.
//
// The Prometheus text exposition format (version 0.0.4) is written by hand here:
// prometheus/client_golang would add a dozen modules to a small static binary for a
// handful of counters and one histogram, and the format is simple and stable. The
// tests check the output with the Prometheus project's own parser (expfmt), which
// is a test-only dependency and not linked into the binary.
package status

// This file holds the counters themselves: Outcome, Stats and its Snapshot.

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Outcome says how a finished request ended, from the bridge's point of view.
type Outcome int

// The outcomes a request can end with. OK is the zero value: nothing went wrong.
const (
	// OK: the program ran and its response was delivered, whatever its HTTP status.
	OK Outcome = iota
	// Timeout: the request hit --timeout and its program was killed (504).
	Timeout
	// Aborted: the client went away (connection closed or ABORT_REQUEST).
	Aborted
	// Refused: turned away before any program ran (403, 404, 413, 503 overloaded).
	Refused
	// Failed: the program could not start or its output was bad (502).
	Failed
)

var outcomeNames = [...]string{OK: "ok", Timeout: "timeout", Aborted: "aborted", Refused: "refused", Failed: "failed"}

// String returns the outcome's lower-case name, as used in logs.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// maxStatus bounds the per-status table: HTTP statuses are three digits, 100–599.
// Anything else (0 for "no response was sent", garbage from a script) is counted
// under status 0 so the table stays a fixed array of atomics with no locking.
const maxStatus = 600

// bucketBounds are the request-duration histogram's upper bounds. They are fixed
// (not configurable) so dashboards built on them keep working across deployments;
// they span a fast C CGI (5 ms) up to the default --timeout (60 s).
var bucketBounds = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	1 * time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	30 * time.Second, 60 * time.Second,
}

// Stats holds the bridge's counters. All methods are safe for concurrent use and
// lock-free. Create one with New; the zero value is not usable. Every method on a
// nil *Stats does nothing (Snapshot returns a zero Snapshot), so code paths that run
// without statistics need no nil checks.
type Stats struct {
	now   func() time.Time
	start time.Time

	maxProcs atomic.Int64

	accepted   atomic.Uint64
	completed  atomic.Uint64
	queued     atomic.Uint64
	maxQueued  atomic.Uint64
	queueWaits atomic.Uint64
	active     atomic.Uint64
	maxActive  atomic.Uint64

	slow     atomic.Uint64
	timeouts atomic.Uint64
	aborts   atomic.Uint64
	refused  atomic.Uint64
	failures atomic.Uint64

	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64

	byStatus [maxStatus]atomic.Uint64

	// buckets[i] counts observations in (bound[i-1], bound[i]]; the extra last
	// slot is (bound[last], +Inf). Counts are per bucket, not cumulative, so one
	// observation is one atomic add; Snapshot accumulates them.
	buckets [len(bucketBounds) + 1]atomic.Uint64
	// sumMicros is in microseconds, not nanoseconds: an int64 of nanoseconds
	// overflows after 292 years of summed request time, which 64 busy slots
	// reach in under five years of uptime.
	sumMicros atomic.Uint64

	warm atomic.Pointer[[]warmSource]
}

// New returns Stats that start counting now. maxProcs is the configured
// --max-procs, shown on the status page. now is the clock (nil means time.Now);
// tests pass a fake one to pin uptime.
func New(maxProcs int, now func() time.Time) *Stats {
	if now == nil {
		now = time.Now
	}
	s := &Stats{now: now, start: now()}
	s.maxProcs.Store(int64(maxProcs))
	return s
}

// SetMaxProcs records a new --max-procs after a configuration reload.
func (s *Stats) SetMaxProcs(n int) {
	if s == nil {
		return
	}
	s.maxProcs.Store(int64(n))
}

// Accepted records that a FastCGI request began (its BEGIN_REQUEST was taken).
func (s *Stats) Accepted() {
	if s == nil {
		return
	}
	s.accepted.Add(1)
}

// QueueEnter records that a request is waiting for a --max-procs slot. Pair it
// with QueueLeave (defer it), whether or not the request then gets a slot.
func (s *Stats) QueueEnter() {
	if s == nil {
		return
	}
	s.queueWaits.Add(1)
	raiseMax(&s.maxQueued, s.queued.Add(1))
}

// QueueLeave records that a waiting request stopped waiting.
func (s *Stats) QueueLeave() {
	if s == nil {
		return
	}
	decrementToZero(&s.queued)
}

// Started records that a program started for a request. Pair it with Stopped
// (defer it right after a successful start) so the active count cannot leak.
func (s *Stats) Started() {
	if s == nil {
		return
	}
	raiseMax(&s.maxActive, s.active.Add(1))
}

// Stopped records that a program which Started has exited and been reaped.
func (s *Stats) Stopped() {
	if s == nil {
		return
	}
	decrementToZero(&s.active)
}

// Done records a finished request: the HTTP status sent (0 if none was), how it
// ended, how long it took from acceptance, the body bytes received and sent, and
// whether it was slow enough to be worth a log line. Call it once per Accepted
// request, including refused ones that never Started. Negative durations and byte
// counts are treated as zero.
func (s *Stats) Done(status int, o Outcome, d time.Duration, bytesIn, bytesOut int64, slow bool) {
	if s == nil {
		return
	}
	if status < 100 || status >= maxStatus {
		status = 0
	}
	s.byStatus[status].Add(1)
	switch o {
	case Timeout:
		s.timeouts.Add(1)
	case Aborted:
		s.aborts.Add(1)
	case Refused:
		s.refused.Add(1)
	case Failed:
		s.failures.Add(1)
	}
	if slow {
		s.slow.Add(1)
	}
	if bytesIn > 0 {
		s.bytesIn.Add(uint64(bytesIn))
	}
	if bytesOut > 0 {
		s.bytesOut.Add(uint64(bytesOut))
	}
	d = max(d, 0)
	s.buckets[bucketIndex(d)].Add(1)
	// Round to the nearest microsecond; d+500ns could overflow, the remainder cannot.
	micros := uint64(d / time.Microsecond)
	if d%time.Microsecond >= time.Microsecond/2 {
		micros++
	}
	s.sumMicros.Add(micros)
	s.completed.Add(1)
}

// bucketIndex returns the first bucket whose upper bound is ≥ d (Prometheus
// buckets are "less than or equal"), or the +Inf slot.
func bucketIndex(d time.Duration) int {
	for i, b := range bucketBounds {
		if d <= b {
			return i
		}
	}
	return len(bucketBounds)
}

// raiseMax lifts *m to n if n is larger, without a lock.
func raiseMax(m *atomic.Uint64, n uint64) {
	for {
		old := m.Load()
		if n <= old || m.CompareAndSwap(old, n) {
			return
		}
	}
}

// decrementToZero subtracts one unless the gauge is already zero: an unpaired
// Leave/Stopped is a caller bug, but it must not wrap the gauge to 2^64-1 on a
// dashboard.
func decrementToZero(g *atomic.Uint64) {
	for {
		old := g.Load()
		if old == 0 || g.CompareAndSwap(old, old-1) {
			return
		}
	}
}

// Snapshot is a copy of the counters at one moment. Each field is read atomically
// on its own, so while requests are in flight two fields may be a request apart
// (Completed versus the sum of ByStatus, for instance); the histogram's Count is
// always the sum of its buckets.
type Snapshot struct {
	StartTime time.Time     // when New was called
	Uptime    time.Duration // time since StartTime
	MaxProcs  int           // configured --max-procs

	Accepted  uint64 // requests begun
	Completed uint64 // requests finished (Done calls)

	Active     uint64 // programs running now
	MaxActive  uint64 // most programs running at once since start
	Queued     uint64 // requests waiting for a slot now
	MaxQueued  uint64 // most requests waiting at once since start
	QueueWaits uint64 // requests that had to wait for a slot (PHP-FPM's "max children reached")

	Slow     uint64 // requests marked slow
	Timeouts uint64 // Outcome Timeout
	Aborts   uint64 // Outcome Aborted
	Refused  uint64 // Outcome Refused
	Failures uint64 // Outcome Failed

	ByStatus map[int]uint64 // finished requests by HTTP status; 0 means none or invalid; only non-zero counts

	BytesIn  uint64 // request body bytes received
	BytesOut uint64 // response body bytes sent

	Duration Histogram // request durations

	Warm []Warm // the warm runners' units, as they report them
}

// Histogram is a cumulative request-duration histogram in Prometheus's shape.
type Histogram struct {
	Buckets []Bucket // ascending bounds; the last is +Inf and its Count equals Count
	Count   uint64   // observations
	Sum     float64  // total of all observations in seconds, to the microsecond
}

// Bucket is one histogram bucket: how many observations were ≤ UpperBound.
type Bucket struct {
	UpperBound float64 // seconds; math.Inf(1) for the last bucket
	Count      uint64  // cumulative
}

// Snapshot copies the current counters.
func (s *Stats) Snapshot() Snapshot {
	if s == nil {
		// An empty Stats whose clock stands at the zero time gives a zero
		// Snapshot that still has its histogram buckets and a non-nil map.
		var empty Stats
		empty.now = func() time.Time { return time.Time{} }
		return empty.Snapshot()
	}
	now := s.now()
	snap := Snapshot{
		StartTime:  s.start,
		Uptime:     max(now.Sub(s.start), 0),
		MaxProcs:   int(s.maxProcs.Load()),
		Accepted:   s.accepted.Load(),
		Completed:  s.completed.Load(),
		Active:     s.active.Load(),
		MaxActive:  s.maxActive.Load(),
		Queued:     s.queued.Load(),
		MaxQueued:  s.maxQueued.Load(),
		QueueWaits: s.queueWaits.Load(),
		Slow:       s.slow.Load(),
		Timeouts:   s.timeouts.Load(),
		Aborts:     s.aborts.Load(),
		Refused:    s.refused.Load(),
		Failures:   s.failures.Load(),
		ByStatus:   make(map[int]uint64),
		BytesIn:    s.bytesIn.Load(),
		BytesOut:   s.bytesOut.Load(),
	}
	for code := range s.byStatus {
		if n := s.byStatus[code].Load(); n > 0 {
			snap.ByStatus[code] = n
		}
	}
	var cum uint64
	snap.Duration.Buckets = make([]Bucket, 0, len(s.buckets))
	for i := range s.buckets {
		cum += s.buckets[i].Load()
		bound := math.Inf(1)
		if i < len(bucketBounds) {
			bound = bucketBounds[i].Seconds()
		}
		snap.Duration.Buckets = append(snap.Duration.Buckets, Bucket{UpperBound: bound, Count: cum})
	}
	snap.Duration.Count = cum
	snap.Warm = s.warmUnits()
	snap.Duration.Sum = float64(s.sumMicros.Load()) / 1e6
	return snap
}
