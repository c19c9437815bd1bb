// This file holds the per-request cost measurement: a bare fork+exec+wait of the
// C hello program from Go, set against the same program run through cgibridge (and
// fcgiwrap) over their unix sockets with the raw FastCGI client, nginx left out.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// Overhead is the result of the per-request cost measurement. Times are medians
// in microseconds; each round measures every way in turn, so drift hits all alike.
type Overhead struct {
	Rounds       int       `json:"rounds"`
	PerRound     int       `json:"per_round"`
	BareUS       []float64 `json:"bare_us"`      // per round: os/exec of the program
	BridgeUS     []float64 `json:"cgibridge_us"` // per round: FastCGI request to cgibridge
	FcgiwrapUS   []float64 `json:"fcgiwrap_us"`  // per round: FastCGI request to fcgiwrap
	BridgeCostUS float64   `json:"cgibridge_cost_us"`
	FcgiwrapCost float64   `json:"fcgiwrap_cost_us"`
	// CPU time (user+system) the server's own processes spent per request, over all
	// rounds: a figure the machine's noise barely touches. The programs' CPU is
	// not in it (a child's time is its own, and the parent's only after wait, in
	// fields this does not read).
	BareCPUUS     float64 `json:"bare_cpu_us"` // the benchmark process itself, os/exec and the timing loop
	BridgeCPUUS   float64 `json:"cgibridge_cpu_us"`
	FcgiwrapCPUUS float64 `json:"fcgiwrap_cpu_us"`
}

// cgiEnv is an environment of the size a CGI program gets, so the bare exec copies
// as much as the servers' execs do.
func cgiEnv(script string) []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_SOFTWARE=bench", "SERVER_PROTOCOL=HTTP/1.1", "REQUEST_METHOD=GET",
		"QUERY_STRING=", "SCRIPT_NAME=/hello-c.cgi", "SCRIPT_FILENAME=" + script,
		"REQUEST_URI=/hello-c.cgi", "DOCUMENT_URI=/hello-c.cgi", "DOCUMENT_ROOT=" + filepath.Dir(script),
		"REMOTE_ADDR=127.0.0.1", "REMOTE_PORT=40000", "SERVER_ADDR=127.0.0.1",
		"SERVER_PORT=80", "SERVER_NAME=localhost", "HTTP_HOST=localhost",
		"HTTP_USER_AGENT=bench", "REDIRECT_STATUS=200", "CONTENT_LENGTH=", "CONTENT_TYPE=",
	}
}

// bareExec runs the program once the way a minimal Go server would: os/exec with
// stdout on a pipe, read to the end, wait.
func bareExec(path string, env []string) error {
	cmd := exec.Command(path)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", path, err)
	}
	got, rerr := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("wait %s: %w", path, err)
	}
	if rerr != nil {
		return fmt.Errorf("read %s: %w", path, rerr)
	}
	if !bytes.HasSuffix(got, []byte(hello)) {
		return fmt.Errorf("%s printed %q", path, got)
	}
	return nil
}

// fcgiRequest runs one request over a fresh connection to sock, as nginx does
// without fastcgi_keep_conn, and checks the answer.
func fcgiRequest(ctx context.Context, sock string, params []fcgi.Pair) error {
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return fmt.Errorf("dial %s: %w", sock, err)
	}
	c := fcgi.NewClientConn(nc)
	defer c.Close()
	var stdout bytes.Buffer
	end, err := c.Do(ctx, 1, fcgi.RoleResponder, false, params, nil, &stdout, io.Discard)
	if err != nil {
		return fmt.Errorf("FastCGI request to %s: %w", sock, err)
	}
	if end.ProtocolStatus != fcgi.RequestComplete || !bytes.HasSuffix(stdout.Bytes(), []byte(hello)) {
		return fmt.Errorf("FastCGI request to %s: end %+v, stdout %q", sock, end, stdout.Bytes())
	}
	return nil
}

// fcgiParams turns an environment list into FastCGI params.
func fcgiParams(env []string) []fcgi.Pair {
	var ps []fcgi.Pair
	for _, kv := range env {
		if k, v, ok := cutEq(kv); ok && k != "PATH" {
			ps = append(ps, fcgi.Pair{Name: k, Value: v})
		}
	}
	return ps
}

func cutEq(kv string) (string, string, bool) {
	for i := range len(kv) {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return "", "", false
}

// timeEach runs f n times and returns the median duration in microseconds.
func timeEach(n int, f func() error) (float64, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return float64(percentile(ds, 50)) / float64(time.Microsecond), nil
}

// MeasureOverhead alternates rounds of n bare execs, n cgibridge requests and n
// fcgiwrap requests, one at a time, and reports each server's median cost over the
// bare exec (median of the per-round differences).
func (b *Bed) MeasureOverhead(ctx context.Context, rounds, n int) (Overhead, error) {
	o := Overhead{Rounds: rounds, PerRound: n}
	bare := filepath.Join(b.Base, Cgibridge.Prefix, "hello-c.cgi")
	env := cgiEnv(bare)
	bridgeParams := fcgiParams(cgiEnv(bare))
	fwParams := fcgiParams(cgiEnv(filepath.Join(b.Base, Fcgiwrap.Prefix, "hello-c.cgi")))
	var bridgeDiff, fwDiff []float64
	var bareCPU, bridgeCPU, fwCPU time.Duration
	fwPIDs, err := b.FcgiwrapPIDs()
	if err != nil {
		return o, err
	}
	for r := range rounds {
		ways := []struct {
			dst  *[]float64
			cpu  *time.Duration
			pids []int
			f    func() error
		}{
			{&o.BareUS, &bareCPU, []int{os.Getpid()}, func() error { return bareExec(bare, env) }},
			{&o.BridgeUS, &bridgeCPU, []int{b.Bridge.PID()}, func() error { return fcgiRequest(ctx, b.Bridge.Socket, bridgeParams) }},
			{&o.FcgiwrapUS, &fwCPU, fwPIDs, func() error { return fcgiRequest(ctx, b.FWSocket, fwParams) }},
		}
		if r%2 == 1 {
			slices.Reverse(ways)
		}
		for _, w := range ways {
			cpu0 := cpuTime(w.pids)
			us, err := timeEach(n, w.f)
			if err != nil {
				return o, err
			}
			if w.cpu != nil {
				*w.cpu += cpuTime(w.pids) - cpu0
			}
			*w.dst = append(*w.dst, us)
		}
		bridgeDiff = append(bridgeDiff, o.BridgeUS[r]-o.BareUS[r])
		fwDiff = append(fwDiff, o.FcgiwrapUS[r]-o.BareUS[r])
	}
	total := float64(rounds * n)
	o.BareCPUUS = float64(bareCPU/time.Microsecond) / total
	o.BridgeCPUUS = float64(bridgeCPU/time.Microsecond) / total
	o.FcgiwrapCPUUS = float64(fwCPU/time.Microsecond) / total
	o.BridgeCostUS = median(bridgeDiff)
	o.FcgiwrapCost = median(fwDiff)
	return o, nil
}

// median returns the median of xs (mean of the middle two for an even count), 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuTime returns the CPU time pids have run so far, all their threads, from the
// first field of /proc/PID/task/TID/schedstat (nanoseconds, exact). /proc/PID/stat's
// utime and stime are tick-sampled: a pool of workers that each run a few
// milliseconds would show none. Threads that already exited are not counted (Go
// keeps its threads); processes that cannot be read count 0.
func cpuTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		for _, t := range tasks {
			data, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(data)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				total += time.Duration(ns)
			}
		}
	}
	return total
}
