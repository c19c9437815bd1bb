// This file tests the HTTP endpoints: /status text and JSON, /ping, /metrics,
// and the 404/405 answers.

package status

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// loadedStats returns Stats with a known history, 90 s after a fixed start.
func loadedStats() *Stats {
	clock := &fakeClock{t: epoch}
	s := New(16, clock.now)
	for range 7 {
		s.Accepted()
	}
	s.QueueEnter()
	s.QueueEnter()
	s.QueueLeave() // one still queued; peak 2
	s.Started()
	s.Started()
	s.Started()
	s.Stopped() // two active; peak 3
	s.Done(200, OK, 3*time.Millisecond, 100, 1000, false)
	s.Done(200, OK, 40*time.Millisecond, 0, 500, false)
	s.Done(504, Timeout, 61*time.Second, 0, 0, true)
	s.Done(0, Aborted, 2*time.Second, 7, 0, false)
	s.Done(503, Refused, time.Millisecond, 0, 0, false)
	s.Done(502, Failed, 100*time.Millisecond, 0, 0, false)
	clock.advance(90 * time.Second)
	return s
}

// wantStatusFields is what loadedStats shows on /status, key by key, as text.
var wantStatusFields = map[string]string{
	"start time":           "10/Mar/2024:10:00:00 +0000",
	"start since":          "90",
	"accepted conn":        "7",
	"completed requests":   "6",
	"listen queue":         "1",
	"max listen queue":     "2",
	"max children reached": "2",
	"active processes":     "2",
	"max active processes": "3",
	"max procs":            "16",
	"slow requests":        "1",
	"timeouts":             "1",
	"aborts":               "1",
	"refused requests":     "1",
	"failed requests":      "1",
	"bytes received":       "107",
	"bytes sent":           "1500",
	"status 0":             "1",
	"status 200":           "2",
	"status 502":           "1",
	"status 503":           "1",
	"status 504":           "1",
}

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestStatusTextShowsEveryCounter(t *testing.T) {
	rec := get(t, Handler(loadedStats()), http.MethodGet, "/status")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	got := map[string]string{}
	for line := range strings.Lines(rec.Body.String()) {
		key, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ":")
		// "start time" has colons in its value; the first colon ends the key.
		if !ok {
			t.Fatalf("line without a colon: %q", line)
		}
		if _, dup := got[key]; dup {
			t.Errorf("key %q appears twice", key)
		}
		got[key] = strings.TrimSpace(value)
	}
	if !reflect.DeepEqual(got, wantStatusFields) {
		t.Errorf("status page fields:\n got %v\nwant %v", got, wantStatusFields)
	}
}

