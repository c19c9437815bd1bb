// This file holds the warm section's results and their report: the pairing of the
// warm runs into ratio rows, the CPU time per request that explains the ratios, and
// the memory of a bridge holding idle pools.
package main

import (
	"fmt"
	"slices"
	"strings"
)

// Warm is everything the warm section measured.
type Warm struct {
	Programs    []string    `json:"programs"`
	Procs       []int       `json:"procs"` // pool sizes: --fastcgi-procs N and spawn-fcgi -F N
	Concurrency []int       `json:"concurrency"`
	Repeats     int         `json:"repeats"`
	Seconds     float64     `json:"seconds"`
	Direct      []WarmRun   `json:"direct"` // warm against direct pairs
	Exec        []WarmRun   `json:"exec"`   // warm against exec pairs
	Memory      *WarmMemory `json:"memory,omitempty"`
}

// WarmRun is one closed-loop run of the warm section.
type WarmRun struct {
	Run                   // Backend is the side: warm, direct or exec
	Compare string        `json:"compare"` // the comparison it belongs to: direct or exec
	Procs   int           `json:"procs"`   // pool size of warm and direct runs; 0 for exec
	CPU     CPUPerRequest `json:"cpu_per_request"`
}

// CPUPerRequest is the CPU time (user+system) processes spent during a run divided
// by its requests, in µs: from /proc/PID/task/*/schedstat for live processes (the
// exact sum of utime+stime, which /proc/PID/stat gives tick-sampled), and from the
// bridge's cutime+cstime for the CGI processes that exited in exec mode.
type CPUPerRequest struct {
	Bridge   float64 `json:"cgibridge_us"`      // the cgibridge process; 0 on the direct side
	Nginx    float64 `json:"nginx_us"`          // nginx's master and worker
	Programs float64 `json:"programs_us"`       // the FastCGI children, or the exec-mode CGI processes
	Client   float64 `json:"load_generator_us"` // the benchmark process sending the load
}

// Server is the CPU time per request of everything but the load generator.
func (c CPUPerRequest) Server() float64 { return c.Bridge + c.Nginx + c.Programs }

// WarmMemory is the memory measurement of the warm section, in KiB.
type WarmMemory struct {
	Pools          int   `json:"pools"`
	ProcsPerPool   int   `json:"procs_per_pool"`
	Children       []int `json:"children_per_pool"` // found after warming
	Short          bool  `json:"short,omitempty"`   // a pool did not reach its size in time
	ChildrenTotal  int   `json:"children_total"`
	BridgeStartKiB int64 `json:"cgibridge_start_kib"`      // before any request
	BridgeKiB      int64 `json:"cgibridge_idle_pools_kib"` // VmRSS, the pools warmed and idle
	BridgePeakKiB  int64 `json:"cgibridge_peak_kib"`       // VmHWM over its life
	ChildrenRSSKiB int64 `json:"children_rss_kib"`         // VmRSS summed (shared pages counted in each)
	ChildrenPSSKiB int64 `json:"children_pss_kib"`         // Pss summed (shared pages divided)
}

// Targets of the warm mode, printed next to the numbers.
const (
	targetWarmRate    = 0.8 // warm throughput at least this fraction of direct
	targetWarmP99     = 1.5 // warm p99 at most this multiple of direct
	targetWarmMemKiB  = 25 * 1024
	expectedExecRatio = 10 // warm throughput over exec mode's
)

// WarmRow is one line of a warm comparison: side A against side B for a program,
// pool size and concurrency; ratios are A/B, the median of the paired repeats.
type WarmRow struct {
	Program             string
	Procs, Concurrency  int
	ARate, BRate        float64
	RateRatio, RLo, RHi float64
	AP99, BP99          float64
	P99Ratio, PLo, PHi  float64
	ACPU, BCPU          CPUPerRequest // component-wise medians
	Pairs               int
	Invalid             string
}

