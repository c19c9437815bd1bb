// This file holds the reporting: the raw results as JSON, the ratio tables and the
// targets as markdown, and latency-against-load plots as hand-written SVG.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	Model     string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Nginx     string `json:"nginx"`
	Fcgiwrap  string `json:"fcgiwrap"`
}

// Config is how the benchmark was run.
type Config struct {
	Command       string    `json:"command"`
	Commit        string    `json:"commit"` // git describe --always --dirty of the tree measured
	Procs         int       `json:"procs"`
	Repeats       int       `json:"repeats"`
	Seconds       float64   `json:"closed_seconds"`
	OpenSeconds   float64   `json:"open_seconds"`
	Concurrency   []int     `json:"concurrency"`
	Programs      []string  `json:"programs"`
	OpenPrograms  []string  `json:"open_programs"`
	RateFractions []float64 `json:"rate_fractions"`
	UploadBytes   int64     `json:"upload_bytes"`
}

// Results is everything one benchmark run measured: the raw JSON file.
type Results struct {
	Started  time.Time `json:"started"`
	Elapsed  float64   `json:"elapsed_seconds"`
	Machine  Machine   `json:"machine"`
	Config   Config    `json:"config"`
	Closed   []Run     `json:"closed"`
	Open     []Run     `json:"open"`
	Overhead *Overhead `json:"overhead,omitempty"`
	Memory   *Memory   `json:"memory,omitempty"`
	Warm     *Warm     `json:"warm,omitempty"`
	Zygote   *Zygote   `json:"zygote,omitempty"`
}

// Targets of DESIGN.md ("Performance targets").
const (
	targetOverheadUS  = 100
	targetIdleKiB     = 20 * 1024
	targetUploadRiseK = 8 * 1024
	// targetOpenShare is how far up fcgiwrap's saturation rate the open-loop
	// p99 target applies.
	targetOpenShare = 0.8
)

// DescribeMachine reads the facts of the machine and the tools' versions.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	// nginx prints its version on stderr.
	if bin, err := harness.NginxBinary(); err == nil {
		if out, err := exec.Command(bin, "-v").CombinedOutput(); err == nil {
			m.Nginx = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "fcgiwrap").Output(); err == nil {
		m.Fcgiwrap = "fcgiwrap " + strings.TrimSpace(string(out)) + " (Debian)"
	}
	return m
}

// WriteJSON writes res, indented, to path.
func WriteJSON(path string, res *Results) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// ReadJSON reads results written by WriteJSON.
func ReadJSON(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var res Results
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &res, nil
}

// ClosedRow is one line of the closed-loop table: a program at a concurrency, both
// backends, and the cgibridge/fcgiwrap ratios as medians of the paired repeats.
type ClosedRow struct {
	Program                   string
	Concurrency               int
	BridgeRate, FWRate        float64 // medians, requests/s
	RateRatio, RLo, RHi       float64 // median, min, max of per-repeat ratios
	BridgeP99, FWP99          float64 // medians, ms
	P99Ratio, PLo, PHi        float64
	Pairs                     int
	Invalid                   string // a run of the row was invalid, and why
	ThroughputMet, LatencyMet bool
}

// ClosedRows pairs the closed-loop runs of the two backends by program,
// concurrency and repeat, in the order the runs were made.
func ClosedRows(runs []Run) []ClosedRow {
	type key struct {
		prog string
		conc int
	}
	var order []key
	byKey := map[key]map[int][2]*Run{}
	for i := range runs {
		r := &runs[i]
		k := key{r.Program, r.Concurrency}
		if byKey[k] == nil {
			byKey[k] = map[int][2]*Run{}
			order = append(order, k)
		}
		pair := byKey[k][r.Repeat]
		if r.Backend == Cgibridge.Name {
			pair[0] = r
		} else {
			pair[1] = r
		}
		byKey[k][r.Repeat] = pair
	}
	var rows []ClosedRow
	for _, k := range order {
		row := ClosedRow{Program: k.prog, Concurrency: k.conc}
		var br, fr, bp, fp, rr, pr []float64
		for _, pair := range byKey[k] {
			if pair[0] == nil || pair[1] == nil {
				continue
			}
			for _, r := range pair {
				if !r.Valid && row.Invalid == "" {
					row.Invalid = r.Backend + ": " + r.Invalid
				}
			}
			row.Pairs++
			br, fr = append(br, pair[0].Rate), append(fr, pair[1].Rate)
			bp, fp = append(bp, pair[0].P99), append(fp, pair[1].P99)
			rr = append(rr, ratio(pair[0].Rate, pair[1].Rate))
			pr = append(pr, ratio(pair[0].P99, pair[1].P99))
		}
		row.BridgeRate, row.FWRate = median(br), median(fr)
		row.BridgeP99, row.FWP99 = median(bp), median(fp)
		row.RateRatio, row.RLo, row.RHi = median(rr), minOf(rr), maxOf(rr)
		row.P99Ratio, row.PLo, row.PHi = median(pr), minOf(pr), maxOf(pr)
		row.ThroughputMet = row.Pairs > 0 && row.Invalid == "" && row.RateRatio >= 1
		row.LatencyMet = row.Pairs > 0 && row.Invalid == "" && row.P99Ratio <= 1
		rows = append(rows, row)
	}
	return rows
}

