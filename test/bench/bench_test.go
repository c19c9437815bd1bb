// This file holds the benchmark's smoke test — every program through both backends,
// every response checked, the reports generated from the small sample — and unit
// tests of the statistics and the reporting. It never runs the full benchmark.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	_ = harness.RemoveBinary()
	os.Exit(code)
}

// smokeRequests is how many checked requests each program gets per backend.
const smokeRequests = 150

func TestSmokeEveryProgramThroughBothBackends(t *testing.T) {
	bed, err := SetUp(BedConfig{Procs: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("cgibridge output:\n%s\nnginx error.log:\n%s", bed.Bridge.Logs.String(), bed.Nginx.ErrorLog())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	pl := Plan{
		Procs: 8, Repeats: 1, Duration: 40 * time.Second, MaxRequests: smokeRequests,
		Concurrency: []int{4}, Programs: []string{"c", "sh", "perl", "python", "sleep", "echo"},
		OpenPrograms: []string{"c"}, RateFractions: []float64{0.2}, OpenDuration: time.Second,
		Warmup: 100 * time.Millisecond, OverheadRounds: 2, OverheadN: 10,
		UploadBytes: 4 << 20, UploadRepeats: 1,
	}
	if testing.Verbose() {
		pl.Log = os.Stderr
	}
	res, err := pl.Execute(ctx, bed)
	if err != nil {
		t.Fatal(err)
	}

	if got, want := len(res.Closed), len(pl.Programs)*len(Backends); got != want {
		t.Fatalf("%d closed-loop runs, want %d", got, want)
	}
	for _, r := range append(res.Closed, res.Open...) {
		if r.Errors > 0 {
			t.Errorf("%s %s on %s: %d of %d requests failed, first: %s", r.Mode, r.Program, r.Backend, r.Errors, r.Requests, r.FirstError)
		}
	}
	for _, r := range res.Closed {
		if r.Requests != smokeRequests {
			t.Errorf("%s on %s: %d requests, want %d", r.Program, r.Backend, r.Requests, smokeRequests)
		}
	}
	if len(res.Open) != 2 || res.Open[0].Requests == 0 || res.Open[1].Requests == 0 {
		t.Errorf("open loop: want one run with requests per backend, got %+v", res.Open)
	}
	if o := res.Overhead; o == nil || len(o.BareUS) != 2 || o.BareUS[0] <= 0 || o.BridgeUS[0] <= 0 || o.FcgiwrapUS[0] <= 0 {
		t.Errorf("overhead not measured: %+v", res.Overhead)
	}
	if m := res.Memory; m == nil || m.BridgeIdleStartKiB <= 0 || len(m.BridgeUploadKiB) != 1 || m.FcgiwrapIdleKiB <= 0 {
		t.Errorf("memory not measured: %+v", res.Memory)
	}

	checkReports(t, res)
}

// checkReports writes every output from res and checks each one parses and holds
// what the run measured.
func checkReports(t *testing.T, res *Results) {
	t.Helper()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "results.json")
	if err := WriteJSON(jsonPath, res); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results.json does not parse: %v", err)
	}
	if len(back.Closed) != len(res.Closed) || back.Machine.CPUs == 0 || back.Memory == nil {
		t.Errorf("results.json lost data: %d closed runs (want %d), machine %+v", len(back.Closed), len(res.Closed), back.Machine)
	}

	plots, err := WritePlots(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(plots) != len(openPrograms(res.Open)) {
		t.Errorf("%d plots for %d open-loop programs", len(plots), len(openPrograms(res.Open)))
	}
	for _, p := range plots {
		svg, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		checkSVG(t, svg, 4)
	}

	md := DocsPage(res, "plots")
	for _, want := range []string{
		"| CPUs (nproc) |", "### Targets", "bridge overhead over bare fork+exec+wait",
		"idle RSS ≤ 20 MiB", "![latency against offered load, c](plots/latency-c.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	for _, p := range res.Config.Programs {
		if !strings.Contains(md, "| "+p+" | 4 |") {
			t.Errorf("markdown has no closed-loop row for %s:\n%s", p, md)
		}
	}
}

// checkSVG fails unless svg is well-formed XML with at least lines polylines.
func checkSVG(t *testing.T, svg []byte, lines int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	polylines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines < lines {
		t.Errorf("SVG has %d polylines, want %d (p50 and p99 per backend)", polylines, lines)
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty is zero", nil, 50, 0},
		{"single value at any percentile", ms(7), 99.9, 7 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the maximum", hundred, 99.9, 100 * time.Millisecond},
		{"p0 is the minimum", hundred, 0, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestJudgeMarksRunsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		run    Run
		valid  bool
		reason string
	}{
		{"clean closed run", Run{Mode: "closed", Requests: 100}, true, ""},
		{"closed run ignores lateness", Run{Mode: "closed", Requests: 100, Late: 50}, true, ""},
		{"one failure", Run{Mode: "open", Requests: 100, Errors: 1}, false, "requests failed"},
		{"1% late is tolerated", Run{Mode: "open", Requests: 100, Late: 1}, true, ""},
		{"over 1% late", Run{Mode: "open", Requests: 100, Late: 2}, false, "generator fell behind its schedule"},
		{"nothing completed", Run{Mode: "open"}, false, "no requests completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run
			judge(&r)
			if r.Valid != tt.valid || r.Invalid != tt.reason {
				t.Errorf("valid %v (%q), want %v (%q)", r.Valid, r.Invalid, tt.valid, tt.reason)
			}
		})
	}
}

func TestPoissonScheduleHasTheOfferedRate(t *testing.T) {
	for _, rate := range []float64{10, 500, 5000} {
		// About 5000 arrivals whatever the rate, so the statistics are as tight.
		dur := time.Duration(5000 / rate * float64(time.Second))
		sched := PoissonSchedule(rand.New(rand.NewPCG(3, 4)), rate, dur)
		if n := float64(len(sched)); n < 4750 || n > 5250 {
			t.Errorf("rate %v: %v arrivals in %v, want about 5000", rate, n, dur)
		}
		for i := 1; i < len(sched); i++ {
			if sched[i] < sched[i-1] || sched[i] >= dur {
				t.Fatalf("rate %v: offset %d (%v) out of order or past the end", rate, i, sched[i])
			}
		}
		// Exponential gaps: their standard deviation equals their mean (a fixed
		// interval would have none).
		var sum, sq float64
		for i := 1; i < len(sched); i++ {
			g := (sched[i] - sched[i-1]).Seconds()
			sum, sq = sum+g, sq+g*g
		}
		n := float64(len(sched) - 1)
		mean := sum / n
		sd := (sq/n - mean*mean)
		if cv := sd / (mean * mean); cv < 0.9 || cv > 1.1 {
			t.Errorf("rate %v: variance/mean² of gaps %.2f, want about 1", rate, cv)
		}
	}
}

func TestOpenLoopCountsLatencyFromTheSchedule(t *testing.T) {
	// A server that takes 30 ms and serves one request at a time, offered 100/s:
	// a closed-loop view would see 30 ms; from the schedule, the queue shows.
	slot := make(chan struct{}, 1)
	do := func(ctx context.Context) error {
		slot <- struct{}{}
		defer func() { <-slot }()
		time.Sleep(30 * time.Millisecond)
		return nil
	}
	r := OpenLoop(context.Background(), do, 100, 500*time.Millisecond, 1)
	if r.P99 < 100 {
		t.Errorf("p99 %.1f ms: queueing delay behind a 30 ms single server at 100/s is missing", r.P99)
	}
	// The generator kept to its schedule; the server fell behind: a valid run
	// whose achieved rate is below the offered one.
	if !r.Valid || r.Rate > 50 {
		t.Errorf("want a valid run achieving about 33/s of 100/s offered, got %+v", r)
	}
}

func TestOpenLoopFallingBehindIsInvalid(t *testing.T) {
	// Every request hangs for 300 ms: at 1000/s the cap on requests in flight is
	// reached after 200 ms, and later sends wait past their schedule.
	release := make(chan struct{})
	time.AfterFunc(300*time.Millisecond, func() { close(release) })
	do := func(ctx context.Context) error { <-release; return nil }
	r := OpenLoop(context.Background(), do, 1000, 500*time.Millisecond, 1)
	if r.Valid || r.Invalid != "generator fell behind its schedule" || r.Late == 0 {
		t.Errorf("want invalid for lateness, got %+v", r)
	}
}

func TestClosedRowsPairRepeatsAndJudgeTargets(t *testing.T) {
	run := func(be string, rep int, rate, p99 float64) Run {
		return Run{Backend: be, Program: "c", Mode: "closed", Concurrency: 8, Repeat: rep, Rate: rate, P99: p99, Requests: 10, Valid: true}
	}
	runs := []Run{
		run("cgibridge", 0, 110, 9), run("fcgiwrap", 0, 100, 10),
		run("fcgiwrap", 1, 100, 10), run("cgibridge", 1, 90, 12),
		run("cgibridge", 2, 105, 9), run("fcgiwrap", 2, 100, 10),
	}
	rows := ClosedRows(runs)
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	r := rows[0]
	if r.Pairs != 3 || r.RateRatio != 1.05 || r.RLo != 0.9 || r.RHi != 1.1 {
		t.Errorf("throughput ratio %.2f (%.2f–%.2f) over %d pairs, want 1.05 (0.90–1.10) over 3", r.RateRatio, r.RLo, r.RHi, r.Pairs)
	}
	if r.P99Ratio != 0.9 || !r.ThroughputMet || !r.LatencyMet {
		t.Errorf("p99 ratio %.2f, met %v/%v: want 0.90, met/met", r.P99Ratio, r.ThroughputMet, r.LatencyMet)
	}

	runs[0].Valid, runs[0].Invalid = false, "requests failed"
	if r := ClosedRows(runs)[0]; r.ThroughputMet || r.Invalid == "" {
		t.Errorf("a row with an invalid run counts as met: %+v", r)
	}
}

func TestLatencySVGDrawsInvalidRunsHollow(t *testing.T) {
	runs := []Run{
		{Backend: "cgibridge", Program: "c", Mode: "open", OfferedRate: 100, P50: 2, P99: 5, Requests: 10, Valid: true},
		{Backend: "cgibridge", Program: "c", Mode: "open", OfferedRate: 200, P50: 40, P99: 900, Requests: 10},
		{Backend: "fcgiwrap", Program: "c", Mode: "open", OfferedRate: 100, P50: 3, P99: 6, Requests: 10, Valid: true},
		{Backend: "fcgiwrap", Program: "c", Mode: "open", OfferedRate: 200, P50: 30, P99: 700, Requests: 10, Valid: true},
	}
	svg := LatencySVG("c", runs)
	checkSVG(t, []byte(svg), 4)
	// Two hollow points (p50 and p99 of the invalid run) plus the legend's.
	if n := strings.Count(svg, `fill="white" stroke="#1f62b4"`); n != 2 {
		t.Errorf("%d hollow cgibridge points, want 2", n)
	}
	if strings.Contains(svg, `fill="white" stroke="#d4451b"`) {
		t.Error("a valid fcgiwrap point is drawn hollow")
	}
	for _, tick := range []string{">1 ms<", ">1 s<"} {
		if !strings.Contains(svg, tick) {
			t.Errorf("latency axis lacks the %s tick", tick)
		}
	}
}

// warmSmokeRequests is how many checked requests each warm-section run gets.
const warmSmokeRequests = 200

func TestSmokeWarmMode(t *testing.T) {
	wp := &WarmPlan{
		Programs: []string{"libfcgi", "php"}, Procs: []int{2}, Concurrency: []int{8},
		Repeats: 1, Duration: 20 * time.Second, MaxRequests: warmSmokeRequests,
		MemPools: 4, MemProcs: 2,
	}
	bed, err := SetUp(BedConfig{Procs: 8, Warm: wp})
	if err != nil {
		t.Fatal(err)
	}
	var direct []*directSet
	for _, s := range bed.warm.Sets {
		for _, d := range s.Direct {
			direct = append(direct, d)
		}
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
		for _, d := range direct {
			if left := d.alive(); len(left) > 0 {
				t.Errorf("spawn-fcgi children %v still running after Close", left)
			}
		}
		if t.Failed() {
			for _, s := range bed.warm.Sets {
				t.Logf("warm cgibridge N=%d output:\n%s", s.N, s.Bridge.Logs.String())
			}
			t.Logf("nginx error.log:\n%s", bed.Nginx.ErrorLog())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	pl := Plan{Procs: 8, Warmup: 200 * time.Millisecond, Warm: wp}
	if testing.Verbose() {
		pl.Log = os.Stderr
	}
	res, err := pl.Execute(ctx, bed)
	if err != nil {
		t.Fatal(err)
	}
	w := res.Warm
	if w == nil {
		t.Fatal("no warm results")
	}
	if got, want := len(w.Direct), len(wp.Programs)*len(wp.Procs)*len(wp.Concurrency)*2; got != want {
		t.Errorf("%d warm-against-direct runs, want %d", got, want)
	}
	if got, want := len(w.Exec), len(wp.Programs)*len(wp.Concurrency)*2; got != want {
		t.Errorf("%d warm-against-exec runs, want %d", got, want)
	}
	for _, r := range append(slices.Clone(w.Direct), w.Exec...) {
		if r.Errors > 0 || r.Requests != warmSmokeRequests {
			t.Errorf("%s on %s: %d requests, %d failed (first: %s), want %d without failures", r.Program, r.Backend, r.Requests, r.Errors, r.FirstError, warmSmokeRequests)
		}
		// Every side's processes were found and measured.
		if r.CPU.Nginx <= 0 || r.CPU.Programs <= 0 || r.CPU.Client <= 0 || (r.Backend != sideDirect) != (r.CPU.Bridge > 0) {
			t.Errorf("%s on %s: CPU per request not measured: %+v", r.Program, r.Backend, r.CPU)
		}
	}
	m := w.Memory
	if m == nil || m.Short || len(m.Children) != wp.MemPools || m.ChildrenTotal != wp.MemPools*wp.MemProcs || m.BridgeKiB <= 0 || m.ChildrenPSSKiB <= 0 {
		t.Errorf("warm memory not measured: %+v", m)
	}

	direct2 := WarmRows(w.Direct, sideWarm, sideDirect)
	for _, r := range direct2 {
		t.Logf("%s N=%d c=%d: warm/direct throughput %.2f (target ≥ %.1f), p99 %.2f (target ≤ %.1f); CPU µs/req: bridge %.0f, server warm %.0f direct %.0f",
			r.Program, r.Procs, r.Concurrency, r.RateRatio, targetWarmRate, r.P99Ratio, targetWarmP99, r.ACPU.Bridge, r.ACPU.Server(), r.BCPU.Server())
	}
	for _, r := range WarmRows(w.Exec, sideWarm, sideExec) {
		t.Logf("%s c=%d: warm/exec throughput %.1f×", r.Program, r.Concurrency, r.RateRatio)
	}
	if m != nil {
		t.Logf("memory: cgibridge %s with %d pools of %d children (target ≤ 25 MiB with 4 of 8), children %s RSS, %s PSS",
			mib(m.BridgeKiB), m.Pools, m.ProcsPerPool, mib(m.ChildrenRSSKiB), mib(m.ChildrenPSSKiB))
	}

	md := Markdown(res, ".")
	for _, want := range []string{
		"## Warm mode", "### Warm-mode targets", "| libfcgi | 2 | 8 |", "| php | 2 | 8 |",
		"### CPU time per request", "### Warm pool against exec mode", "### Memory with idle pools",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil || back.Warm == nil || len(back.Warm.Direct) != len(w.Direct) || back.Warm.Direct[0].CPU != w.Direct[0].CPU {
		t.Errorf("the warm results do not survive JSON (%v)", err)
	}
}

func TestWarmRowsPairSidesAndPoolSizes(t *testing.T) {
	run := func(side, compare string, procs, rep int, rate, p99 float64) WarmRun {
		return WarmRun{Run: Run{Backend: side, Program: "php", Mode: "closed", Concurrency: 8, Repeat: rep, Rate: rate, P99: p99, Requests: 10, Valid: true},
			Compare: compare, Procs: procs, CPU: CPUPerRequest{Bridge: rate / 100}}
	}
	runs := []WarmRun{
		run(sideWarm, sideDirect, 2, 0, 80, 3), run(sideDirect, sideDirect, 2, 0, 100, 2),
		run(sideDirect, sideDirect, 8, 0, 100, 2), run(sideWarm, sideDirect, 8, 0, 90, 2),
		run(sideDirect, sideDirect, 2, 1, 100, 2), run(sideWarm, sideDirect, 2, 1, 70, 4),
		run(sideWarm, sideExec, 2, 0, 1000, 1), run(sideExec, sideExec, 0, 0, 50, 20),
	}
	rows := WarmRows(runs, sideWarm, sideDirect)
	if len(rows) != 2 || rows[0].Procs != 2 || rows[1].Procs != 8 {
		t.Fatalf("want rows for N=2 and N=8, got %+v", rows)
	}
	if r := rows[0]; r.Pairs != 2 || r.RateRatio != 0.75 || r.RLo != 0.7 || r.P99Ratio != 1.75 || r.ACPU.Bridge != 0.75 || r.p99Met() {
		t.Errorf("N=2 row: %+v", r)
	}
	if r := rows[0]; r.rateMet() || !rows[1].rateMet() {
		t.Errorf("0.75 must miss the %.1f target and 0.9 meet it", targetWarmRate)
	}
	ex := WarmRows(runs, sideWarm, sideExec)
	if len(ex) != 1 || ex[0].Pairs != 1 || ex[0].RateRatio != 20 || ex[0].Procs != 2 {
		t.Errorf("exec rows: %+v", ex)
	}
}

// zygoteSmokeRequests is how many checked requests each zygote smoke run gets.
const zygoteSmokeRequests = 20

// TestSmokeZygote runs a tiny zygote section: the Python hello at concurrency 1
// on the --warm bridge and in exec mode, and the memory of two warm helpers. It
// checks that the warm side was served warm by the bridge's own count, that
// the ratio and the CPU times were computed, and that the report shows them.
func TestSmokeZygote(t *testing.T) {
	zp := &ZygotePlan{
		Programs: []string{"py-hello"}, Concurrency: []int{1}, Repeats: 1,
		Duration: 20 * time.Second, MaxRequests: zygoteSmokeRequests,
		MemScripts: 2, MemPrograms: []string{"py-hello", "perl-tiny"},
	}
	bed, err := SetUp(BedConfig{Procs: 4, Zygote: zp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("zygote cgibridge output:\n%s\nnginx error.log:\n%s", bed.zygote.Warm.Logs.String(), bed.Nginx.ErrorLog())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	pl := Plan{Procs: 4, Warmup: 100 * time.Millisecond, Zygote: zp}
	if testing.Verbose() {
		pl.Log = os.Stderr
	}
	res, err := pl.Execute(ctx, bed)
	if err != nil {
		t.Fatal(err)
	}
	z := res.Zygote
	if z == nil || len(z.Scripts) != 1 || z.Scripts[0].Decision != sideWarm {
		t.Fatalf("py-hello not decided warm: %+v", z)
	}
	if len(z.Runs) != 2 {
		t.Fatalf("%d zygote runs, want a warm and an exec one", len(z.Runs))
	}
	for _, r := range z.Runs {
		if r.Errors > 0 || r.Requests != zygoteSmokeRequests {
			t.Errorf("%s: %d requests, %d failed (first: %s), want %d without failures", r.Backend, r.Requests, r.Errors, r.FirstError, zygoteSmokeRequests)
		}
		if r.CPU.Bridge <= 0 || r.CPU.Programs <= 0 || r.CPU.Nginx <= 0 {
			t.Errorf("%s: CPU per request not measured: %+v", r.Backend, r.CPU)
		}
		switch r.Backend {
		case sideWarm:
			// The bridge's status page accounts for every request, and
			// (spares kept ready, one request at a time) serves them warm.
			if r.Warm+r.Cold != uint64(r.Requests) || r.Warm*10 < uint64(r.Requests)*9 {
				t.Errorf("warm run: %d requests, the bridge counts %d warm and %d cold (%v)", r.Requests, r.Warm, r.Cold, r.ColdReasons)
			}
		case sideExec:
			if r.Warm != 0 || r.Cold != 0 {
				t.Errorf("exec run has warm counts: %+v", r)
			}
		}
	}
	rows := ZygoteRows(z)
	if len(rows) != 1 || rows[0].Pairs != 1 || rows[0].RateRatio <= 0 || rows[0].Decision != sideWarm {
		t.Fatalf("zygote rows: %+v", rows)
	}
	t.Logf("py-hello c=1: warm/exec throughput %.1f× (target ≥ 5× on an idle machine), server CPU µs/req exec %.0f warm %.0f",
		rows[0].RateRatio, rows[0].ExecCPU.Server(), rows[0].WarmCPU.Server())
	m := z.Memory
	if m == nil || len(m.Helpers) != 2 || m.Short != "" || m.BridgeKiB <= 0 || m.HelpersAlive != 2 {
		t.Fatalf("zygote memory not measured: %+v", m)
	}
	for _, h := range m.Helpers {
		if h.Decision != sideWarm || h.PID <= 0 || h.RSSKiB <= 0 || h.PSSKiB <= 0 || h.Spares != zyExpectSpares || h.SparesPSSKiB <= 0 {
			t.Errorf("helper of %s (%s): %+v", h.File, h.Program, h)
		}
	}

	md := Markdown(res, ".")
	for _, want := range []string{
		"## Interpreter zygote (`--warm`)", "### Zygote targets", "| py-hello warm ≥ 5× exec mode |",
		"| py-hello | 1 |", "### Memory with 2 warm scripts", "| perl-tiny | 1 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil || back.Zygote == nil || len(back.Zygote.Runs) != 2 || back.Zygote.Runs[0].Warm != z.Runs[0].Warm {
		t.Errorf("the zygote results do not survive JSON (%v)", err)
	}
}

func TestZygoteRowsPairRepeatsAndJudgeTargets(t *testing.T) {
	run := func(side string, rep int, rate float64, warm, cold uint64) ZygoteRun {
		return ZygoteRun{Run: Run{Backend: side, Program: "py-hello", Mode: "closed", Concurrency: 8, Repeat: rep, Rate: rate, Requests: 10, Valid: true},
			Warm: warm, Cold: cold}
	}
	z := &Zygote{
		Scripts: []ZygoteDecision{{Program: "py-hello", Target: 5, Decision: sideWarm}},
		Runs: []ZygoteRun{
			run(sideWarm, 0, 600, 10, 0), run(sideExec, 0, 100, 0, 0),
			run(sideExec, 1, 100, 0, 0), run(sideWarm, 1, 400, 10, 0),
			run(sideWarm, 2, 550, 10, 0), run(sideExec, 2, 100, 0, 0),
		},
	}
	rows := ZygoteRows(z)
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	r := rows[0]
	if r.Pairs != 3 || r.RateRatio != 5.5 || r.RLo != 4 || r.RHi != 6 || r.Warm != 30 || !r.met() || r.verdict() != "met (≥ 5×)" {
		t.Errorf("row %+v, verdict %q: want 5.5× (4–6) over 3 pairs, met", r, r.verdict())
	}
	// Requests served cold do not count towards the target, whatever the ratio.
	z.Runs[0].Cold = 5
	if r := ZygoteRows(z)[0]; r.met() || !strings.Contains(r.verdict(), "served cold") {
		t.Errorf("a row with cold requests counts as met: %q", r.verdict())
	}
	// A script the bridge would not warm is reported as cold, with its reason.
	z.Scripts[0].Decision, z.Scripts[0].Reason = "cold", "the script uses threads"
	if r := ZygoteRows(z)[0]; r.met() || r.verdict() != "cold: the script uses threads" {
		t.Errorf("cold script: %q", r.verdict())
	}
	if md := ZygoteMarkdown(z); !strings.Contains(md, "| py-hello warm ≥ 5× exec mode | c=8: 5.5× | **cold**: the script uses threads |") {
		t.Errorf("targets table of a cold script:\n%s", md)
	}
}

func TestOpenTargetJudgesValidRatesBelowSaturation(t *testing.T) {
	rows := []ClosedRow{{Program: "c", Concurrency: 8, FWRate: 500}, {Program: "c", Concurrency: 64, FWRate: 1000}}
	run := func(be string, rate, p99 float64, valid bool) Run {
		return Run{Backend: be, Program: "c", Mode: "open", OfferedRate: rate, P99: p99, Valid: valid}
	}
	open := []Run{
		run("cgibridge", 250, 5, true), run("fcgiwrap", 250, 6, true), // met
		run("fcgiwrap", 500, 8, true), run("cgibridge", 500, 9, true), // missed
		run("cgibridge", 700, 9, true), run("fcgiwrap", 700, 20, false), // one side invalid: not judged
		run("fcgiwrap", 850, 30, true), run("cgibridge", 850, 90, true), // above 80% of 1000: not judged
	}
	if met, all := OpenTarget(open, rows); met != 1 || all != 2 {
		t.Errorf("OpenTarget = %d of %d, want 1 of 2 (saturation from the top concurrency, invalid and high rates skipped)", met, all)
	}
}