func TestStatusJSONDecodesToTheCounters(t *testing.T) {
	for _, target := range []string{"/status?json", "/status?json=1"} {
		t.Run(target, func(t *testing.T) {
			rec := get(t, Handler(loadedStats()), http.MethodGet, target)
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var doc struct {
				StartTime          int64             `json:"start time"`
				StartSince         int64             `json:"start since"`
				AcceptedConn       uint64            `json:"accepted conn"`
				CompletedRequests  uint64            `json:"completed requests"`
				ListenQueue        uint64            `json:"listen queue"`
				MaxListenQueue     uint64            `json:"max listen queue"`
				MaxChildrenReached uint64            `json:"max children reached"`
				ActiveProcesses    uint64            `json:"active processes"`
				MaxActiveProcesses uint64            `json:"max active processes"`
				MaxProcs           int               `json:"max procs"`
				SlowRequests       uint64            `json:"slow requests"`
				Timeouts           uint64            `json:"timeouts"`
				Aborts             uint64            `json:"aborts"`
				RefusedRequests    uint64            `json:"refused requests"`
				FailedRequests     uint64            `json:"failed requests"`
				BytesReceived      uint64            `json:"bytes received"`
				BytesSent          uint64            `json:"bytes sent"`
				ByStatus           map[string]uint64 `json:"requests by status"`
			}
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields() // a new field must be added here, and to the text test
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("decode %s: %v", target, err)
			}
			got := map[string]any{
				"start time": doc.StartTime, "start since": doc.StartSince,
				"accepted conn": doc.AcceptedConn, "completed requests": doc.CompletedRequests,
				"listen queue": doc.ListenQueue, "max listen queue": doc.MaxListenQueue,
				"max children reached": doc.MaxChildrenReached, "active processes": doc.ActiveProcesses,
				"max active processes": doc.MaxActiveProcesses, "max procs": doc.MaxProcs,
				"slow requests": doc.SlowRequests, "timeouts": doc.Timeouts, "aborts": doc.Aborts,
				"refused requests": doc.RefusedRequests, "failed requests": doc.FailedRequests,
				"bytes received": doc.BytesReceived, "bytes sent": doc.BytesSent,
				"by status": doc.ByStatus,
			}
			want := map[string]any{
				"start time": epoch.Unix(), "start since": int64(90),
				"accepted conn": uint64(7), "completed requests": uint64(6),
				"listen queue": uint64(1), "max listen queue": uint64(2),
				"max children reached": uint64(2), "active processes": uint64(2),
				"max active processes": uint64(3), "max procs": 16,
				"slow requests": uint64(1), "timeouts": uint64(1), "aborts": uint64(1),
				"refused requests": uint64(1), "failed requests": uint64(1),
				"bytes received": uint64(107), "bytes sent": uint64(1500),
				"by status": map[string]uint64{"0": 1, "200": 2, "502": 1, "503": 1, "504": 1},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("JSON status:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestPingAnswersPong(t *testing.T) {
	rec := get(t, Handler(New(1, nil)), http.MethodGet, "/ping")
	if rec.Code != http.StatusOK || rec.Body.String() != "pong\n" {
		t.Errorf("GET /ping = %d %q, want 200 \"pong\\n\"", rec.Code, rec.Body.String())
	}
}

func TestRoutingAnswers404And405(t *testing.T) {
	tests := []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/status", http.StatusOK},
		{http.MethodHead, "/status", http.StatusOK},
		{http.MethodHead, "/metrics", http.StatusOK},
		{http.MethodHead, "/ping", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/status/", http.StatusNotFound},
		{http.MethodGet, "/pingx", http.StatusNotFound},
		{http.MethodGet, "/metrics/extra", http.StatusNotFound},
		{http.MethodPost, "/nowhere", http.StatusNotFound},
		{http.MethodPost, "/status", http.StatusMethodNotAllowed},
		{http.MethodPut, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/ping", http.StatusMethodNotAllowed},
		{http.MethodOptions, "/status", http.StatusMethodNotAllowed},
	}
	h := Handler(New(1, nil))
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rec := get(t, h, tt.method, tt.target)
			if rec.Code != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.target, rec.Code, tt.want)
			}
			if tt.want == http.StatusMethodNotAllowed {
				if allow := rec.Header().Get("Allow"); allow != "GET, HEAD" {
					t.Errorf("Allow = %q, want \"GET, HEAD\"", allow)
				}
			}
		})
	}
}

func TestHandlerRefusesNilStats(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Handler(nil) did not panic")
		}
	}()
	Handler(nil)
}

