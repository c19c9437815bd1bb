// Command bench measures cgibridge against fcgiwrap behind one nginx, in
// alternation, and writes the results as JSON, SVG plots and docs/benchmarks.md.
//
// Run it from the module root as root (both servers then run programs as nobody):
//
//	go run ./test/bench            # the full run, about 12 minutes on 2 cores (4 of them warm mode)
//	go run ./test/bench -quick     # a short run to try the machinery
//
// `go test ./test/bench` runs only the smoke test, never the full benchmark.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run parses the flags, runs the plan and writes the outputs.
func run(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	pl := Plan{Log: os.Stderr}
	var conc, progs, open, fracs, outDir, docs string
	var upload int
	var bridgeEnv string
	quick := fs.Bool("quick", false, "a short run: 1 repeat of 1 s, fewer rates, 16 MiB upload (results not meaningful)")
	fs.IntVar(&pl.Procs, "procs", 64, "cgibridge --max-procs and fcgiwrap -c")
	fs.IntVar(&pl.Repeats, "repeats", 3, "closed-loop repeats per cell (ratios are medians over them)")
	fs.DurationVar(&pl.Duration, "dur", 3*time.Second, "length of each closed-loop run")
	fs.DurationVar(&pl.OpenDuration, "open-dur", 4*time.Second, "length of each open-loop run")
	fs.StringVar(&conc, "conc", "1,8,64", "closed-loop concurrencies")
	fs.StringVar(&progs, "programs", "c,sh,perl,python,sleep,echo", "closed-loop programs")
	fs.StringVar(&open, "open", "c,sh,python", "open-loop programs")
	fs.StringVar(&fracs, "rates", "0.25,0.5,0.7,0.85,1,1.15", "open-loop offered rates, as fractions of the higher closed-loop throughput at the top concurrency")
	fs.IntVar(&pl.OverheadRounds, "overhead-rounds", 5, "rounds of the per-request cost measurement")
	fs.IntVar(&pl.OverheadN, "overhead-n", 300, "requests per way per round")
	fs.IntVar(&upload, "upload-mib", 64, "size of the upload of the memory measurement, MiB")
	fs.IntVar(&pl.UploadRepeats, "upload-repeats", 3, "uploads per backend")
	fs.StringVar(&outDir, "out", "test/bench/results", "directory for results.json, results.md and the SVG plots (relative to the module root)")
	fs.StringVar(&bridgeEnv, "bridge-env", "", "extra NAME=VALUE variables for cgibridge, comma separated (e.g. GOMAXPROCS=2)")
	warm := fs.Bool("warm", true, "also measure warm mode: FastCGI pools against spawn-fcgi direct and against exec mode, and the memory of idle pools")
	var wp WarmPlan
	var warmProgs, warmProcs, warmConc string
	fs.StringVar(&warmProgs, "warm-programs", "libfcgi,php", "warm-mode programs")
	fs.StringVar(&warmProcs, "warm-procs", "2,8", "warm-mode pool sizes N (--fastcgi-procs N against spawn-fcgi -F N), each measured")
	fs.StringVar(&warmConc, "warm-conc", "8,64", "warm-mode concurrencies")
	fs.IntVar(&wp.Repeats, "warm-repeats", 0, "warm-mode repeats per cell (0: as -repeats)")
	fs.DurationVar(&wp.Duration, "warm-dur", 0, "length of each warm-mode run (0: as -dur)")
	fs.IntVar(&wp.MemPools, "warm-mem-pools", 4, "FastCGI programs of the warm memory measurement (0: not measured)")
	fs.IntVar(&wp.MemProcs, "warm-mem-procs", 8, "children per pool of the warm memory measurement")
	zf := registerZygoteFlags(fs)
	render := fs.String("render", "", "do not measure: re-render the outputs from this results.json")
	keepFrom := fs.String("keep-from", "", "take the sections this run does not measure (warm mode, zygote) from this results.json, read before the run, so that an exec-only run keeps the page whole; the command line on the page names the file")
	serve := fs.Bool("serve", false, "do not measure: set up the bed, print its addresses and process ids, and keep it up until interrupted (for wrk, perf, strace, pprof by hand)")
	fs.StringVar(&docs, "docs", "docs/benchmarks.md", "markdown file to (re)write with the results, relative to the module root; empty: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pl.Warmup = time.Second
	if *quick {
		// Shorter defaults; flags given explicitly still win.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickly := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		pl.Warmup = 300 * time.Millisecond
		quickly("repeats", func() { pl.Repeats = 1 })
		quickly("dur", func() { pl.Duration = time.Second })
		quickly("open-dur", func() { pl.OpenDuration = 2 * time.Second })
		quickly("rates", func() { fracs = "0.5,1" })
		quickly("overhead-rounds", func() { pl.OverheadRounds = 2 })
		quickly("overhead-n", func() { pl.OverheadN = 50 })
		quickly("upload-mib", func() { upload = 16 })
		quickly("upload-repeats", func() { pl.UploadRepeats = 1 })
		quickly("warm-procs", func() { warmProcs = "2" })
	}
	pl.UploadBytes = int64(upload) << 20
	var err error
	if pl.Concurrency, err = parseInts(conc); err != nil {
		return fmt.Errorf("-conc: %w", err)
	}
	if pl.RateFractions, err = parseFloats(fracs); err != nil {
		return fmt.Errorf("-rates: %w", err)
	}
	pl.Programs, pl.OpenPrograms = splitList(progs), splitList(open)
	if *warm {
		if wp.Programs = splitList(warmProgs); len(wp.Programs) == 0 {
			return fmt.Errorf("-warm-programs: empty list")
		}
		if _, err := pickWarm(wp.Programs); err != nil {
			return fmt.Errorf("-warm-programs: %w", err)
		}
		if wp.Procs, err = parseInts(warmProcs); err != nil {
			return fmt.Errorf("-warm-procs: %w", err)
		}
		if wp.Concurrency, err = parseInts(warmConc); err != nil {
			return fmt.Errorf("-warm-conc: %w", err)
		}
		if wp.Repeats <= 0 {
			wp.Repeats = pl.Repeats
		}
		if wp.Duration <= 0 {
			wp.Duration = pl.Duration
		}
		if wp.MemPools > 0 && wp.MemProcs <= 0 {
			return fmt.Errorf("-warm-mem-procs: want a positive number")
		}
		pl.Warm = &wp
	}
	if pl.Zygote, err = zf.plan(pl.Repeats, pl.Duration); err != nil {
		return err
	}

	root, err := harness.RepoRoot()
	if err != nil {
		return err
	}
	defer harness.RemoveBinary()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var kept *Results
	if *keepFrom != "" && *render == "" {
		if kept, err = ReadJSON(*keepFrom); err != nil {
			return fmt.Errorf("-keep-from: %w", err)
		}
	}
	var res *Results
	if *render != "" {
		if res, err = ReadJSON(*render); err != nil {
			return err
		}
	} else {
		commit := gitDescribe(root)
		var env []string
		if bridgeEnv != "" {
			env = strings.Split(bridgeEnv, ",")
		}
		bed, err := SetUp(BedConfig{Procs: pl.Procs, BridgeEnv: env, Warm: pl.Warm, Zygote: pl.Zygote})
		if err != nil {
			return err
		}
		if *serve {
			return serveBed(ctx, bed)
		}
		res, err = pl.Execute(ctx, bed)
		if cerr := bed.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		res.Config.Command = strings.TrimSpace("go run ./test/bench " + strings.Join(args, " "))
		res.Config.Commit = commit
		if kept != nil {
			if res.Warm == nil {
				res.Warm = kept.Warm
			}
			if res.Zygote == nil {
				res.Zygote = kept.Zygote
			}
		}
	}

	dir := outDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	if err := WriteJSON(filepath.Join(dir, "results.json"), res); err != nil {
		return err
	}
	if _, err := WritePlots(dir, res); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(Markdown(res, ".")), 0o644); err != nil {
		return fmt.Errorf("write results.md: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", dir)
	if docs != "" {
		path := docs
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		rel, err := filepath.Rel(filepath.Dir(path), dir)
		if err != nil {
			return fmt.Errorf("place plots relative to %s: %w", path, err)
		}
		if err := os.WriteFile(path, []byte(DocsPage(res, rel)), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	}
	return nil
}

// serveBed keeps bed up until ctx ends, after printing where its parts are.
func serveBed(ctx context.Context, bed *Bed) error {
	fmt.Printf("nginx     %s\n", bed.Nginx.URL)
	for _, be := range Backends {
		fmt.Printf("%-9s %s\n", be.Name, bed.URL(be, "hello-c.cgi"))
	}
	fmt.Printf("cgibridge pid %d\n", bed.Bridge.PID())
	fmt.Printf("fcgiwrap  pid %d (master; workers are its children)\n", bed.FW.Process.Pid)
	fmt.Printf("nginx     pid %d\n", bed.Nginx.Cmd.Process.Pid)
	fmt.Println("interrupt to stop")
	<-ctx.Done()
	return bed.Close()
}

// gitDescribe names the commit of the tree being measured, "-dirty" when it has
// uncommitted changes (whose bridge part, then, is what was measured).
func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list")
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil || x <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, x)
	}
	return out, nil
}
