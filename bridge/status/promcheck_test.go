// This file holds a small checker for the Prometheus text format 0.0.4, used to
// validate /metrics line by line, and the tests that show it rejects bad input.

package status

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// promSample is one parsed sample line.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// promFamily is one metric family as declared by its HELP and TYPE lines.
type promFamily struct {
	typ     string
	help    bool
	samples []promSample
}

// checkExposition parses text as Prometheus exposition format 0.0.4 and enforces:
// every non-comment line is `name{labels} value`; HELP and TYPE at most once per
// family and TYPE before its samples; a family's samples are contiguous; no series
// repeats; counters are non-negative; a histogram's buckets have ascending le,
// non-decreasing counts, end at +Inf, and +Inf equals _count, with _sum present.
// It returns the samples keyed by `name{k="v",...}` as written.
func checkExposition(text string) (map[string]float64, error) {
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("exposition does not end with a newline")
	}
	families := map[string]*promFamily{}
	series := map[string]float64{}
	finished := map[string]bool{} // families whose samples are behind us
	current := ""
	fam := func(name string) *promFamily {
		if families[name] == nil {
			families[name] = &promFamily{}
		}
		return families[name]
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		lineNo := n + 1
		if strings.HasPrefix(line, "#") {
			fields := strings.SplitN(line, " ", 4)
			if len(fields) < 3 || (fields[1] != "HELP" && fields[1] != "TYPE") {
				continue // a plain comment
			}
			name := fields[2]
			if !validMetricName(name) {
				return nil, fmt.Errorf("line %d: bad metric name %q", lineNo, name)
			}
			f := fam(name)
			if len(f.samples) > 0 {
				return nil, fmt.Errorf("line %d: %s for %s after its samples", lineNo, fields[1], name)
			}
			if fields[1] == "HELP" {
				if f.help {
					return nil, fmt.Errorf("line %d: second HELP for %s", lineNo, name)
				}
				f.help = true
				continue
			}
			if f.typ != "" {
				return nil, fmt.Errorf("line %d: second TYPE for %s", lineNo, name)
			}
			if len(fields) != 4 {
				return nil, fmt.Errorf("line %d: TYPE without a type", lineNo)
			}
			switch fields[3] {
			case "counter", "gauge", "histogram", "summary", "untyped":
				f.typ = fields[3]
			default:
				return nil, fmt.Errorf("line %d: unknown type %q", lineNo, fields[3])
			}
			continue
		}
		s, err := parseSampleLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		famName := s.name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(s.name, suffix)
			if ok && families[base] != nil && families[base].typ == "histogram" {
				famName = base
			}
		}
		f := families[famName]
		if f == nil || f.typ == "" {
			return nil, fmt.Errorf("line %d: sample %s has no TYPE line before it", lineNo, s.name)
		}
		if famName != current {
			if finished[famName] {
				return nil, fmt.Errorf("line %d: samples of %s are not contiguous", lineNo, famName)
			}
			finished[current] = true
			current = famName
		}
		key := seriesKey(s)
		if _, dup := series[key]; dup {
			return nil, fmt.Errorf("line %d: series %s repeated", lineNo, key)
		}
		series[key] = s.value
		if f.typ == "counter" && !(s.value >= 0) {
			return nil, fmt.Errorf("line %d: counter %s is %v", lineNo, key, s.value)
		}
		f.samples = append(f.samples, s)
	}
	for name, f := range families {
		if f.typ == "histogram" {
			if err := checkHistogram(name, f.samples); err != nil {
				return nil, err
			}
		}
	}
	return series, nil
}

