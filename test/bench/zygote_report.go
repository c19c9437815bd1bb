// This file holds the zygote section's results and their report: the pairing of
// the warm and exec runs into ratio rows judged by the targets of issue 10, the
// bridge's warm-or-cold decision per script, and the memory of warm helpers.
package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Zygote is everything the zygote section measured.
type Zygote struct {
	Programs    []string         `json:"programs"`
	Concurrency []int            `json:"concurrency"`
	Repeats     int              `json:"repeats"`
	Seconds     float64          `json:"seconds"`
	Scripts     []ZygoteDecision `json:"scripts"`
	Runs        []ZygoteRun      `json:"runs"`
	Memory      *ZygoteMemory    `json:"memory,omitempty"`
}

// ZygoteDecision is what the --warm bridge decided for a script during the
// warm-up: served warm, or cold (exec mode) and why.
type ZygoteDecision struct {
	Program  string  `json:"program"`
	About    string  `json:"about"`
	Target   float64 `json:"target_ratio"` // 0: none
	Decision string  `json:"decision"`     // "warm" or "cold"
	Reason   string  `json:"reason,omitempty"`
	// FirstWarmSeconds is the time from the first request until one was
	// served warm (the helper's start), requests served cold meanwhile.
	FirstWarmSeconds float64 `json:"first_warm_seconds"`
}

// ZygoteRun is one closed-loop run of the zygote section: Backend is the side,
// warm (the --warm bridge) or exec (the exec-mode bridge).
type ZygoteRun struct {
	Run
	CPU CPUPerRequest `json:"cpu_per_request"`
	// Warm and Cold are the warm side's requests the bridge's status page
	// counts as served by a helper and as passed to exec mode, by reason.
	Warm        uint64            `json:"served_warm,omitempty"`
	Cold        uint64            `json:"served_cold,omitempty"`
	ColdReasons map[string]uint64 `json:"cold_reasons,omitempty"`
}

// ZygoteMemory is the memory of one --warm bridge holding a helper per script, in KiB.
type ZygoteMemory struct {
	Scripts        int                  `json:"scripts"`
	Helpers        []ZygoteHelperMemory `json:"helpers"`
	HelpersAlive   int                  `json:"helpers_alive"` // the bridge's children at the reading
	BridgeStartKiB int64                `json:"cgibridge_start_kib"`
	BridgeKiB      int64                `json:"cgibridge_kib"`      // VmRSS, the helpers warm and idle
	BridgePeakKiB  int64                `json:"cgibridge_peak_kib"` // VmHWM over its life
	Short          string               `json:"short,omitempty"`    // a helper had fewer spares than expected
}

// ZygoteHelperMemory is one script's helper and its spare children.
type ZygoteHelperMemory struct {
	Program      string `json:"program"`
	File         string `json:"file"`
	Decision     string `json:"decision"`
	Reason       string `json:"reason,omitempty"`
	PID          int    `json:"pid"`
	RSSKiB       int64  `json:"helper_rss_kib"`
	PSSKiB       int64  `json:"helper_pss_kib"`
	Spares       int    `json:"spares"`
	SparesRSSKiB int64  `json:"spares_rss_kib"`
	SparesPSSKiB int64  `json:"spares_pss_kib"`
}

type zygoteTotals struct {
	warm, helpers, spares                    int
	helperRSS, helperPSS, spareRSS, sparePSS int64
	allRSS, allPSS                           int64
	perProgram                               map[string][]ZygoteHelperMemory
}

func (m *ZygoteMemory) totals() zygoteTotals {
	t := zygoteTotals{perProgram: map[string][]ZygoteHelperMemory{}}
	for _, h := range m.Helpers {
		if h.Decision == sideWarm {
			t.warm++
		}
		if h.PID == 0 {
			continue
		}
		t.helpers++
		t.spares += h.Spares
		t.helperRSS += h.RSSKiB
		t.helperPSS += h.PSSKiB
		t.spareRSS += h.SparesRSSKiB
		t.sparePSS += h.SparesPSSKiB
		t.perProgram[h.Program] = append(t.perProgram[h.Program], h)
	}
	t.allRSS, t.allPSS = t.helperRSS+t.spareRSS, t.helperPSS+t.sparePSS
	return t
}

