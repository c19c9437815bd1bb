// This file fuzzes the recorders with arbitrary arguments and checks that every
// rendering of the result stays well formed.

package status

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// FuzzExpositionWellFormed records one arbitrary request (any status, outcome,
// duration and byte counts, some of them absurd) on top of a normal one and
// checks that /metrics still passes the exposition checker, the JSON status
// still decodes, and the histogram and status counts stay consistent.
func FuzzExpositionWellFormed(f *testing.F) {
	f.Fuzz(func(t *testing.T, status, outcome int, durNanos, bytesIn, bytesOut int64, slow bool, maxProcs int) {
		s := New(maxProcs, nil)
		s.Done(200, OK, time.Millisecond, 1, 1, false)
		s.Done(status, Outcome(outcome), time.Duration(durNanos), bytesIn, bytesOut, slow)

		snap := s.Snapshot()
		series, err := checkExposition(string(appendMetrics(snap)))
		if err != nil {
			t.Fatalf("malformed exposition: %v", err)
		}
		if got := series["cgibridge_request_duration_seconds_count"]; got != 2 {
			t.Errorf("histogram count = %v, want 2", got)
		}
		var sum float64
		for code, n := range snap.ByStatus {
			if code != 0 && (code < 100 || code > 599) {
				t.Errorf("status %d escaped the 0 bucket", code)
			}
			if got := series[`cgibridge_requests_total{status="`+strconv.Itoa(code)+`"}`]; got != float64(n) {
				t.Errorf("status %d exposed as %v, want %d", code, got, n)
			}
			sum += float64(n)
		}
		if sum != 2 {
			t.Errorf("statuses sum to %v, want 2", sum)
		}
		if snap.Duration.Sum < 0.001 {
			t.Errorf("histogram sum %v is below the 1 ms recorded first: overflow", snap.Duration.Sum)
		}
		var doc map[string]any
		if err := json.Unmarshal(appendStatusJSON(statusFields(snap)), &doc); err != nil {
			t.Fatalf("status JSON does not decode: %v", err)
		}
	})
}
