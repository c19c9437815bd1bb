// This file serves the counters over HTTP: /status (text or JSON), /ping and /metrics.

package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// startTimeLayout is PHP-FPM's status-page time format, so the page reads familiar.
const startTimeLayout = "02/Jan/2006:15:04:05 -0700"

// Handler serves s:
//
//	GET /status        PHP-FPM-like "key: value" lines
//	GET /status?json   the same fields as one JSON object
//	GET /ping          "pong\n"
//	GET /metrics       Prometheus text format 0.0.4
//
// HEAD is accepted wherever GET is. Other paths get 404 and other methods 405.
// Responses are never cached. Handler panics if s is nil: a status page with
// nothing behind it is a wiring mistake to catch at start-up.
func Handler(s *Stats) http.Handler {
	if s == nil {
		panic("status.Handler: nil *Stats")
	}
	return &handler{s: s}
}

type handler struct{ s *Stats }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case "/status":
		serve = h.serveStatus
	case "/ping":
		serve = servePing
	case "/metrics":
		serve = h.serveMetrics
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Monitoring polls these pages; a cached copy would show stale numbers.
	w.Header().Set("Cache-Control", "no-store")
	serve(w, r)
}

func servePing(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("pong\n"))
}

func (h *handler) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	body := appendMetrics(h.s.Snapshot())
	w.Header().Set("Content-Type", metricsContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	snap := h.s.Snapshot()
	fields := statusFields(snap)
	var body []byte
	// PHP-FPM selects JSON with a bare "?json"; accept that and "?json=1" alike.
	if r.URL.Query().Has("json") {
		w.Header().Set("Content-Type", "application/json")
		if snap.Warm != nil {
			fields = append(fields, statusField{"warm", snap.Warm})
		}
		body = appendStatusJSON(fields)
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var b bytes.Buffer
		b.Write(appendStatusText(fields))
		appendWarmText(&b, snap.Warm)
		body = b.Bytes()
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// statusField is one line of the status page. The text page and the JSON object
// are both rendered from the same list so their keys cannot drift apart.
type statusField struct {
	key   string
	value any // uint64, int, int64, time.Time or map[int]uint64
}

// statusFields lists the status page in order. Where a field means what PHP-FPM's
// does, it takes PHP-FPM's name, so existing status-page checks can read it.
func statusFields(snap Snapshot) []statusField {
	return []statusField{
		{"start time", snap.StartTime},
		{"start since", int64(snap.Uptime / time.Second)},
		{"accepted conn", snap.Accepted},
		{"completed requests", snap.Completed},
		{"listen queue", snap.Queued},
		{"max listen queue", snap.MaxQueued},
		{"max children reached", snap.QueueWaits},
		{"active processes", snap.Active},
		{"max active processes", snap.MaxActive},
		{"max procs", snap.MaxProcs},
		{"slow requests", snap.Slow},
		{"timeouts", snap.Timeouts},
		{"aborts", snap.Aborts},
		{"refused requests", snap.Refused},
		{"failed requests", snap.Failures},
		{"bytes received", snap.BytesIn},
		{"bytes sent", snap.BytesOut},
		{"requests by status", snap.ByStatus},
	}
}

// appendStatusText renders fields as aligned "key: value" lines; the per-status
// map becomes one "status NNN: count" line per code, in ascending order.
func appendStatusText(fields []statusField) []byte {
	width := 0
	for _, f := range fields {
		width = max(width, len(f.key)+1)
	}
	var b bytes.Buffer
	for _, f := range fields {
		switch v := f.value.(type) {
		case map[int]uint64:
			for _, code := range sortedCodes(v) {
				fmt.Fprintf(&b, "%-*s %d\n", width, "status "+strconv.Itoa(code)+":", v[code])
			}
		case time.Time:
			fmt.Fprintf(&b, "%-*s %s\n", width, f.key+":", v.Format(startTimeLayout))
		default:
			fmt.Fprintf(&b, "%-*s %v\n", width, f.key+":", v)
		}
	}
	return b.Bytes()
}

// appendStatusJSON renders fields as one JSON object, keys in page order. As in
// PHP-FPM, "start time" is a Unix timestamp in seconds.
func appendStatusJSON(fields []statusField) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		v := f.value
		if t, ok := v.(time.Time); ok {
			v = t.Unix()
		}
		key, _ := json.Marshal(f.key)
		// Every value is an integer, a map of integers or the warm units'
		// plain structs: Marshal cannot fail.
		val, _ := json.Marshal(v)
		b.Write(key)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// sortedCodes returns the map's status codes in ascending order.
func sortedCodes(m map[int]uint64) []int {
	codes := make([]int, 0, len(m))
	for code := range m {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	return codes
}
