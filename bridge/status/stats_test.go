// This file tests the counters: their semantics one event at a time, the
// histogram's buckets, the clock, nil safety, and exact totals under concurrency.

package status

import (
	"math"
	"reflect"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for pinning StartTime and Uptime.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var epoch = time.Date(2024, 3, 10, 10, 0, 0, 0, time.UTC)

// counters strips a Snapshot down to the counters the semantics table pins.
func counters(s Snapshot) Snapshot {
	s.StartTime, s.Uptime, s.Duration = time.Time{}, 0, Histogram{}
	return s
}

func TestCounterSemantics(t *testing.T) {
	tests := []struct {
		name   string
		events func(s *Stats)
		want   Snapshot // MaxProcs is 8 unless the events change it
	}{
		{
			name:   "no events leave every counter at zero",
			events: func(s *Stats) {},
			want:   Snapshot{},
		},
		{
			name:   "accepted counts begun requests",
			events: func(s *Stats) { s.Accepted(); s.Accepted(); s.Accepted() },
			want:   Snapshot{Accepted: 3},
		},
		{
			name: "queue gauge follows enter and leave and keeps its peak",
			events: func(s *Stats) {
				s.QueueEnter()
				s.QueueEnter()
				s.QueueLeave()
				s.QueueEnter()
				s.QueueLeave()
			},
			want: Snapshot{Queued: 1, MaxQueued: 2, QueueWaits: 3},
		},
		{
			name:   "unpaired queue leave does not wrap the gauge",
			events: func(s *Stats) { s.QueueLeave(); s.QueueEnter() },
			want:   Snapshot{Queued: 1, MaxQueued: 1, QueueWaits: 1},
		},
		{
			name: "active gauge follows started and stopped and keeps its peak",
			events: func(s *Stats) {
				s.Started()
				s.Started()
				s.Started()
				s.Stopped()
				s.Stopped()
				s.Started()
			},
			want: Snapshot{Active: 2, MaxActive: 3},
		},
		{
			name:   "unpaired stopped does not wrap the gauge",
			events: func(s *Stats) { s.Stopped(); s.Started() },
			want:   Snapshot{Active: 1, MaxActive: 1},
		},
		{
			name:   "done leaves the active gauge to stopped",
			events: func(s *Stats) { s.Started(); s.Done(200, OK, 0, 0, 0, false) },
			want:   Snapshot{Active: 1, MaxActive: 1, Completed: 1, ByStatus: map[int]uint64{200: 1}},
		},
		{
			name: "done counts finished requests by status",
			events: func(s *Stats) {
				s.Done(200, OK, 0, 0, 0, false)
				s.Done(200, OK, 0, 0, 0, false)
				s.Done(404, Refused, 0, 0, 0, false)
				s.Done(500, OK, 0, 0, 0, false)
			},
			want: Snapshot{Completed: 4, Refused: 1, ByStatus: map[int]uint64{200: 2, 404: 1, 500: 1}},
		},
		{
			name: "each outcome has its own counter and ok has none",
			events: func(s *Stats) {
				s.Done(504, Timeout, 0, 0, 0, false)
				s.Done(0, Aborted, 0, 0, 0, false)
				s.Done(0, Aborted, 0, 0, 0, false)
				s.Done(503, Refused, 0, 0, 0, false)
				s.Done(502, Failed, 0, 0, 0, false)
				s.Done(502, Failed, 0, 0, 0, false)
				s.Done(502, Failed, 0, 0, 0, false)
				s.Done(200, OK, 0, 0, 0, false)
			},
			want: Snapshot{
				Completed: 8, Timeouts: 1, Aborts: 2, Refused: 1, Failures: 3,
				ByStatus: map[int]uint64{0: 2, 200: 1, 502: 3, 503: 1, 504: 1},
			},
		},
		{
			name: "statuses outside 100 to 599 count as status 0",
			events: func(s *Stats) {
				s.Done(-1, OK, 0, 0, 0, false)
				s.Done(99, OK, 0, 0, 0, false)
				s.Done(100, OK, 0, 0, 0, false)
				s.Done(599, OK, 0, 0, 0, false)
				s.Done(600, OK, 0, 0, 0, false)
			},
			want: Snapshot{Completed: 5, ByStatus: map[int]uint64{0: 3, 100: 1, 599: 1}},
		},
		{
			name: "unknown outcome only counts as completed",
			events: func(s *Stats) {
				s.Done(200, Outcome(42), 0, 0, 0, false)
			},
			want: Snapshot{Completed: 1, ByStatus: map[int]uint64{200: 1}},
		},
		{
			name: "slow flag is counted",
			events: func(s *Stats) {
				s.Done(200, OK, 0, 0, 0, true)
				s.Done(504, Timeout, 0, 0, 0, true)
				s.Done(200, OK, 0, 0, 0, false)
			},
			want: Snapshot{Completed: 3, Slow: 2, Timeouts: 1, ByStatus: map[int]uint64{200: 2, 504: 1}},
		},
		{
			name: "bytes are summed and negative counts ignored",
			events: func(s *Stats) {
				s.Done(200, OK, 0, 100, 2000, false)
				s.Done(200, OK, 0, 5, 7, false)
				s.Done(200, OK, 0, -50, -60, false)
			},
			want: Snapshot{Completed: 3, BytesIn: 105, BytesOut: 2007, ByStatus: map[int]uint64{200: 3}},
		},
		{
			name:   "set max procs replaces the configured limit",
			events: func(s *Stats) { s.SetMaxProcs(3) },
			want:   Snapshot{MaxProcs: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(8, nil)
			tt.events(s)
			want := tt.want
			if want.MaxProcs == 0 {
				want.MaxProcs = 8
			}
			if want.ByStatus == nil {
				want.ByStatus = map[int]uint64{}
			}
			if got := counters(s.Snapshot()); !reflect.DeepEqual(got, want) {
				t.Errorf("snapshot:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestHistogramBucketsAreInclusiveAndCumulative(t *testing.T) {
	bounds := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, math.Inf(1)}
	tests := []struct {
		name     string
		d        time.Duration
		firstIdx int     // first bucket (index into bounds) that counts d
		sum      float64 // what d adds to the sum, in seconds
	}{
		{"zero lands in the first bucket", 0, 0, 0},
		{"negative is clamped into the first bucket", -time.Second, 0, 0},
		{"exact bound is inside its bucket", 5 * time.Millisecond, 0, 0.005},
		{"just past a bound moves up a bucket", 5*time.Millisecond + 1, 1, 0.005},
		{"sum rounds half a microsecond up", 1500 * time.Nanosecond, 0, 0.000002},
		{"sum rounds under half a microsecond down", 1499 * time.Nanosecond, 0, 0.000001},
		{"one second is inside le=1", time.Second, 7, 1},
		{"two and a half seconds is inside le=2.5", 2500 * time.Millisecond, 8, 2.5},
		{"sixty seconds is inside le=60", time.Minute, 12, 60},
		{"past the last bound only +Inf counts", time.Minute + 1, 13, 60},
		{"the longest duration does not overflow the sum", math.MaxInt64, 13, 9223372036854776 / 1e6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(1, nil)
			s.Done(200, OK, tt.d, 0, 0, false)
			h := s.Snapshot().Duration
			if len(h.Buckets) != len(bounds) {
				t.Fatalf("got %d buckets, want %d", len(h.Buckets), len(bounds))
			}
			for i, b := range h.Buckets {
				if b.UpperBound != bounds[i] {
					t.Errorf("bucket %d bound = %v, want %v", i, b.UpperBound, bounds[i])
				}
				want := uint64(0)
				if i >= tt.firstIdx {
					want = 1
				}
				if b.Count != want {
					t.Errorf("bucket le=%v count = %d, want %d", b.UpperBound, b.Count, want)
				}
			}
			if h.Count != 1 || h.Sum != tt.sum {
				t.Errorf("count, sum = %d, %v; want 1, %v", h.Count, h.Sum, tt.sum)
			}
		})
	}
}

func TestHistogramAccumulatesObservations(t *testing.T) {
	s := New(1, nil)
	for _, d := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 3 * time.Second, 2 * time.Minute} {
		s.Done(200, OK, d, 0, 0, false)
	}
	h := s.Snapshot().Duration
	wantCum := []uint64{1, 1, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5}
	for i, b := range h.Buckets {
		if b.Count != wantCum[i] {
			t.Errorf("bucket le=%v = %d, want %d", b.UpperBound, b.Count, wantCum[i])
		}
	}
	if want := 123.041; h.Sum != want || h.Count != 5 {
		t.Errorf("sum, count = %v, %d; want %v, 5", h.Sum, h.Count, want)
	}
}

func TestUptimeFollowsTheClock(t *testing.T) {
	clock := &fakeClock{t: epoch}
	s := New(1, clock.now)
	clock.advance(90 * time.Second)
	snap := s.Snapshot()
	if !snap.StartTime.Equal(epoch) || snap.Uptime != 90*time.Second {
		t.Errorf("start, uptime = %v, %v; want %v, 90s", snap.StartTime, snap.Uptime, epoch)
	}
	// A clock stepped backwards must not show a negative uptime.
	clock.advance(-time.Hour)
	if up := s.Snapshot().Uptime; up != 0 {
		t.Errorf("uptime after clock stepped back = %v, want 0", up)
	}
}

func TestNilStatsRecordsNothing(t *testing.T) {
	var s *Stats
	s.Accepted()
	s.QueueEnter()
	s.QueueLeave()
	s.Started()
	s.Stopped()
	s.Done(200, OK, time.Second, 1, 1, true)
	s.SetMaxProcs(3)
	snap := s.Snapshot()
	if snap.Accepted != 0 || snap.Completed != 0 || snap.MaxProcs != 0 || !snap.StartTime.IsZero() {
		t.Errorf("nil Stats snapshot has counts: %+v", snap)
	}
	if snap.ByStatus == nil || len(snap.Duration.Buckets) != len(bucketBounds)+1 || snap.Duration.Count != 0 {
		t.Errorf("nil Stats snapshot is not a well-formed zero: %+v", snap)
	}
}

func TestOutcomeString(t *testing.T) {
	tests := []struct {
		o    Outcome
		want string
	}{
		{OK, "ok"}, {Timeout, "timeout"}, {Aborted, "aborted"}, {Refused, "refused"}, {Failed, "failed"},
		{Outcome(-1), "outcome(-1)"}, {Outcome(5), "outcome(5)"},
	}
	for _, tt := range tests {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(tt.o), got, tt.want)
		}
	}
}

// TestConcurrentCountsAreExact drives every recorder from many goroutines while
// readers take snapshots, then checks the totals to the unit. Under -race it also
// proves the counters need no lock.
func TestConcurrentCountsAreExact(t *testing.T) {
	const workers, perWorker = 8, 300
	s := New(workers, nil)

	// Every worker starts a program and waits for all the others to have started
	// before stopping: the peak must then be exactly workers.
	var allStarted sync.WaitGroup
	allStarted.Add(workers)

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Snapshot()
				if last := snap.Duration.Buckets[len(snap.Duration.Buckets)-1]; last.Count != snap.Duration.Count {
					t.Errorf("+Inf bucket %d != count %d", last.Count, snap.Duration.Count)
				}
				s.SetMaxProcs(workers)
			}
		})
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s.Started()
			allStarted.Done()
			allStarted.Wait()
			s.Stopped()
			for i := range perWorker {
				s.Accepted()
				s.QueueEnter()
				s.QueueLeave()
				s.Started()
				status, o := 200, OK
				if i%3 == 0 {
					status, o = 504, Timeout
				}
				s.Done(status, o, time.Duration(w)*time.Millisecond, 10, 20, i%5 == 0)
				s.Stopped()
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	snap := s.Snapshot()
	const total = workers * perWorker
	timeouts := uint64(workers * ((perWorker + 2) / 3))
	slow := uint64(workers * ((perWorker + 4) / 5))
	want := Snapshot{
		MaxProcs: workers, Accepted: total, Completed: total,
		Active: 0, MaxActive: workers, Queued: 0, MaxQueued: snap.MaxQueued, QueueWaits: total,
		Slow: slow, Timeouts: timeouts,
		ByStatus: map[int]uint64{200: total - timeouts, 504: timeouts},
		BytesIn:  10 * total, BytesOut: 20 * total,
	}
	if got := counters(snap); !reflect.DeepEqual(got, want) {
		t.Errorf("after concurrent load:\n got %+v\nwant %+v", got, want)
	}
	if snap.MaxQueued < 1 || snap.MaxQueued > workers {
		t.Errorf("max queued = %d, want 1..%d", snap.MaxQueued, workers)
	}
	// Worker w observed w ms perWorker times: sum = perWorker * (0+1+…+workers-1) ms.
	wantSum := float64(perWorker*workers*(workers-1)/2) / 1e3
	if snap.Duration.Count != total || snap.Duration.Sum != wantSum {
		t.Errorf("histogram count, sum = %d, %v; want %d, %v", snap.Duration.Count, snap.Duration.Sum, total, wantSum)
	}
}
