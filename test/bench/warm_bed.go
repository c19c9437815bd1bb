// This file holds the warm-mode part of the test bed: FastCGI programs (a libfcgi
// C hello, a php-cgi hello) served by `cgibridge serve --fastcgi` pools, the same
// programs started by spawn-fcgi with nginx talking to them directly, and a bridge
// holding several idle pools for the memory measurement — all behind the bed's one
// nginx.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// helloFCGI is a libfcgi hello printing a fixed body. Run with a listening socket
// on fd 0 it answers request after request; run with anything else on fd 0 (exec
// mode) libfcgi serves one request as plain CGI and returns.
const helloFCGI = `#include <fcgi_stdio.h>
int main(void) {
	while (FCGI_Accept() >= 0)
		fputs("Content-Type: text/plain\r\n\r\nHello, world!\n", stdout);
	return 0;
}
`

// helloPHP prints the same body; php-cgi adds its own headers.
const helloPHP = "<?php echo \"Hello, world!\\n\";\n"

const (
	fcgiFile = "hello.fcgi"
	phpFile  = "hello.php"
	phpCGI   = "/usr/bin/php-cgi"
)

// The sides of the warm-mode comparisons.
const (
	sideWarm   = "warm"   // cgibridge serve --fastcgi, nginx keeping its connections
	sideDirect = "direct" // nginx straight to spawn-fcgi's children
	sideExec   = "exec"   // the bed's exec-mode cgibridge, one process per request
)

// WarmPrograms returns the FastCGI programs of the warm section, in table order.
func WarmPrograms() []Program {
	return []Program{
		{Name: "libfcgi", File: fcgiFile, Method: "GET", Want: []byte(hello)},
		{Name: "php", File: phpFile, Method: "GET", Want: []byte(hello)},
	}
}