// checkHistogram enforces the bucket rules of one histogram family.
func checkHistogram(name string, samples []promSample) error {
	prevLE, prevCount := math.Inf(-1), -1.0
	var inf, count, sum *float64
	for _, s := range samples {
		v := s.value
		switch s.name {
		case name + "_bucket":
			leText, ok := s.labels["le"]
			if !ok {
				return fmt.Errorf("%s: bucket without le", name)
			}
			le, err := parsePromFloat(leText)
			if err != nil {
				return fmt.Errorf("%s: bad le %q", name, leText)
			}
			if inf != nil {
				return fmt.Errorf("%s: bucket le=%s after +Inf", name, leText)
			}
			if le <= prevLE {
				return fmt.Errorf("%s: le=%s not above %v", name, leText, prevLE)
			}
			if v < prevCount {
				return fmt.Errorf("%s: bucket le=%s count %v below previous %v: not cumulative", name, leText, v, prevCount)
			}
			prevLE, prevCount = le, v
			if math.IsInf(le, 1) {
				inf = &v
			}
		case name + "_count":
			count = &v
		case name + "_sum":
			sum = &v
		default:
			return fmt.Errorf("%s: unexpected sample %s in histogram", name, s.name)
		}
	}
	switch {
	case inf == nil:
		return fmt.Errorf("%s: no +Inf bucket", name)
	case count == nil || sum == nil:
		return fmt.Errorf("%s: _count or _sum missing", name)
	case *inf != *count:
		return fmt.Errorf("%s: +Inf bucket %v != _count %v", name, *inf, *count)
	}
	return nil
}

// parseSampleLine parses `name{k="v",...} value` (no timestamp: we never write one).
func parseSampleLine(line string) (promSample, error) {
	s := promSample{labels: map[string]string{}}
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' {
		i++
	}
	s.name = line[:i]
	if !validMetricName(s.name) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		var err error
		rest, err = parseLabels(rest[1:], s.labels)
		if err != nil {
			return s, err
		}
	}
	valueText, ok := strings.CutPrefix(rest, " ")
	if !ok || valueText == "" || strings.ContainsAny(valueText, " \t") {
		return s, fmt.Errorf("want exactly one value after %q, got %q", s.name, rest)
	}
	v, err := parsePromFloat(valueText)
	if err != nil {
		return s, fmt.Errorf("bad value %q", valueText)
	}
	s.value = v
	return s, nil
}

// parseLabels reads `k="v",...}` into labels and returns what follows the brace.
func parseLabels(in string, labels map[string]string) (string, error) {
	for {
		if rest, ok := strings.CutPrefix(in, "}"); ok {
			return rest, nil
		}
		eq := strings.Index(in, `="`)
		if eq < 0 {
			return "", fmt.Errorf("label without =\" in %q", in)
		}
		key := in[:eq]
		if !validLabelName(key) {
			return "", fmt.Errorf("bad label name %q", key)
		}
		if _, dup := labels[key]; dup {
			return "", fmt.Errorf("label %q repeated", key)
		}
		in = in[eq+2:]
		var val strings.Builder
		for {
			if in == "" {
				return "", fmt.Errorf("unterminated value of label %q", key)
			}
			c := in[0]
			in = in[1:]
			if c == '"' {
				break
			}
			if c == '\\' {
				if in == "" {
					return "", fmt.Errorf("dangling backslash in label %q", key)
				}
				switch in[0] {
				case '\\', '"':
					val.WriteByte(in[0])
				case 'n':
					val.WriteByte('\n')
				default:
					return "", fmt.Errorf("bad escape \\%c in label %q", in[0], key)
				}
				in = in[1:]
				continue
			}
			if c == '\n' {
				return "", fmt.Errorf("raw newline in label %q", key)
			}
			val.WriteByte(c)
		}
		labels[key] = val.String()
		in = strings.TrimPrefix(in, ",")
	}
}

func parsePromFloat(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

// seriesKey names a series as `name{k="v",...}` with labels sorted, which for
// the single-label series written here is exactly how the line reads.
func seriesKey(s promSample) string {
	if len(s.labels) == 0 {
		return s.name
	}
	parts := make([]string, 0, len(s.labels))
	for k, v := range s.labels {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	slices.Sort(parts)
	return s.name + "{" + strings.Join(parts, ",") + "}"
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	return validMetricName(s) && !strings.Contains(s, ":")
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
		{"TYPE after samples", "# TYPE g gauge\ng 1\n# HELP g late\n", true},
		{"unknown type", "# TYPE g meter\ng 1\n", true},
		{"no value", "# TYPE g gauge\ng\n", true},
		{"two spaces", "# TYPE g gauge\ng  1\n", true},
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
		{"le not ascending", "# TYPE h histogram\n" +
			"h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n", true},
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