// isTargetProgram reports whether DESIGN.md's exec-mode targets name the program:
// the hello programs; the sleep and echo programs are there for context.
func isTargetProgram(name string) bool {
	return slices.Contains([]string{"c", "sh", "perl", "python"}, name)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Min(xs)
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// Markdown renders the results section of docs/benchmarks.md. plotDir is the
// directory of the SVG files relative to the markdown file.
func Markdown(res *Results, plotDir string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m, c := res.Machine, res.Config
	p("Run of %s, %.0f s, tree %s. Command: `%s`\n\n", res.Started.UTC().Format("2006-01-02 15:04 MST"), res.Elapsed, c.Commit, c.Command)
	p("| machine | |\n|---|---|\n")
	p("| CPUs (nproc) | %d |\n| CPU model | %s |\n| kernel | %s |\n| Go | %s |\n| nginx | %s |\n| fcgiwrap | %s |\n",
		m.CPUs, m.Model, m.Kernel, m.GoVersion, m.Nginx, m.Fcgiwrap)
	p("| settings | cgibridge --max-procs %d --log-level warn; fcgiwrap -c %d under spawn-fcgi; both run programs as nobody; %d repeat(s) of %.0f s per closed-loop cell, %.0f s per open-loop rate |\n\n",
		c.Procs, c.Procs, c.Repeats, c.Seconds, c.OpenSeconds)

	rows := ClosedRows(res.Closed)
	p("### Targets\n\n| target | result | |\n|---|---|---|\n")
	var tMet, tAll, lMet int
	for _, r := range rows {
		if isTargetProgram(r.Program) {
			tAll++
			if r.ThroughputMet {
				tMet++
			}
			if r.LatencyMet {
				lMet++
			}
		}
	}
	concs := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(c.Concurrency)), ", "), "[]")
	p("| exec throughput ≥ fcgiwrap (C, sh, Perl, Python hello × concurrency %s) | met in %d of %d cells | %s |\n", concs, tMet, tAll, metWord(tAll > 0 && tMet == tAll))
	p("| exec p99 ≤ fcgiwrap (same cells) | met in %d of %d cells | %s |\n", lMet, tAll, metWord(tAll > 0 && lMet == tAll))
	if top := slices.Max(append([]int{0}, c.Concurrency...)); top > 0 {
		var met, all int
		for _, r := range rows {
			if isTargetProgram(r.Program) && r.Concurrency == top {
				all++
				if r.LatencyMet {
					met++
				}
			}
		}
		p("| exec p99 ≤ fcgiwrap at concurrency %d (closed loop) | met in %d of %d cells | %s |\n", top, met, all, metWord(all > 0 && met == all))
	}
	if met, all := OpenTarget(res.Open, rows); all > 0 {
		p("| open-loop p99 ≤ fcgiwrap at offered rates up to %.0f%% of fcgiwrap's closed-loop throughput at the top concurrency (both runs valid) | met at %d of %d rates | %s |\n", targetOpenShare*100, met, all, metWord(met == all))
	}
	if o := res.Overhead; o != nil {
		p("| bridge overhead over bare fork+exec+wait ≤ %d µs | %.0f µs | %s |\n", targetOverheadUS, o.BridgeCostUS, metWord(o.BridgeCostUS <= targetOverheadUS))
		p("| bridge CPU per request ≤ fcgiwrap's processes' (one request at a time) | %.0f against %.0f µs | %s |\n", o.BridgeCPUUS, o.FcgiwrapCPUUS, metWord(o.BridgeCPUUS <= o.FcgiwrapCPUUS))
	}
	if mem := res.Memory; mem != nil {
		idle := max(mem.BridgeIdleStartKiB, mem.BridgeIdleKiB)
		p("| idle RSS ≤ 20 MiB | %s | %s |\n", mib(idle), metWord(idle <= targetIdleKiB))
		p("| %s upload raises RSS ≤ 8 MiB | +%s | %s |\n", mibBytes(mem.UploadBytes), mib(mem.BridgeRiseKiB()), metWord(mem.BridgeRiseKiB() <= targetUploadRiseK))
	}
	p("\n")

	p("### Closed loop: maximum throughput and p99 latency\n\n")
	p("Ratios are cgibridge/fcgiwrap: the median of the per-repeat ratios, with their range. Throughput above 1 and p99 below 1 favour cgibridge.\n\n")
	p("| program | conc | cgibridge req/s | fcgiwrap req/s | throughput ratio | cgibridge p99 ms | fcgiwrap p99 ms | p99 ratio | throughput | p99 |\n")
	p("|---|---:|---:|---:|---|---:|---:|---|---|---|\n")
	for _, r := range rows {
		tm, lm := metWord(r.ThroughputMet), metWord(r.LatencyMet)
		if !isTargetProgram(r.Program) {
			tm, lm = "no target", "no target"
		}
		p("| %s | %d | %.0f | %.0f | %.2f (%.2f–%.2f) | %.1f | %.1f | %.2f (%.2f–%.2f) | %s | %s |\n",
			r.Program, r.Concurrency, r.BridgeRate, r.FWRate, r.RateRatio, r.RLo, r.RHi,
			r.BridgeP99, r.FWP99, r.P99Ratio, r.PLo, r.PHi, tm, lm)
		if r.Invalid != "" {
			p("| ↳ invalid | | %s | | | | | | | |\n", r.Invalid)
		}
	}
	p("\n")

	p("### Open loop: latency at a fixed offered rate\n\n")
	p("Poisson arrivals; latency counted from each request's scheduled send time. A run is *invalid* when any request failed or more than %.0f%% of sends started more than %v after their schedule (the generator, not the server, set the pace). The generator shares the machine's CPUs with nginx and both servers, so near saturation it is starved too and those runs are invalid: read them as \"saturated\".\n\n", lateShare*100, lateLimit)
	for _, prog := range openPrograms(res.Open) {
		p("#### %s\n\n![latency against offered load, %s](%s)\n\n", prog, prog, filepath.ToSlash(filepath.Join(plotDir, svgName(prog))))
		p("| offered req/s | backend | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | valid |\n|---:|---|---:|---:|---:|---:|---:|---|\n")
		for _, r := range res.Open {
			if r.Program != prog {
				continue
			}
			valid := "yes"
			if !r.Valid {
				valid = "no: " + r.Invalid
				if r.Errors > 0 {
					valid += fmt.Sprintf(" (%d of %d)", r.Errors, r.Requests)
				}
			}
			p("| %.0f | %s | %.0f | %.1f | %.1f | %.1f | %.1f | %s |\n", r.OfferedRate, r.Backend, r.Rate, r.P50, r.P90, r.P99, r.P999, valid)
		}
		p("\n")
	}

	if o := res.Overhead; o != nil {
		p("### Cost per request over a bare fork+exec+wait\n\n")
		p("The C hello program, one request at a time, %d rounds of %d; each round times a bare `os/exec` run (stdout on a pipe, read to EOF, wait) and a raw FastCGI request over a fresh unix-socket connection to each server (no nginx). Medians in µs.\n\n", o.Rounds, o.PerRound)
		p("| | median per request µs | cost over bare exec µs | server's own CPU per request µs |\n|---|---:|---:|---:|\n")
		p("| bare fork+exec+wait (Go os/exec) | %.0f | — | %.0f |\n", median(o.BareUS), o.BareCPUUS)
		p("| cgibridge | %.0f | %.0f | %.0f |\n", median(o.BridgeUS), o.BridgeCostUS, o.BridgeCPUUS)
		p("| fcgiwrap | %.0f | %.0f | %.0f |\n\n", median(o.FcgiwrapUS), o.FcgiwrapCost, o.FcgiwrapCPUUS)
		p("The CPU column is user+system time of the server's own processes (cgibridge; fcgiwrap's master and workers) over all rounds divided by the requests, read from /proc/PID/task/*/schedstat: wall-clock differences on a shared machine include waiting for a CPU, CPU time does not. It includes the part of process creation the kernel charges to the parent (fork/vfork, not the exec).\n\n")
	}
	if mem := res.Memory; mem != nil {
		p("### Memory (resident set)\n\n")
		p("| | cgibridge (one process) | fcgiwrap (master + %d workers, summed) |\n|---|---:|---:|\n", c.Procs)
		p("| idle, before any request | %s | |\n", mib(mem.BridgeIdleStartKiB))
		p("| idle, after the load runs | %s | %s |\n", mib(mem.BridgeIdleKiB), mib(mem.FcgiwrapIdleKiB))
		p("| peak during a %s upload (median) | %s | %s |\n", mibBytes(mem.UploadBytes), mib(int64(medianI(mem.BridgeUploadKiB))), mib(int64(medianI(mem.FcgiwrapUploadKiB))))
		p("| rise during the upload (median) | +%s | +%s |\n\n", mib(mem.BridgeRiseKiB()), mib(mem.FcgiwrapRiseKiB()))
	}
	if res.Warm != nil {
		b.WriteString(WarmMarkdown(res.Warm))
	}
	if res.Zygote != nil {
		b.WriteString(ZygoteMarkdown(res.Zygote))
	}
	return b.String()
}