// WarmRows pairs the runs of the comparison with side b (direct or exec), side a
// against b, by program, pool size, concurrency and repeat, in the order the runs
// were made. Exec runs have no pool size: the exec comparison pairs on program
// and concurrency, and the row takes a's size.
func WarmRows(runs []WarmRun, a, b string) []WarmRow {
	type key struct {
		prog        string
		procs, conc int
	}
	var order []key
	pairs := map[key]map[int][2]*WarmRun{}
	for i := range runs {
		r := &runs[i]
		if r.Compare != b || (r.Backend != a && r.Backend != b) {
			continue
		}
		k := key{r.Program, r.Procs, r.Concurrency}
		if r.Compare == sideExec {
			k.procs = 0
		}
		if pairs[k] == nil {
			pairs[k] = map[int][2]*WarmRun{}
			order = append(order, k)
		}
		p := pairs[k][r.Repeat]
		if r.Backend == a {
			p[0] = r
		} else {
			p[1] = r
		}
		pairs[k][r.Repeat] = p
	}
	var rows []WarmRow
	for _, k := range order {
		row := WarmRow{Program: k.prog, Concurrency: k.conc}
		var ar, br, ap, bp, rr, pr []float64
		var ac, bc []CPUPerRequest
		for _, p := range pairs[k] {
			if p[0] == nil || p[1] == nil {
				continue
			}
			for _, r := range p {
				if !r.Valid && row.Invalid == "" {
					row.Invalid = r.Backend + ": " + r.Invalid
				}
			}
			row.Pairs++
			row.Procs = max(row.Procs, p[0].Procs)
			ar, br = append(ar, p[0].Rate), append(br, p[1].Rate)
			ap, bp = append(ap, p[0].P99), append(bp, p[1].P99)
			rr = append(rr, ratio(p[0].Rate, p[1].Rate))
			pr = append(pr, ratio(p[0].P99, p[1].P99))
			ac, bc = append(ac, p[0].CPU), append(bc, p[1].CPU)
		}
		row.ARate, row.BRate = median(ar), median(br)
		row.AP99, row.BP99 = median(ap), median(bp)
		row.RateRatio, row.RLo, row.RHi = median(rr), minOf(rr), maxOf(rr)
		row.P99Ratio, row.PLo, row.PHi = median(pr), minOf(pr), maxOf(pr)
		row.ACPU, row.BCPU = medianCPU(ac), medianCPU(bc)
		rows = append(rows, row)
	}
	return rows
}

func medianCPU(cs []CPUPerRequest) CPUPerRequest {
	pick := func(f func(CPUPerRequest) float64) float64 {
		xs := make([]float64, len(cs))
		for i, c := range cs {
			xs[i] = f(c)
		}
		return median(xs)
	}
	return CPUPerRequest{
		Bridge:   pick(func(c CPUPerRequest) float64 { return c.Bridge }),
		Nginx:    pick(func(c CPUPerRequest) float64 { return c.Nginx }),
		Programs: pick(func(c CPUPerRequest) float64 { return c.Programs }),
		Client:   pick(func(c CPUPerRequest) float64 { return c.Client }),
	}
}

// rateMet and p99Met judge a warm-against-direct row by the warm targets.
func (r WarmRow) rateMet() bool {
	return r.Pairs > 0 && r.Invalid == "" && r.RateRatio >= targetWarmRate
}
func (r WarmRow) p99Met() bool { return r.Pairs > 0 && r.Invalid == "" && r.P99Ratio <= targetWarmP99 }

