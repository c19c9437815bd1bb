// This file holds the benchmark plan: which measurements run, in which order, with
// the two backends always measured back to back so that drift hits both.
package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// Plan is what one benchmark run measures.
type Plan struct {
	Procs          int
	Repeats        int
	Duration       time.Duration // per closed-loop run
	OpenDuration   time.Duration // per open-loop run
	Concurrency    []int
	Programs       []string  // closed loop
	OpenPrograms   []string  // open loop
	RateFractions  []float64 // of the higher closed-loop throughput at the top concurrency
	MaxRequests    int       // per closed-loop run, 0: no cap (smoke mode caps)
	Warmup         time.Duration
	OverheadRounds int
	OverheadN      int
	UploadBytes    int64
	UploadRepeats  int
	Warm           *WarmPlan   // the warm section, nil: not measured (the bed needs its warm part)
	Zygote         *ZygotePlan // the zygote section, nil: not measured (the bed needs its zygote part)
	Log            io.Writer   // progress lines
}

// pick returns the programs named, in table order.
func pick(names []string) ([]Program, error) {
	var out []Program
	all := AllPrograms()
	for _, n := range names {
		i := slices.IndexFunc(all, func(p Program) bool { return p.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown program %q (have c, sh, perl, python, sleep, echo)", n)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// pairOrder returns the two backends in the order of the i-th pair: A B, then B A,
// so neither always runs first (on a warmer cache or a quieter machine).
func pairOrder(i int) []Backend {
	if i%2 == 0 {
		return []Backend{Cgibridge, Fcgiwrap}
	}
	return []Backend{Fcgiwrap, Cgibridge}
}

// Execute runs the plan against bed and returns the results.
func (pl Plan) Execute(ctx context.Context, bed *Bed) (*Results, error) {
	logf := func(format string, args ...any) {
		if pl.Log != nil {
			fmt.Fprintf(pl.Log, format+"\n", args...)
		}
	}
	res := &Results{Started: time.Now(), Machine: DescribeMachine()}
	res.Config = Config{
		Procs: pl.Procs, Repeats: pl.Repeats, Seconds: pl.Duration.Seconds(), OpenSeconds: pl.OpenDuration.Seconds(),
		Concurrency: pl.Concurrency, Programs: pl.Programs, OpenPrograms: pl.OpenPrograms,
		RateFractions: pl.RateFractions, UploadBytes: pl.UploadBytes,
	}
	progs, err := pick(pl.Programs)
	if err != nil {
		return nil, err
	}
	openProgs, err := pick(pl.OpenPrograms)
	if err != nil {
		return nil, err
	}

	mem := &Memory{}
	if pl.UploadBytes > 0 {
		if err := bed.IdleMemory(mem, true); err != nil {
			return nil, err
		}
		res.Memory = mem
	}

	// Warm-up: page cache, nginx's and the servers' first connections, the
	// interpreters' files. Not recorded.
	for _, p := range progs {
		for _, be := range Backends {
			r := ClosedLoop(ctx, func(ctx context.Context) error { return bed.Do(ctx, be, &p) }, 4, pl.Warmup, 0)
			if r.Errors > 0 {
				return nil, fmt.Errorf("warm-up of %s on %s: %d of %d requests failed: %s", p.Name, be.Name, r.Errors, r.Requests, r.FirstError)
			}
		}
	}

	pair := 0
	for rep := range pl.Repeats {
		for _, p := range progs {
			for _, conc := range pl.Concurrency {
				for _, be := range pairOrder(pair) {
					r := ClosedLoop(ctx, func(ctx context.Context) error { return bed.Do(ctx, be, &p) }, conc, pl.Duration, pl.MaxRequests)
					r.Backend, r.Program, r.Repeat = be.Name, p.Name, rep
					logf("closed rep %d %-6s c=%-3d %-9s %7.1f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d", rep, p.Name, conc, be.Name, r.Rate, r.P50, r.P99, r.Errors)
					res.Closed = append(res.Closed, r)
				}
				pair++
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	for _, p := range openProgs {
		sat := saturation(res.Closed, p.Name, slices.Max(pl.Concurrency))
		if sat == 0 {
			// Not measured closed-loop: find it now.
			for _, be := range Backends {
				r := ClosedLoop(ctx, func(ctx context.Context) error { return bed.Do(ctx, be, &p) }, slices.Max(pl.Concurrency), pl.Duration, pl.MaxRequests)
				sat = max(sat, r.Rate)
			}
		}
		for i, f := range pl.RateFractions {
			rate := max(1, sat*f)
			for _, be := range pairOrder(pair) {
				// The same seed for both backends: the same arrival pattern.
				r := OpenLoop(ctx, func(ctx context.Context) error { return bed.Do(ctx, be, &p) }, rate, pl.OpenDuration, uint64(i+1))
				r.Backend, r.Program = be.Name, p.Name
				logf("open %-6s offered %7.1f %-9s achieved %7.1f  p50 %7.2f p99 %7.2f p99.9 %7.2f ms  late %d errors %d valid %v %s",
					p.Name, rate, be.Name, r.Rate, r.P50, r.P99, r.P999, r.Late, r.Errors, r.Valid, r.Invalid)
				res.Open = append(res.Open, r)
			}
			pair++
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	if pl.OverheadRounds > 0 {
		o, err := bed.MeasureOverhead(ctx, pl.OverheadRounds, pl.OverheadN)
		if err != nil {
			return nil, fmt.Errorf("measure per-request cost: %w", err)
		}
		logf("overhead: bare %.0f µs, cgibridge +%.0f µs, fcgiwrap +%.0f µs", median(o.BareUS), o.BridgeCostUS, o.FcgiwrapCost)
		res.Overhead = &o
	}

	if pl.UploadBytes > 0 {
		// Let the runtime return what the load runs used before calling it idle.
		time.Sleep(3 * time.Second)
		if err := bed.IdleMemory(mem, false); err != nil {
			return nil, err
		}
		if err := bed.MeasureUpload(ctx, mem, pl.UploadBytes, pl.UploadRepeats); err != nil {
			return nil, fmt.Errorf("measure upload memory: %w", err)
		}
		logf("memory: cgibridge idle %s/%s, upload +%s; fcgiwrap idle %s, upload +%s",
			mib(mem.BridgeIdleStartKiB), mib(mem.BridgeIdleKiB), mib(mem.BridgeRiseKiB()), mib(mem.FcgiwrapIdleKiB), mib(mem.FcgiwrapRiseKiB()))
	}
	if pl.Warm != nil {
		if res.Warm, err = pl.executeWarm(ctx, bed, logf); err != nil {
			return nil, fmt.Errorf("warm section: %w", err)
		}
	}
	if pl.Zygote != nil {
		if res.Zygote, err = pl.executeZygote(ctx, bed, logf); err != nil {
			return nil, fmt.Errorf("zygote section: %w", err)
		}
	}
	res.Elapsed = time.Since(res.Started).Seconds()
	return res, nil
}

// saturation is the higher of the two backends' median closed-loop throughputs
// of prog at concurrency conc: the top of the open-loop ladder.
func saturation(runs []Run, prog string, conc int) float64 {
	best := 0.0
	for _, be := range Backends {
		var rates []float64
		for _, r := range runs {
			if r.Program == prog && r.Concurrency == conc && r.Backend == be.Name {
				rates = append(rates, r.Rate)
			}
		}
		best = max(best, median(rates))
	}
	return best
}
