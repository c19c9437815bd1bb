// This file checks /metrics output with the Prometheus project's own parser
// of the text exposition format (expfmt, test-only), plus the rules a
// scraper relies on that a parser accepts anyway: every family declared,
// counters non-negative, histograms cumulative and ending at +Inf.

package status

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// checkExposition parses text as the Prometheus text format and returns the
// samples keyed by `name{k="v",...}` (labels sorted; histograms as their
// _bucket, _sum and _count series), or the first fault found.
func checkExposition(text string) (map[string]float64, error) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("exposition does not end with a newline")
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	if err := checkLayout(text, families); err != nil {
		return nil, err
	}
	series := map[string]float64{}
	for name, f := range families {
		switch f.GetType() {
		case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM:
		default:
			return nil, fmt.Errorf("%s: type %v: every family must be declared counter, gauge or histogram", name, f.GetType())
		}
		for _, m := range f.GetMetric() {
			if m.TimestampMs != nil {
				return nil, fmt.Errorf("%s: sample with a timestamp", name)
			}
			labels := m.GetLabel()
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v := m.GetCounter().GetValue()
				if v < 0 {
					return nil, fmt.Errorf("%s: negative counter %v", name, v)
				}
				series[seriesKey(name, labels, "", "")] = v
			case dto.MetricType_GAUGE:
				series[seriesKey(name, labels, "", "")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				if err := checkHistogram(name, m.GetHistogram()); err != nil {
					return nil, err
				}
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					series[seriesKey(name+"_bucket", labels, "le", formatLE(b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
				series[seriesKey(name+"_count", labels, "", "")] = float64(h.GetSampleCount())
				series[seriesKey(name+"_sum", labels, "", "")] = h.GetSampleSum()
			}
		}
	}
	return series, nil
}

// checkLayout enforces what the parser lets pass: a family's samples are
// contiguous, and no series is written twice.
func checkLayout(text string, families map[string]*dto.MetricFamily) error {
	seen := map[string]bool{}
	finished := map[string]bool{}
	current := ""
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, _, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '}'); i >= 0 {
			id = line[:i+1]
		}
		if seen[id] {
			return fmt.Errorf("line %d: series %s repeated", n+1, id)
		}
		seen[id] = true
		name, _, _ := strings.Cut(id, "{")
		fam := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base].GetType() == dto.MetricType_HISTOGRAM {
				fam = base
			}
		}
		if fam != current {
			if finished[fam] {
				return fmt.Errorf("line %d: samples of %s are not contiguous", n+1, fam)
			}
			finished[current] = true
			current = fam
		}
	}
	return nil
}

// checkHistogram enforces the bucket rules of one histogram.
func checkHistogram(name string, h *dto.Histogram) error {
	prevLE, prevCount := math.Inf(-1), uint64(0)
	buckets := h.GetBucket()
	for _, b := range buckets {
		if b.GetUpperBound() <= prevLE {
			return fmt.Errorf("%s: le=%v not above %v", name, b.GetUpperBound(), prevLE)
		}
		if b.GetCumulativeCount() < prevCount {
			return fmt.Errorf("%s: bucket le=%v count %d below previous %d: not cumulative", name, b.GetUpperBound(), b.GetCumulativeCount(), prevCount)
		}
		prevLE, prevCount = b.GetUpperBound(), b.GetCumulativeCount()
	}
	if len(buckets) == 0 || !math.IsInf(prevLE, 1) {
		return fmt.Errorf("%s: no +Inf bucket", name)
	}
	if prevCount != h.GetSampleCount() {
		return fmt.Errorf("%s: +Inf bucket %d != _count %d", name, prevCount, h.GetSampleCount())
	}
	if h.SampleSum == nil {
		return fmt.Errorf("%s: _sum missing", name)
	}
	return nil
}

func formatLE(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// seriesKey names a series as `name{k="v",...}` with labels sorted, which
// for the single-label series written here is exactly how the line reads.
func seriesKey(name string, labels []*dto.LabelPair, extraName, extraValue string) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+strconv.Quote(l.GetValue()))
	}
	if extraName != "" {
		parts = append(parts, extraName+"="+strconv.Quote(extraValue))
	}
	if len(parts) == 0 {
		return name
	}
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// TestExpositionCheckerRejectsMalformedText shows the checker is strict enough
// for the /metrics tests built on it to fail when the output is wrong.
func TestExpositionCheckerRejectsMalformedText(t *testing.T) {
	const okHist = "# TYPE h histogram\n" +
		"h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"
	tests := []struct {
		name, text string
		wantErr    bool
	}{
		{"valid counter and histogram pass", "# HELP c A counter.\n# TYPE c counter\nc{status=\"200\"} 3\n" + okHist, false},
		{"plain comments are allowed", "# just a note\n# TYPE g gauge\ng 1\n", false},
		{"escaped label values parse", "# TYPE g gauge\ng{x=\"a\\\"b\\\\c\\n\"} 1\n", false},
		{"missing final newline", "# TYPE g gauge\ng 1", true},
		{"sample without TYPE", "g 1\n", true},
		{"second HELP", "# HELP g a\n# HELP g b\n# TYPE g gauge\ng 1\n", true},
		{"second TYPE", "# TYPE g gauge\n# TYPE g gauge\ng 1\n", true},
		{"TYPE after samples", "# TYPE g gauge\ng 1\n# TYPE g counter\n", true},
		{"unknown type", "# TYPE g meter\ng 1\n", true},
		{"no value", "# TYPE g gauge\ng\n", true},
		{"trailing timestamp", "# TYPE g gauge\ng 1 1700000000\n", true},
		{"non-numeric value", "# TYPE g gauge\ng one\n", true},
		{"bad metric name", "# TYPE 1g gauge\n1g 1\n", true},
		{"unterminated label", "# TYPE g gauge\ng{x=\"a} 1\n", true},
		{"bad escape", "# TYPE g gauge\ng{x=\"\\t\"} 1\n", true},
		{"repeated series", "# TYPE g gauge\ng 1\ng 2\n", true},
		{"family not contiguous", "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"y\"} 2\n", true},
		{"negative counter", "# TYPE c counter\nc -1\n", true},
		{"buckets not cumulative", "# TYPE h histogram\n" +
			"h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n", true},
		{"no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 1\n", true},
		{"+Inf differs from count", "# TYPE h histogram\n" +
			"h_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 3\n", true},
		{"missing sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkExposition(tt.text)
			if (err != nil) != tt.wantErr {
				t.Errorf("checkExposition error = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}