// pickWarm returns the warm programs named, in the order given.
func pickWarm(names []string) ([]Program, error) {
	var out []Program
	all := WarmPrograms()
	for _, n := range names {
		i := slices.IndexFunc(all, func(p Program) bool { return p.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown warm program %q (have libfcgi, php)", n)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// WarmPlan is what the warm section measures; the bed reads Programs, Procs,
// MemPools and MemProcs to know what to start.
type WarmPlan struct {
	Programs    []string // libfcgi, php
	Procs       []int    // pool sizes: --fastcgi-procs N and spawn-fcgi -F N, one set each
	Concurrency []int
	Repeats     int
	Duration    time.Duration
	MaxRequests int // per run, 0: no cap (the smoke test caps)
	// The memory measurement: MemPools copies of the libfcgi hello in one
	// bridge with --fastcgi-procs MemProcs, each pool warmed to MemProcs
	// children. 0 pools: not measured.
	MemPools, MemProcs int
}

// warmSet is one pool size: a bridge serving the programs warm and, per program,
// its spawn-fcgi children.
type warmSet struct {
	N         int
	Bridge    *harness.Bridge
	bridgeDir string
	Direct    map[string]*directSet // by program name
}

// Prefixes of a set's locations, also the directories of its program copies.
func (s *warmSet) warmPrefix() string   { return "w" + strconv.Itoa(s.N) }
func (s *warmSet) directPrefix() string { return "d" + strconv.Itoa(s.N) }
func (s *warmSet) upstream() string     { return "cgb_warm_" + strconv.Itoa(s.N) }

// directSet is a FastCGI program started by spawn-fcgi -F N on its own socket.
// spawn-fcgi forks the children, each in its own session, and exits: they belong to
// init, so they are found and stopped by the pids it wrote, checked against their
// start times so that a reused pid is never signalled.
type directSet struct {
	Socket string
	PIDs   []int
	starts map[int]string // pid → start time (field 22 of /proc/PID/stat)
	dir    string
}

// warmBed is the running warm part of the bed.
type warmBed struct {
	plan   WarmPlan
	progs  []Program
	Sets   []*warmSet
	Mem    *harness.Bridge // the memory measurement's bridge, nil without it
	memDir string
}

const (
	memPrefix  = "m"
	memPattern = "mem*.fcgi"
)

func memFile(i int) string { return fmt.Sprintf("mem%d.fcgi", i+1) }

// requireWarmTools checks what the warm part needs beyond the exec bed.
func requireWarmTools() error {
	for _, t := range []struct{ path, pkg string }{
		{phpCGI, "php-cgi"},
		{"/usr/include/fcgi_stdio.h", "libfcgi-dev"},
	} {
		if _, err := os.Stat(t.path); err != nil {
			return missingTool(t.path, t.pkg)
		}
	}
	return nil
}

// startWarm writes the warm programs (and exec-mode copies for the exec bridge),
// starts one warm bridge and the spawn-fcgi children per pool size, and the memory
// bridge. Everything started is recorded in b.warm at once, so Close stops it
// whatever fails later.
func (b *Bed) startWarm(plan WarmPlan, bin string, bridgeEnv []string) error {
	if err := requireWarmTools(); err != nil {
		return err
	}
	progs, err := pickWarm(plan.Programs)
	if err != nil {
		return err
	}
	w := &warmBed{plan: plan, progs: progs}
	b.warm = w
	// Compile once, copy everywhere: every side runs the same bytes.
	src := filepath.Join(b.Base, "warm-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", src, err)
	}
	if err := compileC(src, fcgiFile, helloFCGI, "-lfcgi"); err != nil {
		return fmt.Errorf("%w (apt-get install libfcgi-dev)", err)
	}
	if err := os.WriteFile(filepath.Join(src, phpFile), []byte(helloPHP), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", phpFile, err)
	}
	install := func(dir string, names ...string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("make %s: %w", dir, err)
		}
		for _, n := range names {
			from, to := n, n
			if f, t, ok := strings.Cut(n, "="); ok {
				from, to = f, t
			}
			if err := copyExec(filepath.Join(src, from), filepath.Join(dir, to)); err != nil {
				return err
			}
		}
		return nil
	}
	// The exec bridge serves its copies one process per request.
	if err := install(filepath.Join(b.Base, Cgibridge.Prefix), fcgiFile, phpFile); err != nil {
		return err
	}

	for _, n := range plan.Procs {
		s := &warmSet{N: n, Direct: map[string]*directSet{}}
		w.Sets = append(w.Sets, s)
		if err := install(filepath.Join(b.Base, s.warmPrefix()), fcgiFile, phpFile); err != nil {
			return err
		}
		if err := install(filepath.Join(b.Base, s.directPrefix()), fcgiFile, phpFile); err != nil {
			return err
		}
		if s.bridgeDir, err = os.MkdirTemp("", "cgb-w-"); err != nil {
			return fmt.Errorf("make bridge dir: %w", err)
		}
		// php-cgi leaves after 500 requests by default (PHP_FCGI_MAX_REQUESTS):
		// spawn-fcgi's children would not come back, so both sides turn it off.
		s.Bridge, err = harness.LaunchBridge(bin, s.bridgeDir, []string{
			"--root", filepath.Join(b.Base, s.warmPrefix()),
			"--fastcgi", "*.fcgi", "--fastcgi", "*.php",
			"--fastcgi-procs", strconv.Itoa(n),
			"--fastcgi-env", "*.php:PHP_FCGI_MAX_REQUESTS=0",
			"--log-level", "warn",
		}, bridgeEnv...)
		if err != nil {
			return err
		}
		for _, p := range progs {
			dir := filepath.Join(b.Base, s.directPrefix())
			argv := []string{filepath.Join(dir, fcgiFile)}
			if p.File == phpFile {
				argv = []string{phpCGI}
			}
			d, err := startDirect(n, dir, argv)
			if d != nil {
				s.Direct[p.Name] = d
			}
			if err != nil {
				return fmt.Errorf("spawn-fcgi -F %d %s: %w", n, p.Name, err)
			}
		}
	}

	if plan.MemPools > 0 {
		var names []string
		for i := range plan.MemPools {
			names = append(names, fcgiFile+"="+memFile(i))
		}
		if err := install(filepath.Join(b.Base, memPrefix), names...); err != nil {
			return err
		}
		if w.memDir, err = os.MkdirTemp("", "cgb-m-"); err != nil {
			return fmt.Errorf("make bridge dir: %w", err)
		}
		w.Mem, err = harness.LaunchBridge(bin, w.memDir, []string{
			"--root", filepath.Join(b.Base, memPrefix),
			"--fastcgi", memPattern,
			"--fastcgi-procs", strconv.Itoa(plan.MemProcs),
			"--log-level", "warn",
		}, bridgeEnv...)
		if err != nil {
			return err
		}
	}
	return nil
}

// copyExec copies an executable (or script) so that nobody can run it.
func copyExec(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		return fmt.Errorf("copy to %s: %w", to, err)
	}
	return os.Chmod(to, 0o755)
}

// startDirect runs argv under `spawn-fcgi -F n` on a fresh unix socket, as nobody
// when root (as the bridges run programs), with PHP_FCGI_CHILDREN=0 so that php-cgi
// forks nothing of its own: n children on one shared socket. On error the children
// already forked are in the returned set, to be stopped.
func startDirect(n int, dir string, argv []string) (*directSet, error) {
	tmp, err := os.MkdirTemp("", "cgb-sf-")
	if err != nil {
		return nil, fmt.Errorf("make spawn-fcgi dir: %w", err)
	}
	d := &directSet{Socket: filepath.Join(tmp, "fcgi.sock"), dir: tmp, starts: map[int]string{}}
	pidFile := filepath.Join(tmp, "pids")
	args := []string{"-s", d.Socket, "-M", "0666", "-F", strconv.Itoa(n), "-P", pidFile, "-d", dir}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody", "-g", "nogroup")
	}
	args = append(args, "--")
	cmd := exec.Command("/usr/bin/spawn-fcgi", append(args, argv...)...)
	cmd.Dir = tmp
	// spawn-fcgi hands its own environment to the children.
	cmd.Env = []string{harness.SafePath, "HOME=" + tmp, "PHP_FCGI_CHILDREN=0", "PHP_FCGI_MAX_REQUESTS=0"}
	out, runErr := cmd.CombinedOutput() // it returns once the children are forked
	for _, f := range strings.Fields(harness.ReadFile(pidFile)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if st, _, err := startTime(pid); err == nil {
			d.PIDs = append(d.PIDs, pid)
			d.starts[pid] = st
		}
	}
	if runErr != nil {
		return d, fmt.Errorf("%w\n%s", runErr, out)
	}
	if len(d.PIDs) != n {
		return d, fmt.Errorf("%d children running of %d:\n%s", len(d.PIDs), n, out)
	}
	// The socket is bound before the fork; check that the children accept.
	c, err := net.DialTimeout("unix", d.Socket, harness.StartTimeout)
	if err != nil {
		return d, fmt.Errorf("children do not accept: %w", err)
	}
	c.Close()
	return d, nil
}

