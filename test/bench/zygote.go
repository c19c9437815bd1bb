// This file holds the zygote section: Python and Perl CGI scripts served by a
// `cgibridge serve --warm GLOB` bridge (a preloading helper per script that forks
// a child per request) against the same scripts through the exec-mode bridge of
// the sections above, behind the same nginx, alternating; and the memory of a
// bridge holding many warm scripts' helpers and their spare children.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/test/harness"
)

// Sources of the zygote section's scripts. Each prints the same body; the
// interpreter is named by absolute path (not /root/.pyenv's shims or a PATH
// lookup) so that both bridges start the same interpreter.
const (
	zyPyHello = "#!/usr/bin/python3\nimport sys\nsys.stdout.write(\"Content-Type: text/plain\\r\\n\\r\\nHello, world!\\n\")\n"
	// zyPyImports imports what a real CGI script of the standard library's
	// kind does: about 60–90 ms of imports on the benchmark machine, against
	// about 20 ms for the interpreter's own start.
	zyPyImports = `#!/usr/bin/python3
import argparse
import decimal
import email.mime.multipart
import email.mime.text
import http.client
import json
import logging
import urllib.request
import xml.etree.ElementTree
import sys

sys.stdout.write("Content-Type: text/plain\r\n\r\n" + json.loads('"Hello, world!\\n"'))
`
	// zyPerlCGI is a CGI.pm script: the module parses the request and prints
	// the header, as the legacy scripts the zygote is for do.
	zyPerlCGI = `#!/usr/bin/perl
use strict;
use warnings;
use CGI;
use POSIX ();
use JSON::PP;
use Encode;

my $q = CGI->new;
print $q->header(-type => 'text/plain');
print encode('UTF-8', decode_json('["Hello, world!\n"]')->[0]);
`
	zyPerlTiny = "#!/usr/bin/perl\nprint \"Content-Type: text/plain\\r\\n\\r\\nHello, world!\\n\";\n"
)

// ZygoteScript is one script of the section and the throughput ratio it aims at.
type ZygoteScript struct {
	Program
	Source string
	Target float64 // warm/exec throughput, 0: no target (reported only)
	About  string  // what it is, for the report
}

// ZygoteScripts returns the section's scripts in table order.
func ZygoteScripts() []ZygoteScript {
	p := func(name string) Program {
		return Program{Name: name, File: "z-" + name + ".cgi", Method: "GET", Want: []byte(hello)}
	}
	return []ZygoteScript{
		{p("py-hello"), zyPyHello, 5, "Python hello (import sys)"},
		{p("py-imports"), zyPyImports, 10, "Python importing json, email.mime, http.client, decimal, xml.etree, urllib.request, argparse, logging"},
		{p("perl-cgi"), zyPerlCGI, 5, "Perl with CGI.pm (CGI->new, header), POSIX, JSON::PP, Encode"},
		{p("perl-tiny"), zyPerlTiny, 0, "Perl hello, one print, no modules"},
	}
}