// ZygoteRow is one line of the zygote table: a script at a concurrency, warm
// against exec, ratios warm/exec as the median of the paired repeats.
type ZygoteRow struct {
	Program, About      string
	Target              float64
	Decision, Reason    string
	Concurrency         int
	WarmRate, ExecRate  float64
	RateRatio, RLo, RHi float64
	WarmP50, ExecP50    float64
	WarmP99, ExecP99    float64
	WarmCPU, ExecCPU    CPUPerRequest
	Warm, Cold          uint64
	ColdReasons         map[string]uint64
	Pairs               int
	Invalid             string
}

// ZygoteRows pairs the section's runs by script, concurrency and repeat, in the
// order they were made.
func ZygoteRows(z *Zygote) []ZygoteRow {
	type key struct {
		prog string
		conc int
	}
	var order []key
	pairs := map[key]map[int][2]*ZygoteRun{}
	for i := range z.Runs {
		r := &z.Runs[i]
		k := key{r.Program, r.Concurrency}
		if pairs[k] == nil {
			pairs[k] = map[int][2]*ZygoteRun{}
			order = append(order, k)
		}
		p := pairs[k][r.Repeat]
		if r.Backend == sideWarm {
			p[0] = r
		} else {
			p[1] = r
		}
		pairs[k][r.Repeat] = p
	}
	var rows []ZygoteRow
	for _, k := range order {
		row := ZygoteRow{Program: k.prog, Concurrency: k.conc}
		if i := slices.IndexFunc(z.Scripts, func(d ZygoteDecision) bool { return d.Program == k.prog }); i >= 0 {
			d := z.Scripts[i]
			row.About, row.Target, row.Decision, row.Reason = d.About, d.Target, d.Decision, d.Reason
		}
		var wr, er, wp50, ep50, wp99, ep99, rr []float64
		var wc, ec []CPUPerRequest
		for _, rep := range slices.Sorted(maps.Keys(pairs[k])) {
			p := pairs[k][rep]
			if p[0] == nil || p[1] == nil {
				continue
			}
			for _, r := range p {
				if !r.Valid && row.Invalid == "" {
					row.Invalid = r.Backend + ": " + r.Invalid
				}
			}
			row.Pairs++
			wr, er = append(wr, p[0].Rate), append(er, p[1].Rate)
			wp50, ep50 = append(wp50, p[0].P50), append(ep50, p[1].P50)
			wp99, ep99 = append(wp99, p[0].P99), append(ep99, p[1].P99)
			rr = append(rr, ratio(p[0].Rate, p[1].Rate))
			wc, ec = append(wc, p[0].CPU), append(ec, p[1].CPU)
			row.Warm += p[0].Warm
			row.Cold += p[0].Cold
			for reason, n := range p[0].ColdReasons {
				if row.ColdReasons == nil {
					row.ColdReasons = map[string]uint64{}
				}
				row.ColdReasons[reason] += n
			}
		}
		row.WarmRate, row.ExecRate = median(wr), median(er)
		row.WarmP50, row.ExecP50 = median(wp50), median(ep50)
		row.WarmP99, row.ExecP99 = median(wp99), median(ep99)
		row.RateRatio, row.RLo, row.RHi = median(rr), minOf(rr), maxOf(rr)
		row.WarmCPU, row.ExecCPU = medianCPU(wc), medianCPU(ec)
		rows = append(rows, row)
	}
	return rows
}

// servedWarm is the share of the warm side's requests a helper served.
func (r ZygoteRow) servedWarm() float64 {
	if r.Warm+r.Cold == 0 {
		return 0
	}
	return float64(r.Warm) / float64(r.Warm+r.Cold)
}

// met reports whether the row reaches its target: served warm (99% of the
// requests at least), valid, and the median ratio at the target.
func (r ZygoteRow) met() bool {
	return r.Target > 0 && r.Decision == sideWarm && r.Pairs > 0 && r.Invalid == "" &&
		r.servedWarm() >= 0.99 && r.RateRatio >= r.Target
}