// startTime returns field 22 of /proc/PID/stat, which tells a process from a
// later one with the same pid, and whether the process has exited (a zombie
// its parent, init, has not reaped yet).
func startTime(pid int) (start string, exited bool, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", true, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", false, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return "", false, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	// The fields after the name start at 3 (state): 22 is index 19.
	return f[19], f[0] == "Z" || f[0] == "X", nil
}

// alive returns the set's children that are still the processes it started and
// have not exited.
func (d *directSet) alive() []int {
	var out []int
	for _, pid := range d.PIDs {
		if st, exited, err := startTime(pid); err == nil && !exited && st == d.starts[pid] {
			out = append(out, pid)
		}
	}
	return out
}

// stop sends SIGTERM to the children, then SIGKILL to those left after StopTimeout.
func (d *directSet) stop() error {
	pids := d.alive()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	var errs []error
	for _, pid := range pids {
		if err := harness.WaitGone(pid, harness.StopTimeout); err != nil {
			if st, exited, e := startTime(pid); e == nil && !exited && st == d.starts[pid] {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			errs = append(errs, fmt.Errorf("spawn-fcgi child: %w", err))
		}
	}
	_ = os.RemoveAll(d.dir)
	return errors.Join(errs...)
}

// closeWarm stops what startWarm started.
func (b *Bed) closeWarm() []error {
	w := b.warm
	if w == nil {
		return nil
	}
	var errs []error
	stopBridge := func(br *harness.Bridge, dir string) {
		if br != nil {
			if err := br.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("warm cgibridge did not exit cleanly: %w\n%s", err, br.Logs.String()))
			}
		}
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	}
	for _, s := range w.Sets {
		for _, d := range s.Direct {
			if err := d.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		stopBridge(s.Bridge, s.bridgeDir)
	}
	stopBridge(w.Mem, w.memDir)
	return errs
}

