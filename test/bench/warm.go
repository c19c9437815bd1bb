// This file holds the warm-mode measurements: a bridge's FastCGI pool against the
// same program under spawn-fcgi with nginx talking to it directly, the pool against
// exec mode, with the CPU time each process spends per request, and the bridge's
// memory holding several pools of idle children.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// probe names the processes whose CPU time one side of a cell spends.
type probe struct {
	bridge   int          // the cgibridge process, 0: none (direct)
	programs func() []int // the program processes alive now, nil: none
	reaped   int          // a process whose children's times count exited programs (exec mode), 0: none
}

// cpuSnap is the CPU time the processes of a probe had spent at one moment.
type cpuSnap struct {
	bridge, nginx, reaped time.Duration
	programs              map[int]time.Duration
}

// snapshot reads the probe's processes' CPU times. The load generator's own time
// is read last at the start of a run and first at its end (see measure), so that
// the /proc reading here is not charged to it.
func (b *Bed) snapshot(pr probe) cpuSnap {
	var s cpuSnap
	if pr.bridge > 0 {
		s.bridge = cpuTime([]int{pr.bridge})
	}
	nginx := []int{b.Nginx.PID()}
	if kids, err := harness.Children(b.Nginx.PID()); err == nil {
		nginx = append(nginx, kids...)
	}
	s.nginx = cpuTime(nginx)
	if pr.programs != nil {
		s.programs = map[int]time.Duration{}
		for _, pid := range pr.programs() {
			s.programs[pid] = cpuTime([]int{pid})
		}
	}
	if pr.reaped > 0 {
		s.reaped = reapedTime(pr.reaped)
	}
	return s
}

// reapedTime is the CPU time of pid's children that exited and were waited for
// (cutime+cstime of /proc/PID/stat, in USER_HZ = 100 ticks per second: summed
// over hundreds of short processes, the rounding of each is gone).
func reapedTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return 0
	}
	cu, _ := strconv.ParseInt(f[13], 10, 64) // field 16
	cs, _ := strconv.ParseInt(f[14], 10, 64) // field 17
	return time.Duration(cu+cs) * 10 * time.Millisecond
}

// cpuPerRequest turns two snapshots into microseconds per completed request. A
// program process that appeared in between counts from zero.
func cpuPerRequest(a, z cpuSnap, clientCPU time.Duration, requests int) CPUPerRequest {
	if requests <= 0 {
		return CPUPerRequest{}
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(requests) }
	var progs time.Duration
	for pid, t := range z.programs {
		progs += t - a.programs[pid]
	}
	progs += z.reaped - a.reaped
	return CPUPerRequest{
		Bridge:   per(z.bridge - a.bridge),
		Nginx:    per(z.nginx - a.nginx),
		Programs: per(progs),
		Client:   per(clientCPU),
	}
}

// measure runs one closed-loop run of p at url and the CPU time the probe's
// processes, nginx and the load generator spent on it.
func (b *Bed) measure(ctx context.Context, url string, p *Program, pr probe, conc int, dur time.Duration, maxReq int) (Run, CPUPerRequest) {
	self := []int{os.Getpid()}
	s0 := b.snapshot(pr)
	c0 := cpuTime(self)
	r := ClosedLoop(ctx, func(ctx context.Context) error { return b.do(ctx, url, p) }, conc, dur, maxReq)
	c1 := cpuTime(self)
	s1 := b.snapshot(pr)
	return r, cpuPerRequest(s0, s1, c1-c0, r.Requests)
}

// probeOf returns what to measure for one side of set.
func (b *Bed) probeOf(set *warmSet, side string, p *Program) probe {
	switch side {
	case sideWarm:
		br := set.Bridge
		return probe{bridge: br.PID(), programs: func() []int { return bridgeChildren(br, "") }}
	case sideDirect:
		d := set.Direct[p.Name]
		return probe{programs: d.alive}
	default:
		return probe{bridge: b.Bridge.PID(), reaped: b.Bridge.PID()}
	}
}

// sideOrder returns a, b for even pairs and b, a for odd ones.
func sideOrder(i int, a, b string) []string {
	if i%2 == 0 {
		return []string{a, b}
	}
	return []string{b, a}
}