// verdict says how the row stands against its target, in a few words.
func (r ZygoteRow) verdict() string {
	switch {
	case r.Decision != sideWarm:
		return "cold: " + r.Reason
	case r.Pairs == 0:
		return "not measured"
	case r.Invalid != "":
		return "invalid: " + r.Invalid
	case r.servedWarm() < 0.99:
		return fmt.Sprintf("**%.0f%% served cold** (%s)", 100*(1-r.servedWarm()), topReason(r.ColdReasons))
	case r.Target == 0:
		return "no target"
	case r.RateRatio >= r.Target:
		return fmt.Sprintf("met (≥ %.0f×)", r.Target)
	}
	return fmt.Sprintf("**missed** (≥ %.0f×)", r.Target)
}

// ZygoteMarkdown renders the zygote section.
func ZygoteMarkdown(z *Zygote) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	rows := ZygoteRows(z)

	p("## Interpreter zygote (`--warm`)\n\n")
	p("Python and Perl CGI scripts (`#!/usr/bin/python3`, `#!/usr/bin/perl`, named `*.cgi`) served by `cgibridge serve --warm '*.cgi'` — a helper per script that preloads its imports "+
		"and forks a fresh child per request, with the default `--warm-spares 2` — against the same files through the exec-mode cgibridge of the sections above "+
		"(one interpreter started per request). Both bridges run with `--max-procs` as above and `--log-level warn`, behind the same nginx, a new FastCGI connection per request for both; "+
		"every response's body is checked. Cells alternate warm and exec, concurrency %s, %d repeat(s) of %.0f s; ratios are warm/exec throughput, the median of the per-repeat ratios with their range. "+
		"Whether a request was served warm is read from the warm bridge's status page (`/status?json`: each script's warm requests and its requests passed to exec mode, by reason) before and after each run.\n\n",
		joinInts(z.Concurrency), z.Repeats, z.Seconds)

	p("| script | what it is | bridge's decision | first warm request after |\n|---|---|---|---:|\n")
	for _, d := range z.Scripts {
		dec := "warm"
		if d.Decision != sideWarm {
			dec = "cold: " + d.Reason
		}
		p("| %s | %s | %s | %.2f s |\n", d.Program, d.About, dec, d.FirstWarmSeconds)
	}
	p("\n")

	p("### Zygote targets\n\n| target | warm/exec throughput, by concurrency | |\n|---|---|---|\n")
	for _, d := range z.Scripts {
		var got []string
		all, n := true, 0
		for _, r := range rows {
			if r.Program != d.Program {
				continue
			}
			n++
			got = append(got, fmt.Sprintf("c=%d: %.1f×", r.Concurrency, r.RateRatio))
			all = all && r.met()
		}
		word := metWord(n > 0 && all)
		switch {
		case d.Decision != sideWarm:
			word = "**cold**: " + d.Reason
		case d.Target == 0:
			word = "no target"
		}
		target := fmt.Sprintf("%s warm ≥ %.0f× exec mode", d.Program, d.Target)
		if d.Target == 0 {
			target = d.Program + " (reported only)"
		}
		p("| %s | %s | %s |\n", target, strings.Join(got, ", "), word)
	}
	p("\n")

	p("### Warm against exec mode\n\n")
	p("| script | conc | exec req/s | warm req/s | warm/exec throughput | exec p50 ms | warm p50 ms | exec p99 ms | warm p99 ms | served warm | exec server CPU µs/req | warm server CPU µs/req | target |\n")
	p("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		p("| %s | %d | %.0f | %.0f | **%.1f×** (%.1f–%.1f) | %.1f | %.2f | %.1f | %.2f | %d of %d | %.0f | %.0f | %s |\n",
			r.Program, r.Concurrency, r.ExecRate, r.WarmRate, r.RateRatio, r.RLo, r.RHi,
			r.ExecP50, r.WarmP50, r.ExecP99, r.WarmP99, r.Warm, r.Warm+r.Cold,
			r.ExecCPU.Server(), r.WarmCPU.Server(), r.verdict())
	}
	p("\n")
	p("*Server CPU* is the user+system time per request of cgibridge, nginx and the programs: on the exec side the CGI processes the bridge reaped, " +
		"on the warm side the helpers and the request children they reaped (plus any exec-mode process of a request served cold). ")
	p("At concurrency 1 the ratio is a latency ratio: one request at a time, the interpreter's start and imports against a fork of the preloaded helper. " +
		"At higher concurrency every CPU is busy and throughput goes as the inverse of the CPU time per request, load generator included.\n\n")
	if s := zygoteReading(rows); s != "" {
		p("%s\n\n", s)
	}

	if m := z.Memory; m != nil {
		t := m.totals()
		p("### Memory with %d warm scripts\n\n", m.Scripts)
		p("One `--warm` cgibridge, %d distinct scripts (copies of %s, round robin), each requested until the status page showed it served warm, then its helper's spares waited for and the bridge left idle. "+
			"RSS and PSS from `/proc/PID/smaps_rollup` (PSS divides each shared page among the processes that map it: a helper's spares share most of their pages with it).\n\n",
			m.Scripts, strings.Join(slices.Sorted(maps.Keys(t.perProgram)), ", "))
		p("| | |\n|---|---:|\n")
		p("| scripts served warm | %d of %d (helpers alive: %d) |\n", t.warm, m.Scripts, m.HelpersAlive)
		p("| cgibridge RSS before any request | %s |\n", mib(m.BridgeStartKiB))
		p("| **cgibridge RSS with %d helpers** | **%s** |\n", t.helpers, mib(m.BridgeKiB))
		p("| cgibridge peak RSS (VmHWM) | %s |\n", mib(m.BridgePeakKiB))
		p("| the %d helpers, RSS / PSS summed | %s / %s |\n", t.helpers, mib(t.helperRSS), mib(t.helperPSS))
		p("| their %d spares, RSS / PSS summed | %s / %s |\n", t.spares, mib(t.spareRSS), mib(t.sparePSS))
		p("| **helpers and spares, RSS / PSS summed** | **%s / %s** |\n\n", mib(t.allRSS), mib(t.allPSS))
		if m.Short != "" {
			p("Short of spares: %s.\n\n", m.Short)
		}
		p("Per script, medians over its copies (KiB):\n\n")
		p("| script | copies | helper RSS | helper PSS | spares | spare RSS (each) | spare PSS (each) | helper + spares PSS |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, prog := range slices.Sorted(maps.Keys(t.perProgram)) {
			hs := t.perProgram[prog]
			med := func(f func(ZygoteHelperMemory) float64) float64 {
				xs := make([]float64, 0, len(hs))
				for _, h := range hs {
					xs = append(xs, f(h))
				}
				return median(xs)
			}
			each := func(v int64, n int) float64 {
				if n == 0 {
					return 0
				}
				return float64(v) / float64(n)
			}
			p("| %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", prog, len(hs),
				med(func(h ZygoteHelperMemory) float64 { return float64(h.RSSKiB) }),
				med(func(h ZygoteHelperMemory) float64 { return float64(h.PSSKiB) }),
				med(func(h ZygoteHelperMemory) float64 { return float64(h.Spares) }),
				med(func(h ZygoteHelperMemory) float64 { return each(h.SparesRSSKiB, h.Spares) }),
				med(func(h ZygoteHelperMemory) float64 { return each(h.SparesPSSKiB, h.Spares) }),
				med(func(h ZygoteHelperMemory) float64 { return float64(h.PSSKiB + h.SparesPSSKiB) }))
		}
		p("\n")
	}
	return b.String()
}

// zygoteReading puts the CPU columns into a sentence per script at the top
// concurrency: what exec mode spends per request that the helper saves.
func zygoteReading(rows []ZygoteRow) string {
	top := 0
	for _, r := range rows {
		top = max(top, r.Concurrency)
	}
	var parts []string
	for _, r := range rows {
		if r.Concurrency != top || r.Pairs == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f µs exec against %.0f µs warm (expected ratio %.1f×, measured %.1f×)",
			r.Program, r.ExecCPU.Server(), r.WarmCPU.Server(),
			ratio(r.ExecCPU.Server()+r.ExecCPU.Client, r.WarmCPU.Server()+r.WarmCPU.Client), r.RateRatio))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("Server CPU per request at concurrency %d: %s; the expected ratio is the exec side's total CPU per request, load generator included, over the warm side's.",
		top, strings.Join(parts, "; "))
}
