// This file holds the load generators: a closed loop of N workers for maximum
// throughput, and an open loop of Poisson arrivals at a fixed offered rate whose
// latencies count from each request's scheduled time (no coordinated omission).
package main

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Run is the result of one measurement of one program on one backend.
type Run struct {
	Backend     string  `json:"backend"`
	Program     string  `json:"program"`
	Mode        string  `json:"mode"` // "closed" or "open"
	Repeat      int     `json:"repeat"`
	Concurrency int     `json:"concurrency,omitempty"`  // closed loop
	OfferedRate float64 `json:"offered_rate,omitempty"` // open loop, requests/s
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Rate        float64 `json:"rate"` // completed requests/s
	// Latency percentiles in milliseconds.
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	// Open loop: sends that started later than lateLimit after their schedule.
	Late    int    `json:"late,omitempty"`
	Valid   bool   `json:"valid"`
	Invalid string `json:"invalid,omitempty"` // why not valid
}

// lateLimit and lateShare define when an open-loop run is invalid: the generator
// fell behind its own schedule, so the offered load was not what it claims.
const (
	lateLimit = 10 * time.Millisecond
	lateShare = 0.01
)

// requestTimeout bounds one request, so a stuck backend fails a run instead of hanging it.
const requestTimeout = 30 * time.Second

// doFunc performs one request and checks its response.
type doFunc func(ctx context.Context) error

// recorder collects latencies and errors from concurrent requests.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr string
	late     int
}

func (r *recorder) add(d time.Duration, err error, late bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
	} else {
		r.lat = append(r.lat, d)
	}
	if late {
		r.late++
	}
}

// fill writes the counts and percentiles into run.
func (r *recorder) fill(run *Run, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.lat)
	run.Seconds = elapsed.Seconds()
	run.Requests = len(r.lat) + r.errors
	run.Errors = r.errors
	run.FirstError = r.firstErr
	run.Late = r.late
	if elapsed > 0 {
		run.Rate = float64(len(r.lat)) / elapsed.Seconds()
	}
	run.P50 = ms(percentile(r.lat, 50))
	run.P90 = ms(percentile(r.lat, 90))
	run.P99 = ms(percentile(r.lat, 99))
	run.P999 = ms(percentile(r.lat, 99.9))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the nearest-rank p-th percentile of sorted, 0 if empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ClosedLoop runs conc workers, each sending its next request as soon as the last
// one ended, until dur has passed or maxReq requests have been started (0: no cap).
func ClosedLoop(ctx context.Context, do doFunc, conc int, dur time.Duration, maxReq int) Run {
	var rec recorder
	var wg sync.WaitGroup
	var mu sync.Mutex
	started := 0
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if maxReq > 0 && started >= maxReq {
			return false
		}
		started++
		return true
	}
	start := time.Now()
	end := start.Add(dur)
	for range conc {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil && take() {
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				err := do(rctx)
				cancel()
				rec.add(time.Since(t0), err, false)
			}
		})
	}
	wg.Wait()
	run := Run{Mode: "closed", Concurrency: conc}
	rec.fill(&run, time.Since(start))
	judge(&run)
	return run
}

// PoissonSchedule returns the send offsets of a Poisson process of the given rate
// over dur: exponentially distributed gaps, as independent users would arrive.
func PoissonSchedule(rng *rand.Rand, rate float64, dur time.Duration) []time.Duration {
	var out []time.Duration
	t := 0.0
	for {
		t += rng.ExpFloat64() / rate
		off := time.Duration(t * float64(time.Second))
		if off >= dur {
			return out
		}
		out = append(out, off)
	}
}

// maxOutstanding caps open-loop requests in flight. nginx's default
// worker_connections (512) must hold each of them twice (client and upstream);
// a send that has to wait for the cap is late and the run is marked invalid.
const maxOutstanding = 200

// OpenLoop offers requests at the given mean rate for dur, each at its scheduled
// time whatever the state of earlier ones, and measures each latency from the
// scheduled time, so a stall shows up as the queueing delay users would see.
func OpenLoop(ctx context.Context, do doFunc, rate float64, dur time.Duration, seed uint64) Run {
	sched := PoissonSchedule(rand.New(rand.NewPCG(seed, 7)), rate, dur)
	var rec recorder
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxOutstanding)
	start := time.Now().Add(20 * time.Millisecond)
	for _, off := range sched {
		at := start.Add(off)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			late := time.Since(at) > lateLimit
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			err := do(rctx)
			cancel()
			rec.add(time.Since(at), err, late)
		})
	}
	wg.Wait()
	run := Run{Mode: "open", OfferedRate: rate}
	// Until the last response: past saturation the backlog drains after the
	// schedule has ended, and the achieved rate falls below the offered one.
	rec.fill(&run, max(time.Since(start), dur))
	judge(&run)
	return run
}

// judge sets Valid and the reason a run is not.
func judge(run *Run) {
	run.Valid = true
	switch {
	case run.Requests == 0:
		run.Valid, run.Invalid = false, "no requests completed"
	case run.Errors > 0:
		run.Valid, run.Invalid = false, "requests failed"
	case run.Mode == "open" && float64(run.Late) > lateShare*float64(run.Requests):
		run.Valid, run.Invalid = false, "generator fell behind its schedule"
	}
}