func zygoteNames() string {
	var n []string
	for _, s := range ZygoteScripts() {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

// pickZygote returns the zygote scripts named, in the order given.
func pickZygote(names []string) ([]ZygoteScript, error) {
	var out []ZygoteScript
	all := ZygoteScripts()
	for _, n := range names {
		i := slices.IndexFunc(all, func(s ZygoteScript) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown zygote script %q (have %s)", n, zygoteNames())
		}
		out = append(out, all[i])
	}
	return out, nil
}

// ZygotePlan is what the zygote section measures; the bed reads Programs,
// MemScripts and MemPrograms to know what to write and start.
type ZygotePlan struct {
	Programs    []string
	Concurrency []int
	Repeats     int
	Duration    time.Duration
	MaxRequests int // per run, 0: no cap (the smoke test caps)
	// The memory measurement: MemScripts distinct scripts (copies of
	// MemPrograms, round robin) in one --warm bridge, each requested until
	// its helper served it warm. 0: not measured.
	MemScripts  int
	MemPrograms []string
}

// zygoteFlags are the section's command-line flags.
type zygoteFlags struct {
	on                       *bool
	programs, conc, memProgs *string
	repeats, memScripts      *int
	dur                      *time.Duration
}

// registerZygoteFlags adds the section's flags to fs.
func registerZygoteFlags(fs interface {
	Bool(string, bool, string) *bool
	String(string, string, string) *string
	Int(string, int, string) *int
	Duration(string, time.Duration, string) *time.Duration
}) *zygoteFlags {
	return &zygoteFlags{
		on:         fs.Bool("zygote", true, "also measure the interpreter zygote: Python and Perl scripts under --warm against exec mode, and the memory of warm helpers"),
		programs:   fs.String("zygote-programs", zygoteNames(), "zygote scripts"),
		conc:       fs.String("zygote-conc", "1,8", "zygote concurrencies"),
		repeats:    fs.Int("zygote-repeats", 0, "zygote repeats per cell (0: as -repeats)"),
		dur:        fs.Duration("zygote-dur", 0, "length of each zygote run (0: as -dur)"),
		memScripts: fs.Int("zygote-mem-scripts", 16, "distinct warm scripts of the zygote memory measurement (0: not measured)"),
		memProgs:   fs.String("zygote-mem-programs", zygoteNames(), "the scripts the memory measurement's copies are of, round robin"),
	}
}

// plan turns the flags into a plan, nil when the section is off.
func (f *zygoteFlags) plan(repeats int, dur time.Duration) (*ZygotePlan, error) {
	if !*f.on {
		return nil, nil
	}
	zp := &ZygotePlan{Programs: splitList(*f.programs), Repeats: *f.repeats, Duration: *f.dur,
		MemScripts: *f.memScripts, MemPrograms: splitList(*f.memProgs)}
	if len(zp.Programs) == 0 {
		return nil, fmt.Errorf("-zygote-programs: empty list")
	}
	if _, err := pickZygote(zp.Programs); err != nil {
		return nil, fmt.Errorf("-zygote-programs: %w", err)
	}
	var err error
	if zp.Concurrency, err = parseInts(*f.conc); err != nil {
		return nil, fmt.Errorf("-zygote-conc: %w", err)
	}
	if zp.MemScripts > 0 {
		if len(zp.MemPrograms) == 0 {
			return nil, fmt.Errorf("-zygote-mem-programs: empty list")
		}
		if _, err := pickZygote(zp.MemPrograms); err != nil {
			return nil, fmt.Errorf("-zygote-mem-programs: %w", err)
		}
	}
	if zp.Repeats <= 0 {
		zp.Repeats = repeats
	}
	if zp.Duration <= 0 {
		zp.Duration = dur
	}
	return zp, nil
}

// zygoteBridge is a --warm bridge with its status page.
type zygoteBridge struct {
	*harness.Bridge
	dir    string
	status string // http://127.0.0.1:PORT
}

// zygoteBed is the running zygote part of the bed.
type zygoteBed struct {
	plan    ZygotePlan
	scripts []ZygoteScript
	Warm    *zygoteBridge // serves the scripts warm under /z/
	Mem     *zygoteBridge // the memory measurement's, under /zm/; nil without it
	mem     []ZygoteScript
}

const (
	zyPrefix    = "z"
	zyMemPrefix = "zm"
	zyGlob      = "*.cgi"
)

func zyMemFile(i int) string { return fmt.Sprintf("zm%02d.cgi", i+1) }

// startZygote writes the scripts into the exec bridge's root and the warm
// bridges' roots and starts the warm bridges. What it starts is recorded in
// b.zygote at once, so Close stops it whatever fails later.
func (b *Bed) startZygote(plan ZygotePlan, bin string, bridgeEnv []string) error {
	scripts, err := pickZygote(plan.Programs)
	if err != nil {
		return err
	}
	z := &zygoteBed{plan: plan, scripts: scripts}
	b.zygote = z
	write := func(dir, name, src string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("make %s: %w", dir, err)
		}
		return copyExecData(filepath.Join(dir, name), src)
	}
	for _, s := range scripts {
		for _, dir := range []string{Cgibridge.Prefix, zyPrefix} {
			if err := write(filepath.Join(b.Base, dir), s.File, s.Source); err != nil {
				return err
			}
		}
	}
	if z.Warm, err = launchZygoteBridge(bin, filepath.Join(b.Base, zyPrefix), b.Procs, bridgeEnv); err != nil {
		return err
	}
	if plan.MemScripts > 0 {
		progs, err := pickZygote(plan.MemPrograms)
		if err != nil {
			return err
		}
		for i := range plan.MemScripts {
			s := progs[i%len(progs)]
			s.File = zyMemFile(i)
			z.mem = append(z.mem, s)
			if err := write(filepath.Join(b.Base, zyMemPrefix), s.File, s.Source); err != nil {
				return err
			}
		}
		if z.Mem, err = launchZygoteBridge(bin, filepath.Join(b.Base, zyMemPrefix), b.Procs, bridgeEnv); err != nil {
			return err
		}
	}
	return nil
}

func copyExecData(to, src string) error {
	if err := os.WriteFile(to, []byte(src), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	return os.Chmod(to, 0o755)
}

// launchZygoteBridge starts `cgibridge serve --warm '*.cgi'` on root with its
// status page on a free loopback port, its other settings the exec bridge's
// (--max-procs, --log-level warn) and the warm mode's defaults.
func launchZygoteBridge(bin, root string, procs int, env []string) (*zygoteBridge, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cgb-z-")
	if err != nil {
		return nil, fmt.Errorf("make bridge dir: %w", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	br, err := harness.LaunchBridge(bin, dir, []string{
		"--root", root, "--warm", zyGlob, "--max-procs", strconv.Itoa(procs),
		"--status", addr, "--log-level", "warn",
	}, env...)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &zygoteBridge{Bridge: br, dir: dir, status: "http://" + addr}, nil
}

// closeZygote stops what startZygote started.
func (b *Bed) closeZygote() []error {
	z := b.zygote
	if z == nil {
		return nil
	}
	var errs []error
	for _, zb := range []*zygoteBridge{z.Warm, z.Mem} {
		if zb == nil {
			continue
		}
		if err := zb.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("zygote cgibridge did not exit cleanly: %w\n%s", err, zb.Logs.String()))
		}
		_ = os.RemoveAll(zb.dir)
	}
	return errs
}

// zygoteLocations is the zygote part of nginx's server block: each --warm bridge
// reached as the exec bridge is, a new connection per request.
func (b *Bed) zygoteLocations() string {
	z := b.zygote
	var s strings.Builder
	params := harness.FastCGIParams() + "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
	fmt.Fprintf(&s, "location /%s/ {\nfastcgi_pass unix:%s;\n%s}\n", zyPrefix, z.Warm.Socket, params)
	if z.Mem != nil {
		fmt.Fprintf(&s, "location /%s/ {\nfastcgi_pass unix:%s;\n%s}\n", zyMemPrefix, z.Mem.Socket, params)
	}
	return s.String()
}

// zygoteURL is the address of a script on one side: warm or exec.
func (b *Bed) zygoteURL(side string, p *Program) string {
	if side == sideWarm {
		return b.Nginx.URL + "/" + zyPrefix + "/" + p.File
	}
	return b.URL(Cgibridge, p.File)
}

// units reads the bridge's status page: its warm units by script file name.
func (zb *zygoteBridge) units() (map[string]status.Warm, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(zb.status + "/status?json")
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	var page struct {
		Warm []status.Warm `json:"warm"`
	}
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, fmt.Errorf("status page: %w: %.200q", err, data)
	}
	out := map[string]status.Warm{}
	for _, u := range page.Warm {
		if u.Runner == "warm" {
			out[filepath.Base(u.Program)] = u
		}
	}
	return out, nil
}

// coldTotal sums a unit's requests passed to exec mode.
func coldTotal(u status.Warm) uint64 {
	var n uint64
	for _, c := range u.Cold {
		n += c
	}
	return n
}

// zyWarmTimeout bounds the wait for one script's helper to serve it warm.
const zyWarmTimeout = 30 * time.Second

// decide requests p on zb one at a time until the status page says a request was
// served warm, or the bridge gave up on warming it (its Failing reason), or
// zyWarmTimeout passed; it returns "warm" or "cold" and, for cold, the reason
// the bridge gave.
func (b *Bed) decide(ctx context.Context, zb *zygoteBridge, url string, p *Program) (decision, reason string, err error) {
	deadline := time.Now().Add(zyWarmTimeout)
	for {
		if err := b.do(ctx, url, p); err != nil {
			return "", "", err
		}
		us, err := zb.units()
		if err != nil {
			return "", "", err
		}
		u := us[p.File]
		switch {
		case u.Requests > 0:
			return sideWarm, "", nil
		case u.Failing != "":
			return "cold", u.Failing, nil
		case time.Now().After(deadline) || ctx.Err() != nil:
			why := "no warm request within " + zyWarmTimeout.String()
			if k := topReason(u.Cold); k != "" {
				why += "; cold: " + k
			}
			return "cold", why, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// topReason is the reason of the most requests in cold, "" for none.
func topReason(cold map[string]uint64) string {
	best := ""
	for _, k := range slices.Sorted(maps.Keys(cold)) {
		if best == "" || cold[k] > cold[best] {
			best = k
		}
	}
	return best
}

// directChildren returns pid's children (not their descendants), from
// /proc/PID/task/*/children.
func directChildren(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// helperOf returns the helper process of script among the bridge's children: the
// one whose command line ends with the script's path (python3 -c SRC SCRIPT; the
// Perl helper sets $0 to "perl (cgibridge zygote) SCRIPT"). 0: none.
func helperOf(bridge int, script string) int {
	for _, k := range directChildren(bridge) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
		if err != nil {
			continue
		}
		cmd := strings.TrimRight(strings.ReplaceAll(string(data), "\x00", " "), " ")
		if strings.HasSuffix(cmd, " "+script) {
			return k
		}
	}
	return 0
}

// zygoteSnap reads the CPU time of one side: on the warm side the bridge, the
// helpers (their own time and that of the request children they reaped) and the
// exec-mode processes the bridge reaped (cold requests); on the exec side the
// bridge and its reaped CGI processes.
func (b *Bed) zygoteSnap(side string) cpuSnap {
	if side != sideWarm {
		return b.snapshot(probe{bridge: b.Bridge.PID(), reaped: b.Bridge.PID()})
	}
	br := b.zygote.Warm.PID()
	s := b.snapshot(probe{bridge: br, reaped: br})
	s.programs = map[int]time.Duration{}
	for _, h := range directChildren(br) {
		s.programs[h] = cpuTime([]int{h}) + reapedTime(h)
	}
	return s
}

// measureZygote runs one closed-loop run of s on one side, with the CPU time
// spent and, on the warm side, how many requests the status page counts as
// served warm and as passed to exec mode.
func (b *Bed) measureZygote(ctx context.Context, side string, s *ZygoteScript, conc int, dur time.Duration, maxReq int) (ZygoteRun, error) {
	zb := b.zygote.Warm
	var u0 status.Warm
	if side == sideWarm {
		us, err := zb.units()
		if err != nil {
			return ZygoteRun{}, err
		}
		u0 = us[s.File]
	}
	self := []int{os.Getpid()}
	url := b.zygoteURL(side, &s.Program)
	c0s := b.zygoteSnap(side)
	c0 := cpuTime(self)
	r := ClosedLoop(ctx, func(ctx context.Context) error { return b.do(ctx, url, &s.Program) }, conc, dur, maxReq)
	c1 := cpuTime(self)
	c1s := b.zygoteSnap(side)
	r.Backend, r.Program = side, s.Name
	zr := ZygoteRun{Run: r, CPU: cpuPerRequest(c0s, c1s, c1-c0, r.Requests)}
	if side == sideWarm {
		us, err := zb.units()
		if err != nil {
			return zr, err
		}
		u1 := us[s.File]
		zr.Warm = u1.Requests - u0.Requests
		zr.Cold = coldTotal(u1) - coldTotal(u0)
		for k, n := range u1.Cold {
			if d := n - u0.Cold[k]; d > 0 {
				if zr.ColdReasons == nil {
					zr.ColdReasons = map[string]uint64{}
				}
				zr.ColdReasons[k] = d
			}
		}
	}
	return zr, nil
}

// executeZygote runs the zygote section of the plan on bed's zygote part.
func (pl Plan) executeZygote(ctx context.Context, bed *Bed, logf func(string, ...any)) (*Zygote, error) {
	zp := pl.Zygote
	z := bed.zygote
	if z == nil || z.Warm == nil {
		return nil, fmt.Errorf("the bed was set up without its zygote part")
	}
	res := &Zygote{Programs: zp.Programs, Concurrency: zp.Concurrency, Repeats: zp.Repeats, Seconds: zp.Duration.Seconds()}
	topConc := slices.Max(zp.Concurrency)

	// Warm-up, not recorded: each script on the warm bridge until its helper
	// serves it (or the bridge says why it will not), then both sides at the
	// top concurrency for the interpreters' files and the helpers' spares.
	for _, s := range z.scripts {
		start := time.Now()
		d, why, err := bed.decide(ctx, z.Warm, bed.zygoteURL(sideWarm, &s.Program), &s.Program)
		if err != nil {
			return nil, fmt.Errorf("warm-up of %s: %w", s.Name, err)
		}
		res.Scripts = append(res.Scripts, ZygoteDecision{Program: s.Name, About: s.About, Target: s.Target, Decision: d, Reason: why,
			FirstWarmSeconds: time.Since(start).Seconds()})
		logf("zygote %-10s decided %s %s (after %.2f s)", s.Name, d, why, time.Since(start).Seconds())
		for _, side := range []string{sideWarm, sideExec} {
			url := bed.zygoteURL(side, &s.Program)
			r := ClosedLoop(ctx, func(ctx context.Context) error { return bed.do(ctx, url, &s.Program) }, topConc, pl.Warmup, 0)
			if r.Errors > 0 {
				return nil, fmt.Errorf("warm-up of %s on %s: %d of %d requests failed: %s", s.Name, side, r.Errors, r.Requests, r.FirstError)
			}
		}
	}

	pair := 0
	for rep := range zp.Repeats {
		for i := range z.scripts {
			s := &z.scripts[i]
			for _, conc := range zp.Concurrency {
				for _, side := range sideOrder(pair, sideWarm, sideExec) {
					r, err := bed.measureZygote(ctx, side, s, conc, zp.Duration, zp.MaxRequests)
					if err != nil {
						return nil, fmt.Errorf("zygote %s on %s: %w", s.Name, side, err)
					}
					r.Repeat = rep
					logf("zygote rep %d %-10s c=%-2d %-4s %7.1f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d  warm %d cold %d  cpu µs/req: bridge %.0f programs %.0f nginx %.0f client %.0f",
						rep, s.Name, conc, side, r.Rate, r.P50, r.P99, r.Errors, r.Warm, r.Cold, r.CPU.Bridge, r.CPU.Programs, r.CPU.Nginx, r.CPU.Client)
					res.Runs = append(res.Runs, r)
				}
				pair++
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	for _, r := range ZygoteRows(res) {
		logf("zygote %-10s c=%-2d warm/exec throughput %5.1f× (%.1f–%.1f), p50 exec/warm %5.1f×, served warm %d of %d: %s",
			r.Program, r.Concurrency, r.RateRatio, r.RLo, r.RHi, ratio(r.ExecP50, r.WarmP50), r.Warm, r.Warm+r.Cold, r.verdict())
	}

	if z.Mem != nil {
		m, err := bed.measureZygoteMemory(ctx, pl.Warmup)
		if err != nil {
			return nil, fmt.Errorf("measure zygote memory: %w", err)
		}
		res.Memory = m
		t := m.totals()
		logf("zygote memory: cgibridge %s with %d warm scripts (start %s, peak %s); %d helpers RSS %s PSS %s; %d spares RSS %s PSS %s",
			mib(m.BridgeKiB), t.warm, mib(m.BridgeStartKiB), mib(m.BridgePeakKiB), t.helpers, mib(t.helperRSS), mib(t.helperPSS),
			t.spares, mib(t.spareRSS), mib(t.sparePSS))
	}
	return res, nil
}

// zySpareTimeout bounds the wait for a helper's spares after its first request.
const zySpareTimeout = 10 * time.Second

// measureZygoteMemory requests each of the memory bridge's scripts until its
// helper serves it warm, waits for the helpers' spares, lets the bridge go idle
// and reads the resident and proportional sets of the bridge, each helper and
// its spares.
func (b *Bed) measureZygoteMemory(ctx context.Context, settle time.Duration) (*ZygoteMemory, error) {
	z := b.zygote
	zb := z.Mem
	m := &ZygoteMemory{Scripts: len(z.mem)}
	var err error
	if m.BridgeStartKiB, _, err = procStatus(zb.PID()); err != nil {
		return nil, err
	}
	base := filepath.Join(b.Base, zyMemPrefix)
	for i := range z.mem {
		s := &z.mem[i]
		url := b.Nginx.URL + "/" + zyMemPrefix + "/" + s.File
		d, why, err := b.decide(ctx, zb, url, &s.Program)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", s.File, s.Name, err)
		}
		m.Helpers = append(m.Helpers, ZygoteHelperMemory{Program: s.Name, File: s.File, Decision: d, Reason: why})
	}
	// The spares a helper forks after its request child exits.
	var errs []error
	for i := range m.Helpers {
		h := &m.Helpers[i]
		if h.Decision != sideWarm {
			continue
		}
		script := filepath.Join(base, h.File)
		if !waitUntil(zySpareTimeout, func() bool {
			h.PID = helperOf(zb.PID(), script)
			return h.PID > 0 && len(directChildren(h.PID)) >= zyExpectSpares
		}) {
			errs = append(errs, fmt.Errorf("%s: helper %d has %d spares after %v, want %d", h.File, h.PID, len(directChildren(h.PID)), zySpareTimeout, zyExpectSpares))
		}
	}
	time.Sleep(settle)
	rss, hwm, err := procStatus(zb.PID())
	if err != nil {
		return nil, err
	}
	m.BridgeKiB, m.BridgePeakKiB = rss, hwm
	for i := range m.Helpers {
		h := &m.Helpers[i]
		if h.PID == 0 {
			continue
		}
		h.RSSKiB, h.PSSKiB = smapsRollup(h.PID)
		for _, k := range directChildren(h.PID) {
			r, p := smapsRollup(k)
			h.Spares++
			h.SparesRSSKiB += r
			h.SparesPSSKiB += p
		}
	}
	m.HelpersAlive = len(directChildren(zb.PID()))
	if len(errs) > 0 {
		m.Short = errors.Join(errs...).Error()
	}
	return m, ctx.Err()
}

// zyExpectSpares is --warm-spares' default, which the bench's bridges keep.
const zyExpectSpares = 2