// WarmMarkdown renders the warm section.
func WarmMarkdown(w *Warm) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	direct := WarmRows(w.Direct, sideWarm, sideDirect)
	exec := WarmRows(w.Exec, sideWarm, sideExec)

	p("## Warm mode\n\n")
	p("FastCGI programs kept running, measured behind the same nginx in the same run, alternating: a libfcgi C hello "+
		"(`gcc -O2 … -lfcgi`) and a php-cgi hello, both printing a fixed body. **warm** is `cgibridge serve --fastcgi GLOB --fastcgi-procs N`, "+
		"which nginx reaches through an upstream with `keepalive 32` and `fastcgi_keep_conn on`; **direct** is nginx talking straight "+
		"to the same program started by `spawn-fcgi -F N` (one connection per request: a libfcgi or php-cgi child on a kept connection accepts no other); "+
		"**exec** is the exec-mode cgibridge of the sections above, one process per request (libfcgi answers as plain CGI, php-cgi runs through `--interpreter .php=php-cgi`). "+
		"php-cgi runs with `PHP_FCGI_CHILDREN=0` and `PHP_FCGI_MAX_REQUESTS=0` on both sides (spawn-fcgi's children would not come back after the default 500 requests). "+
		"Pool sizes N %s, concurrency %s, %d repeat(s) of %.0f s per cell; ratios are warm/other, the median of the per-repeat ratios with their range.\n\n",
		joinInts(w.Procs), joinInts(w.Concurrency), w.Repeats, w.Seconds)

	p("### Warm-mode targets\n\n| target | result | |\n|---|---|---|\n")
	var rMet, pMet int
	for _, r := range direct {
		if r.rateMet() {
			rMet++
		}
		if r.p99Met() {
			pMet++
		}
	}
	p("| warm throughput ≥ %.1f× direct (%s × N × concurrency) | met in %d of %d cells | %s |\n",
		targetWarmRate, strings.Join(w.Programs, ", "), rMet, len(direct), metWord(len(direct) > 0 && rMet == len(direct)))
	p("| warm p99 ≤ %.1f× direct (same cells) | met in %d of %d cells | %s |\n", targetWarmP99, pMet, len(direct), metWord(len(direct) > 0 && pMet == len(direct)))
	if len(exec) > 0 {
		lo := slices.MinFunc(exec, func(a, b WarmRow) int { return cmpFloat(a.RateRatio, b.RateRatio) })
		p("| warm throughput ≥ %d× exec mode (expected) | %.1f× at the least (%s, concurrency %d) | %s |\n",
			expectedExecRatio, lo.RateRatio, lo.Program, lo.Concurrency, metWord(lo.RateRatio >= expectedExecRatio))
	}
	if m := w.Memory; m != nil {
		p("| cgibridge RSS with %d pools of %d idle children ≤ %.0f MiB | %s | %s |\n",
			m.Pools, m.ProcsPerPool, float64(targetWarmMemKiB)/1024, mib(m.BridgeKiB), metWord(m.BridgeKiB <= targetWarmMemKiB && !m.Short))
	}
	p("\n")

	p("### Warm pool against the program under spawn-fcgi\n\n")
	p("| program | N | conc | warm req/s | direct req/s | throughput ratio (target ≥ %.1f) | warm p99 ms | direct p99 ms | p99 ratio (target ≤ %.1f) | throughput | p99 |\n", targetWarmRate, targetWarmP99)
	p("|---|---:|---:|---:|---:|---|---:|---:|---|---|---|\n")
	for _, r := range direct {
		p("| %s | %d | %d | %.0f | %.0f | %.2f (%.2f–%.2f) | %.2f | %.2f | %.2f (%.2f–%.2f) | %s | %s |\n",
			r.Program, r.Procs, r.Concurrency, r.ARate, r.BRate, r.RateRatio, r.RLo, r.RHi,
			r.AP99, r.BP99, r.P99Ratio, r.PLo, r.PHi, metWord(r.rateMet()), metWord(r.p99Met()))
		if r.Invalid != "" {
			p("| ↳ invalid | | | %s | | | | | | | |\n", r.Invalid)
		}
	}
	p("\n")

	p("### CPU time per request\n\n")
	p("User+system time each process spent during the run divided by the requests it completed, in µs (medians over the repeats). " +
		"*Server* is cgibridge + nginx + the programs; the load generator runs on the same two CPUs and is shown for completeness. " +
		"On a machine whose CPUs are all busy, throughput goes roughly as the inverse of the total CPU time per request, so this table is what explains the ratios above.\n\n")
	p("| program | N | conc | side | cgibridge | nginx | programs | server | load generator |\n|---|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range direct {
		p("| %s | %d | %d | warm | %.0f | %.0f | %.0f | **%.0f** | %.0f |\n", r.Program, r.Procs, r.Concurrency,
			r.ACPU.Bridge, r.ACPU.Nginx, r.ACPU.Programs, r.ACPU.Server(), r.ACPU.Client)
		p("| | | | direct | — | %.0f | %.0f | **%.0f** | %.0f |\n",
			r.BCPU.Nginx, r.BCPU.Programs, r.BCPU.Server(), r.BCPU.Client)
	}
	p("\n")
	if s := warmReading(direct); s != "" {
		p("%s\n\n", s)
	}

	if len(exec) > 0 {
		p("### Warm pool against exec mode\n\n")
		p("The same programs through the exec-mode cgibridge (a process per request, `--max-procs` as above) and through the warm pool of size N.\n\n")
		p("| program | N | conc | exec req/s | warm req/s | warm/exec throughput | exec p99 ms | warm p99 ms | exec/warm p99 | exec server CPU µs/req | warm server CPU µs/req |\n")
		p("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
		for _, r := range exec {
			p("| %s | %d | %d | %.0f | %.0f | **%.1f×** (%.1f–%.1f) | %.1f | %.2f | %.1f× | %.0f | %.0f |\n",
				r.Program, r.Procs, r.Concurrency, r.BRate, r.ARate, r.RateRatio, r.RLo, r.RHi,
				r.BP99, r.AP99, ratio(r.BP99, r.AP99), r.BCPU.Server(), r.ACPU.Server())
			if r.Invalid != "" {
				p("| ↳ invalid | | | %s | | | | | | | |\n", r.Invalid)
			}
		}
		p("\nIn exec mode the programs' column counts the CGI processes that exited (the bridge's cutime+cstime): the fork, exec, dynamic linking and, for PHP, the interpreter's start-up that warm mode pays once per child.\n\n")
	}

	if m := w.Memory; m != nil {
		p("### Memory with idle pools\n\n")
		p("One cgibridge with %d FastCGI programs (copies of the libfcgi hello under different names), `--fastcgi-procs %d`, each pool warmed by bursts of %d concurrent requests until it ran %d children, then left idle.\n\n",
			m.Pools, m.ProcsPerPool, 2*m.ProcsPerPool, m.ProcsPerPool)
		p("| | |\n|---|---:|\n")
		p("| children per pool | %s |\n", joinInts(m.Children))
		p("| cgibridge RSS before any request | %s |\n", mib(m.BridgeStartKiB))
		p("| **cgibridge RSS, %d pools × %d idle children** (target ≤ %.0f MiB) | **%s** |\n", m.Pools, m.ProcsPerPool, float64(targetWarmMemKiB)/1024, mib(m.BridgeKiB))
		p("| cgibridge peak RSS (VmHWM) | %s |\n", mib(m.BridgePeakKiB))
		p("| the %d children, RSS summed | %s |\n", m.ChildrenTotal, mib(m.ChildrenRSSKiB))
		p("| the %d children, PSS summed (shared pages divided among them) | %s |\n\n", m.ChildrenTotal, mib(m.ChildrenPSSKiB))
		if m.Short {
			p("A pool did not reach %d children within %v: the table shows what it had.\n\n", m.ProcsPerPool, memWarmTimeout)
		}
	}
	return b.String()
}

// warmReading puts the CPU table into a sentence: at the top concurrency, what the
// bridge itself costs per request against the direct path's whole cost.
func warmReading(rows []WarmRow) string {
	top := 0
	for _, r := range rows {
		top = max(top, r.Concurrency)
	}
	var parts []string
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Concurrency != top || seen[r.Program] {
			continue
		}
		seen[r.Program] = true
		extra := r.ACPU.Server() - r.BCPU.Server()
		parts = append(parts, fmt.Sprintf("for %s (N=%d) the bridge spends %.0f µs per request and the warm path as a whole %+.0f µs against the direct path's %.0f µs, which puts the expected throughput ratio near %.2f (measured %.2f)",
			r.Program, r.Procs, r.ACPU.Bridge, extra, r.BCPU.Server(),
			ratio(r.BCPU.Server()+r.BCPU.Client, r.ACPU.Server()+r.ACPU.Client), r.RateRatio))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("What the numbers mean: the warm path is the direct path plus a hop through the bridge, so its cost is the bridge's CPU time per request. At concurrency %d, %s (the expected ratio is the direct side's total CPU per request, load generator included, over the warm side's).",
		top, strings.Join(parts, "; "))
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