// warmLocations is the warm part of nginx's server block. A warm bridge is reached
// the way the shipped configuration runs it: through an upstream with kept
// connections (keepalive 32, fastcgi_keep_conn on). spawn-fcgi's children get
// nginx's default, a connection per request: a child holding a kept connection
// accepts no other, so with more nginx connections than children requests would
// wait on idle connections.
//
// nginx takes upstream {} only at http level, and the harness writes only the
// inside of server {}: the block closes the server itself, declares the upstreams,
// and leaves the last one open, to be closed by the two braces the harness puts
// after it (the server's, and http's).
func (b *Bed) warmLocations() string {
	w := b.warm
	var s strings.Builder
	params := harness.FastCGIParams() + "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
	for _, set := range w.Sets {
		fmt.Fprintf(&s, "location /%s/ {\nfastcgi_pass %s;\nfastcgi_keep_conn on;\n%s}\n", set.warmPrefix(), set.upstream(), params)
		for _, p := range w.progs {
			fmt.Fprintf(&s, "location = /%s/%s {\nfastcgi_pass unix:%s;\n%s}\n", set.directPrefix(), p.File, set.Direct[p.Name].Socket, params)
		}
	}
	if w.Mem != nil {
		fmt.Fprintf(&s, "location /%s/ {\nfastcgi_pass unix:%s;\n%s}\n", memPrefix, w.Mem.Socket, params)
	}
	if len(w.Sets) == 0 {
		return s.String()
	}
	s.WriteString("}\n") // the server
	for i, set := range w.Sets {
		fmt.Fprintf(&s, "upstream %s {\nserver unix:%s;\nkeepalive 32;\n", set.upstream(), set.Bridge.Socket)
		if i < len(w.Sets)-1 {
			s.WriteString("}\n")
		}
	}
	return s.String()
}

// warmURL returns the address of prog on one side of set.
func (b *Bed) warmURL(set *warmSet, side string, p *Program) string {
	switch side {
	case sideWarm:
		return b.Nginx.URL + "/" + set.warmPrefix() + "/" + p.File
	case sideDirect:
		return b.Nginx.URL + "/" + set.directPrefix() + "/" + p.File
	default:
		return b.URL(Cgibridge, p.File)
	}
}

// bridgeChildren returns the bridge's child processes whose executable is path
// (all of them when path is empty).
func bridgeChildren(br *harness.Bridge, path string) []int {
	kids, err := harness.Children(br.PID())
	if err != nil {
		return nil
	}
	if path == "" {
		return kids
	}
	var out []int
	for _, k := range kids {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", k)); err == nil && exe == path {
			out = append(out, k)
		}
	}
	return out
}

// pss returns the proportional set size of pid in KiB (shared pages divided among
// the processes that map them), from /proc/PID/smaps_rollup.
func pss(pid int) int64 {
	_, p := smapsRollup(pid)
	return p
}

// waitUntil polls cond every 20 ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