// executeWarm runs the warm section of the plan on bed's warm part.
func (pl Plan) executeWarm(ctx context.Context, bed *Bed, logf func(string, ...any)) (*Warm, error) {
	wp := pl.Warm
	w := bed.warm
	if w == nil || len(w.Sets) == 0 {
		return nil, fmt.Errorf("the bed was set up without its warm part")
	}
	res := &Warm{
		Programs: wp.Programs, Procs: wp.Procs, Concurrency: wp.Concurrency,
		Repeats: wp.Repeats, Seconds: wp.Duration.Seconds(),
	}
	topConc := slices.Max(wp.Concurrency)

	// Warm-up, not recorded: at the top concurrency, so that every pool has
	// started the children the load runs will use, and php-cgi has its caches.
	for _, set := range w.Sets {
		for _, p := range w.progs {
			for _, side := range []string{sideWarm, sideDirect} {
				url := bed.warmURL(set, side, &p)
				r := ClosedLoop(ctx, func(ctx context.Context) error { return bed.do(ctx, url, &p) }, topConc, pl.Warmup, 0)
				if r.Errors > 0 {
					return nil, fmt.Errorf("warm-up of %s on %s N=%d: %d of %d requests failed: %s", p.Name, side, set.N, r.Errors, r.Requests, r.FirstError)
				}
			}
		}
		logf("warm N=%d: the bridge runs %d children", set.N, len(bridgeChildren(set.Bridge, "")))
	}
	for _, p := range w.progs {
		url := bed.warmURL(nil, sideExec, &p)
		r := ClosedLoop(ctx, func(ctx context.Context) error { return bed.do(ctx, url, &p) }, 4, pl.Warmup, 0)
		if r.Errors > 0 {
			return nil, fmt.Errorf("warm-up of %s in exec mode: %d of %d requests failed: %s", p.Name, r.Errors, r.Requests, r.FirstError)
		}
	}

	run := func(set *warmSet, side, compare string, p *Program, conc, rep int) WarmRun {
		r, cpu := bed.measure(ctx, bed.warmURL(set, side, p), p, bed.probeOf(set, side, p), conc, wp.Duration, wp.MaxRequests)
		r.Backend, r.Program, r.Repeat = side, p.Name, rep
		wr := WarmRun{Run: r, Compare: compare, Procs: set.N, CPU: cpu}
		if side == sideExec {
			wr.Procs = 0
		}
		logf("warm rep %d %-7s N=%d c=%-3d %-6s %7.1f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  cpu µs/req: bridge %.0f nginx %.0f programs %.0f client %.0f",
			rep, p.Name, set.N, conc, side, r.Rate, r.P50, r.P99, r.Errors, cpu.Bridge, cpu.Nginx, cpu.Programs, cpu.Client)
		return wr
	}
	pair := 0
	for rep := range wp.Repeats {
		for _, set := range w.Sets {
			for _, p := range w.progs {
				for _, conc := range wp.Concurrency {
					for _, side := range sideOrder(pair, sideWarm, sideDirect) {
						res.Direct = append(res.Direct, run(set, side, sideDirect, &p, conc, rep))
					}
					pair++
				}
			}
		}
		// Exec mode against the first pool size.
		for _, p := range w.progs {
			for _, conc := range wp.Concurrency {
				for _, side := range sideOrder(pair, sideWarm, sideExec) {
					res.Exec = append(res.Exec, run(w.Sets[0], side, sideExec, &p, conc, rep))
				}
				pair++
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	if w.Mem != nil {
		m, err := bed.measureWarmMemory(ctx, wp, pl.Warmup)
		if err != nil {
			return nil, fmt.Errorf("measure warm memory: %w", err)
		}
		res.Memory = m
		logf("warm memory: cgibridge %s with %d pools (children %v), peak %s; children RSS %s summed, PSS %s",
			mib(m.BridgeKiB), m.Pools, m.Children, mib(m.BridgePeakKiB), mib(m.ChildrenRSSKiB), mib(m.ChildrenPSSKiB))
	}
	return res, nil
}

// memWarmTimeout bounds the warming of one pool to its full size.
const memWarmTimeout = 20 * time.Second

// measureWarmMemory warms each of the memory bridge's pools to MemProcs children
// with bursts of concurrent requests, lets them go idle and reads the bridge's
// resident set and its children's.
func (b *Bed) measureWarmMemory(ctx context.Context, wp *WarmPlan, settle time.Duration) (*WarmMemory, error) {
	w := b.warm
	br := w.Mem
	m := &WarmMemory{Pools: wp.MemPools, ProcsPerPool: wp.MemProcs}
	var err error
	if m.BridgeStartKiB, _, err = procStatus(br.PID()); err != nil {
		return nil, err
	}
	for i := range wp.MemPools {
		p := Program{Name: memFile(i), File: memFile(i), Method: "GET", Want: []byte(hello)}
		url := b.Nginx.URL + "/" + memPrefix + "/" + p.File
		path := filepath.Join(b.Base, memPrefix, p.File)
		// Twice as many requests in flight as children: while any is waiting for
		// one, the pool starts another, up to its size.
		full := waitUntil(memWarmTimeout, func() bool {
			r := ClosedLoop(ctx, func(ctx context.Context) error { return b.do(ctx, url, &p) }, 2*wp.MemProcs, 300*time.Millisecond, 0)
			if r.Errors > 0 {
				err = fmt.Errorf("%s: %d of %d requests failed: %s", p.File, r.Errors, r.Requests, r.FirstError)
				return true
			}
			return len(bridgeChildren(br, path)) >= wp.MemProcs || ctx.Err() != nil
		})
		if err != nil {
			return nil, err
		}
		m.Children = append(m.Children, len(bridgeChildren(br, path)))
		if !full {
			m.Short = true
		}
	}
	// Let the runtime hand back what the bursts used, as an idle bridge would.
	time.Sleep(settle)
	rss, hwm, err := procStatus(br.PID())
	if err != nil {
		return nil, err
	}
	m.BridgeKiB, m.BridgePeakKiB = rss, hwm
	kids := bridgeChildren(br, "")
	m.ChildrenTotal = len(kids)
	m.ChildrenRSSKiB = rssSum(kids)
	for _, k := range kids {
		m.ChildrenPSSKiB += pss(k)
	}
	return m, ctx.Err()
}