func medianI(xs []int64) float64 {
	f := make([]float64, len(xs))
	for i, x := range xs {
		f[i] = float64(x)
	}
	return median(f)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func mibBytes(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// openPrograms lists the programs of the open-loop runs in first-seen order.
// OpenTarget judges the open-loop target: at each offered rate up to
// targetOpenShare of fcgiwrap's closed-loop throughput at the top concurrency
// (its saturation) cgibridge's p99 is at most fcgiwrap's. Only rates where
// both runs are valid count. It returns the rates met and the rates judged.
func OpenTarget(open []Run, rows []ClosedRow) (met, all int) {
	saturation := map[string]float64{}
	top := map[string]int{}
	for _, r := range rows {
		if r.Concurrency >= top[r.Program] {
			top[r.Program], saturation[r.Program] = r.Concurrency, r.FWRate
		}
	}
	type key struct {
		prog string
		rate float64
	}
	pairs := map[key][2]*Run{}
	var order []key
	for i := range open {
		r := &open[i]
		k := key{r.Program, r.OfferedRate}
		pair, seen := pairs[k]
		if !seen {
			order = append(order, k)
		}
		if r.Backend == Cgibridge.Name {
			pair[0] = r
		} else {
			pair[1] = r
		}
		pairs[k] = pair
	}
	for _, k := range order {
		pair := pairs[k]
		sat := saturation[k.prog]
		if pair[0] == nil || pair[1] == nil || !pair[0].Valid || !pair[1].Valid || sat == 0 || k.rate > targetOpenShare*sat {
			continue
		}
		all++
		if pair[0].P99 <= pair[1].P99 {
			met++
		}
	}
	return met, all
}

func openPrograms(runs []Run) []string {
	var out []string
	for _, r := range runs {
		if !slices.Contains(out, r.Program) {
			out = append(out, r.Program)
		}
	}
	return out
}

func svgName(prog string) string { return "latency-" + prog + ".svg" }

// WritePlots writes one latency-against-load SVG per open-loop program into dir
// and returns their paths.
func WritePlots(dir string, res *Results) ([]string, error) {
	var paths []string
	for _, prog := range openPrograms(res.Open) {
		path := filepath.Join(dir, svgName(prog))
		if err := os.WriteFile(path, []byte(LatencySVG(prog, res.Open)), 0o644); err != nil {
			return nil, fmt.Errorf("write plot: %w", err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// series is one line of a plot.
type series struct {
	label  string
	color  string
	dash   string
	points []point
}

type point struct {
	x, y  float64
	valid bool
}

// LatencySVG draws p50 and p99 latency (log scale) against offered rate for both
// backends from the open-loop runs of prog. Invalid runs are drawn hollow.
func LatencySVG(prog string, runs []Run) string {
	colors := map[string]string{Cgibridge.Name: "#1f62b4", Fcgiwrap.Name: "#d4451b"}
	var ss []series
	for _, be := range Backends {
		p50 := series{label: be.Name + " p50", color: colors[be.Name]}
		p99 := series{label: be.Name + " p99", color: colors[be.Name], dash: "6,4"}
		for _, r := range runs {
			if r.Program == prog && r.Backend == be.Name && r.Requests > r.Errors {
				p50.points = append(p50.points, point{r.OfferedRate, r.P50, r.Valid})
				p99.points = append(p99.points, point{r.OfferedRate, r.P99, r.Valid})
			}
		}
		for _, s := range []*series{&p50, &p99} {
			slices.SortFunc(s.points, func(a, b point) int { return int(math.Copysign(1, a.x-b.x)) })
		}
		ss = append(ss, p50, p99)
	}

	const w, h, left, right, top, bottom = 640, 400, 70, 170, 40, 50
	xmax, ymin, ymax := 0.0, math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, pt := range s.points {
			xmax = max(xmax, pt.x)
			if pt.y > 0 {
				ymin, ymax = min(ymin, pt.y), max(ymax, pt.y)
			}
		}
	}
	if xmax == 0 || math.IsInf(ymin, 1) {
		xmax, ymin, ymax = 1, 1, 10
	}
	// Whole decades on the latency axis.
	lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if hi <= lo {
		hi = lo + 1
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	sx := func(x float64) float64 { return left + x/xmax*pw }
	sy := func(y float64) float64 {
		y = max(y, math.Pow(10, lo))
		return top + ph - (math.Log10(y)-lo)/(hi-lo)*ph
	}

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	p(`<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	p(`<text x="%d" y="22" font-size="15" font-weight="bold">%s: latency against offered load</text>`+"\n", left, xmlEscape(prog))
	// Grid and axes.
	for d := lo; d <= hi; d++ {
		y := sy(math.Pow(10, d))
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, w-right, y)
		p(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtMS(math.Pow(10, d)))
	}
	for i := 0; i <= 5; i++ {
		x := xmax * float64(i) / 5
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", sx(x), top, sx(x), h-bottom)
		p(`<text x="%.1f" y="%d" text-anchor="middle">%.0f</text>`+"\n", sx(x), h-bottom+16, x)
	}
	p(`<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	p(`<text x="%.0f" y="%d" text-anchor="middle">offered load, requests/s (Poisson)</text>`+"\n", left+pw/2, h-12)
	p(`<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle">latency (log scale)</text>`+"\n", top+ph/2)
	// Lines, points, legend.
	for i, s := range ss {
		if len(s.points) > 0 {
			var pts []string
			for _, pt := range s.points {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(pt.x), sy(pt.y)))
			}
			p(`<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", s.color, s.dash, strings.Join(pts, " "))
			for _, pt := range s.points {
				fill := s.color
				if !pt.valid {
					fill = "white"
				}
				p(`<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s"/>`+"\n", sx(pt.x), sy(pt.y), fill, s.color)
			}
		}
		ly := top + 10 + i*20
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`+"\n", w-right+12, ly, w-right+40, ly, s.color, s.dash)
		p(`<text x="%d" y="%d">%s</text>`+"\n", w-right+46, ly+4, xmlEscape(s.label))
	}
	ly := top + 10 + len(ss)*20 + 10
	p(`<circle cx="%d" cy="%d" r="3.5" fill="white" stroke="#333"/>`+"\n", w-right+26, ly)
	p(`<text x="%d" y="%d">invalid run</text>`+"\n", w-right+46, ly+4)
	p("</svg>\n")
	return b.String()
}

// fmtMS labels a latency axis tick.
func fmtMS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%g s", v/1000)
	}
	if v < 1 {
		return fmt.Sprintf("%g µs", v*1000)
	}
	return fmt.Sprintf("%g ms", v)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
