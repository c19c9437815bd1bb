// This file writes a Snapshot in the Prometheus text exposition format, version 0.0.4.

package status

import (
	"bytes"
	"math"
	"strconv"
)

// metricsContentType is what Prometheus expects for the 0.0.4 text format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// promWriter appends metric families to a buffer. Help texts are this
// package's own constants; label values that come from outside (program
// paths) are escaped by label.
type promWriter struct{ b bytes.Buffer }

// family writes the HELP and TYPE lines that open a metric family.
func (p *promWriter) family(name, typ, help string) {
	p.b.WriteString("# HELP " + name + " " + help + "\n")
	p.b.WriteString("# TYPE " + name + " " + typ + "\n")
}

// sample writes one `name{labels} value` line; labels is "" or `key="value"`.
func (p *promWriter) sample(name, labels string, v float64) {
	p.b.WriteString(name)
	if labels != "" {
		p.b.WriteString("{" + labels + "}")
	}
	p.b.WriteByte(' ')
	p.b.WriteString(formatFloat(v))
	p.b.WriteByte('\n')
}

// single writes a family that has exactly one unlabelled sample.
func (p *promWriter) single(name, typ, help string, v float64) {
	p.family(name, typ, help)
	p.sample(name, "", v)
}

// formatFloat renders a sample value or bucket bound the way Prometheus parses it.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	// Plain decimals read better than exponents for timestamps and byte counts
	// (1710064800, not 1.7100648e+09); only astronomically large values need 'g'.
	if math.Abs(v) < 1e21 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// appendMetrics renders snap as Prometheus text. Family order is fixed so that
// successive scrapes diff cleanly.
func appendMetrics(snap Snapshot) []byte {
	var p promWriter

	p.family("cgibridge_requests_total", "counter", "Finished requests by HTTP status (0: no status was sent).")
	for _, code := range sortedCodes(snap.ByStatus) {
		p.sample("cgibridge_requests_total", `status="`+strconv.Itoa(code)+`"`, float64(snap.ByStatus[code]))
	}

	p.single("cgibridge_accepted_requests_total", "counter", "FastCGI requests begun.", float64(snap.Accepted))
	p.single("cgibridge_active_requests", "gauge", "Programs running now.", float64(snap.Active))
	p.single("cgibridge_max_active_requests", "gauge", "Most programs running at once since start.", float64(snap.MaxActive))
	p.single("cgibridge_queued_requests", "gauge", "Requests waiting for a --max-procs slot now.", float64(snap.Queued))
	p.single("cgibridge_queue_waits_total", "counter", "Requests that had to wait for a --max-procs slot.", float64(snap.QueueWaits))
	p.single("cgibridge_max_procs", "gauge", "Configured --max-procs.", float64(snap.MaxProcs))
	p.single("cgibridge_slow_requests_total", "counter", "Requests marked slow.", float64(snap.Slow))
	p.single("cgibridge_timeouts_total", "counter", "Requests whose program was killed at --timeout.", float64(snap.Timeouts))
	p.single("cgibridge_aborts_total", "counter", "Requests the client abandoned.", float64(snap.Aborts))
	p.single("cgibridge_refused_requests_total", "counter", "Requests turned away before a program ran.", float64(snap.Refused))
	p.single("cgibridge_failed_requests_total", "counter", "Requests whose program failed to start or gave bad output.", float64(snap.Failures))
	p.single("cgibridge_bytes_received_total", "counter", "Request body bytes received.", float64(snap.BytesIn))
	p.single("cgibridge_bytes_sent_total", "counter", "Response body bytes sent.", float64(snap.BytesOut))

	const hist = "cgibridge_request_duration_seconds"
	p.family(hist, "histogram", "Time from accepting a request to finishing it.")
	for _, b := range snap.Duration.Buckets {
		p.sample(hist+"_bucket", `le="`+formatFloat(b.UpperBound)+`"`, float64(b.Count))
	}
	p.sample(hist+"_sum", "", snap.Duration.Sum)
	p.sample(hist+"_count", "", float64(snap.Duration.Count))

	p.single("cgibridge_uptime_seconds", "gauge", "Seconds since the bridge started.", snap.Uptime.Seconds())
	appendWarmMetrics(&p, snap.Warm)
	p.single("cgibridge_start_time_seconds", "gauge", "Start time of the bridge since the Unix epoch in seconds.",
		float64(snap.StartTime.Unix())+float64(snap.StartTime.Nanosecond())/1e9)
	return p.b.Bytes()
}