func TestMetricsAreWellFormedAndCarryTheCounters(t *testing.T) {
	rec := get(t, Handler(loadedStats()), http.MethodGet, "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	series, err := checkExposition(rec.Body.String())
	if err != nil {
		t.Fatalf("malformed exposition: %v\n%s", err, rec.Body.String())
	}
	const h = "cgibridge_request_duration_seconds"
	want := map[string]float64{
		`cgibridge_requests_total{status="0"}`:   1,
		`cgibridge_requests_total{status="200"}`: 2,
		`cgibridge_requests_total{status="502"}`: 1,
		`cgibridge_requests_total{status="503"}`: 1,
		`cgibridge_requests_total{status="504"}`: 1,
		"cgibridge_accepted_requests_total":      7,
		"cgibridge_active_requests":              2,
		"cgibridge_max_active_requests":          3,
		"cgibridge_queued_requests":              1,
		"cgibridge_queue_waits_total":            2,
		"cgibridge_max_procs":                    16,
		"cgibridge_slow_requests_total":          1,
		"cgibridge_timeouts_total":               1,
		"cgibridge_aborts_total":                 1,
		"cgibridge_refused_requests_total":       1,
		"cgibridge_failed_requests_total":        1,
		"cgibridge_bytes_received_total":         107,
		"cgibridge_bytes_sent_total":             1500,
		h + `_bucket{le="0.005"}`:                2, // 1 ms, 3 ms
		h + `_bucket{le="0.01"}`:                 2,
		h + `_bucket{le="0.025"}`:                2,
		h + `_bucket{le="0.05"}`:                 3, // 40 ms
		h + `_bucket{le="0.1"}`:                  4, // 100 ms, on the bound
		h + `_bucket{le="0.25"}`:                 4,
		h + `_bucket{le="0.5"}`:                  4,
		h + `_bucket{le="1"}`:                    4,
		h + `_bucket{le="2.5"}`:                  5, // 2 s
		h + `_bucket{le="5"}`:                    5,
		h + `_bucket{le="10"}`:                   5,
		h + `_bucket{le="30"}`:                   5,
		h + `_bucket{le="60"}`:                   5,
		h + `_bucket{le="+Inf"}`:                 6, // 61 s
		h + "_sum":                               63.144,
		h + "_count":                             6,
		"cgibridge_uptime_seconds":               90,
		"cgibridge_start_time_seconds":           float64(epoch.Unix()),
	}
	if !reflect.DeepEqual(series, want) {
		for k, v := range want {
			if got, ok := series[k]; !ok || got != v {
				t.Errorf("%s = %v (present: %v), want %v", k, got, ok, v)
			}
		}
		for k, v := range series {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s = %v", k, v)
			}
		}
	}
}

func TestMetricsOfFreshStatsAreWellFormed(t *testing.T) {
	body := get(t, Handler(New(4, nil)), http.MethodGet, "/metrics").Body.String()
	series, err := checkExposition(body)
	if err != nil {
		t.Fatalf("malformed exposition: %v\n%s", err, body)
	}
	// With no requests yet the status family is declared but has no series.
	for k := range series {
		if strings.HasPrefix(k, "cgibridge_requests_total") {
			t.Errorf("fresh Stats exposes %s", k)
		}
	}
	if !strings.Contains(body, "# TYPE cgibridge_requests_total counter\n") {
		t.Error("cgibridge_requests_total is not declared")
	}
}

func TestWarmUnitsOnEveryPage(t *testing.T) {
	s := New(4, nil)
	s.AddWarm(func() []Warm {
		return []Warm{{Runner: "fastcgi", Program: `/srv/cgi-bin/odd "name"\x.fcgi`, Generation: 3, Busy: 1, Idle: 2, Draining: 1,
			Requests: 42, Started: 5, Crashes: 1, LastExit: "signal KILL", Cold: map[string]uint64{"no helper ready": 2}}}
	})
	h := Handler(s)
	text := get(t, h, "GET", "/status").Body.String()
	for _, want := range []string{"fastcgi /srv/cgi-bin/odd", "generation: 3", "busy: 1", "idle: 2", "draining: 1", "requests: 42", "crashes: 1", "last exit: signal KILL", "cold (no helper ready): 2"} {
		if !strings.Contains(text, want) {
			t.Errorf("text status lacks %q:\n%s", want, text)
		}
	}
	var page struct {
		Warm []Warm `json:"warm"`
	}
	if err := json.Unmarshal(get(t, h, "GET", "/status?json").Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Warm) != 1 || page.Warm[0].Requests != 42 || page.Warm[0].Generation != 3 {
		t.Errorf("JSON warm units: %+v", page.Warm)
	}
	series, err := checkExposition(get(t, h, "GET", "/metrics").Body.String())
	if err != nil {
		t.Fatal(err)
	}
	id := `program="/srv/cgi-bin/odd \"name\"\\x.fcgi",runner="fastcgi"`
	for k, want := range map[string]float64{
		`cgibridge_warm_processes{` + id + `,state="idle"}`: 2,
		`cgibridge_warm_requests_total{` + id + `}`:         42,
		`cgibridge_warm_generation{` + id + `}`:             3,
		`cgibridge_warm_cold_requests_total{program="/srv/cgi-bin/odd \"name\"\\x.fcgi",reason="no helper ready",runner="fastcgi"}`: 2,
		`cgibridge_warm_crashes_total{` + id + `}`: 1,
	} {
		if got, ok := series[k]; !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", k, got, ok, want)
		}
	}
}
