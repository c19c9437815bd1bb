// This file holds the test bed: the benchmark programs, cgibridge and fcgiwrap
// serving the same copies of them, and one nginx with identical locations for both.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

// Backend is one of the two FastCGI servers under test, reached through nginx under
// its own URL prefix.
type Backend struct {
	Name   string // "cgibridge" or "fcgiwrap"
	Prefix string // location prefix in nginx, also the directory of its program copies
}

// The two backends, in the order A, B of the alternation.
var (
	Cgibridge = Backend{Name: "cgibridge", Prefix: "cgb"}
	Fcgiwrap  = Backend{Name: "fcgiwrap", Prefix: "fw"}
	Backends  = []Backend{Cgibridge, Fcgiwrap}
)

// Program is one CGI program of the benchmark and the exchange that checks it.
type Program struct {
	Name   string // short name used in tables and flags: c, sh, perl, python, sleep, echo
	File   string // file name inside each backend's directory
	Method string
	Body   []byte // request body; nil for GET
	Want   []byte // the exact response body
}

// hello is what every hello program prints after its header.
const hello = "Hello, world!\n"

// Sources of the programs. Scripts name their interpreter by absolute path so that
// cgibridge and fcgiwrap both start them through the kernel's shebang handling,
// the same way, rather than through a PATH lookup.
var (
	helloC = `#include <stdio.h>
int main(void) { fputs("Content-Type: text/plain\r\n\r\nHello, world!\n", stdout); return 0; }
`
	sleepC = `#include <stdio.h>
#include <time.h>
int main(void) {
	struct timespec ts = {0, 100000000};
	nanosleep(&ts, NULL);
	fputs("Content-Type: text/plain\r\n\r\nHello, world!\n", stdout);
	return 0;
}
`
	// echoC reads the whole body (CONTENT_LENGTH bytes) before writing: fcgiwrap
	// writes the body before it reads any output, so a program that answers first
	// would deadlock there and measure nothing.
	echoC = `#include <stdio.h>
#include <stdlib.h>
int main(void) {
	const char *cl = getenv("CONTENT_LENGTH");
	long n = cl ? atol(cl) : 0, got = 0;
	char *buf = malloc(n > 0 ? n : 1);
	while (got < n) {
		size_t r = fread(buf + got, 1, n - got, stdin);
		if (r == 0) break;
		got += r;
	}
	fputs("Content-Type: application/octet-stream\r\n\r\n", stdout);
	fwrite(buf, 1, got, stdout);
	return 0;
}
`
	// countC reads its stdin to the end and prints how many bytes came: the upload
	// target of the memory measurement, so that only the servers hold the body.
	countC = `#include <stdio.h>
#include <unistd.h>
int main(void) {
	static char buf[65536];
	long long total = 0;
	ssize_t r;
	while ((r = read(0, buf, sizeof buf)) > 0) total += r;
	printf("Content-Type: text/plain\r\n\r\n%lld\n", total);
	return 0;
}
`
	helloSh     = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nHello, world!\\n'\n"
	helloPerl   = "#!/usr/bin/perl\nprint \"Content-Type: text/plain\\r\\n\\r\\nHello, world!\\n\";\n"
	helloPython = "#!/usr/bin/python3\nimport sys\nsys.stdout.write(\"Content-Type: text/plain\\r\\n\\r\\nHello, world!\\n\")\n"
)

// echoSize is the body of the POST echo program.
const echoSize = 1 << 20

// countFile is the upload target of the memory measurement.
const countFile = "count.cgi"

// AllPrograms returns the benchmark's programs in table order. The echo body is
// deterministic so that a rerun sends the same bytes.
func AllPrograms() []Program {
	body := make([]byte, echoSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	return []Program{
		{Name: "c", File: "hello-c.cgi", Method: "GET", Want: []byte(hello)},
		{Name: "sh", File: "hello-sh.cgi", Method: "GET", Want: []byte(hello)},
		{Name: "perl", File: "hello-perl.cgi", Method: "GET", Want: []byte(hello)},
		{Name: "python", File: "hello-python.cgi", Method: "GET", Want: []byte(hello)},
		{Name: "sleep", File: "sleep100ms.cgi", Method: "GET", Want: []byte(hello)},
		{Name: "echo", File: "echo1m.cgi", Method: "POST", Body: body, Want: body},
	}
}

// Bed is the running test bed.
type Bed struct {
	Base     string // holds one directory of programs per backend
	Procs    int    // cgibridge --max-procs and fcgiwrap -c
	Bridge   *harness.Bridge
	Nginx    *harness.Nginx
	FW       *exec.Cmd // fcgiwrap's master (spawn-fcgi -n execs it in place)
	FWSocket string
	Client   *http.Client

	bridgeDir string
	nginxDir  string
	fwDone    chan struct{}
	warm      *warmBed   // the warm-mode part, nil without it
	zygote    *zygoteBed // the zygote part, nil without it
}

// BedConfig chooses how the bed is built.
type BedConfig struct {
	Procs int // concurrency limit of both servers
	// BridgeEnv are extra NAME=VALUE variables for cgibridge (e.g.
	// GOMAXPROCS=2, to compare runtime settings against the same fcgiwrap).
	BridgeEnv []string
	// Warm, when set, adds the warm-mode part: FastCGI pools, spawn-fcgi's
	// children and the memory bridge (see warm_bed.go).
	Warm *WarmPlan
	// Zygote, when set, adds the zygote part: the scripts served by a --warm
	// bridge, and the memory measurement's (see zygote.go).
	Zygote *ZygotePlan
}

// missingTool is the advice when a tool the benchmark needs is absent: the smoke
// test must fail, not skip, and say how to fix it.
func missingTool(name, pkg string) error {
	return fmt.Errorf("%s not found: apt-get install %s", name, pkg)
}

// requireTools checks that everything the bed runs is installed.
func requireTools() error {
	for _, t := range []struct{ path, pkg string }{
		{"/usr/sbin/fcgiwrap", "fcgiwrap"},
		{"/usr/bin/spawn-fcgi", "spawn-fcgi"},
		{"/usr/bin/perl", "perl"},
		{"/usr/bin/python3", "python3"},
		{"/bin/sh", "dash"},
	} {
		if _, err := os.Stat(t.path); err != nil {
			return missingTool(t.path, t.pkg)
		}
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		return missingTool("gcc", "gcc")
	}
	if _, err := harness.NginxBinary(); err != nil {
		return err
	}
	return nil
}

// SetUp builds the programs and starts cgibridge, fcgiwrap and nginx. On error
// everything already started is stopped again.
func SetUp(cfg BedConfig) (bed *Bed, err error) {
	if cfg.Procs <= 0 {
		cfg.Procs = 64
	}
	if err := requireTools(); err != nil {
		return nil, err
	}
	b := &Bed{Procs: cfg.Procs}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.Base, err = os.MkdirTemp("", "cgb-bench-"); err != nil {
		return nil, fmt.Errorf("make program dir: %w", err)
	}
	// Both servers run programs as nobody, which must reach them.
	if err := os.Chmod(b.Base, 0o755); err != nil {
		return nil, fmt.Errorf("make program dir: %w", err)
	}
	for _, be := range Backends {
		if err := writePrograms(filepath.Join(b.Base, be.Prefix)); err != nil {
			return nil, err
		}
	}

	bin, err := harness.Binary()
	if err != nil {
		return nil, err
	}
	if b.bridgeDir, err = os.MkdirTemp("", "cgb-"); err != nil {
		return nil, fmt.Errorf("make bridge dir: %w", err)
	}
	// Warn level: at info the bridge logs one access line per request, which
	// fcgiwrap does not, and that would be measured as the bridge's cost.
	b.Bridge, err = harness.LaunchBridge(bin, b.bridgeDir, []string{
		"--root", filepath.Join(b.Base, Cgibridge.Prefix),
		"--max-procs", strconv.Itoa(cfg.Procs),
		"--log-level", "warn",
	}, cfg.BridgeEnv...)
	if err != nil {
		return nil, err
	}

	if err := b.startFcgiwrap(); err != nil {
		return nil, err
	}
	if cfg.Warm != nil {
		if err := b.startWarm(*cfg.Warm, bin, cfg.BridgeEnv); err != nil {
			return nil, err
		}
	}
	if cfg.Zygote != nil {
		if err := b.startZygote(*cfg.Zygote, bin, cfg.BridgeEnv); err != nil {
			return nil, err
		}
	}

	nginxBin, err := harness.NginxBinary()
	if err != nil {
		return nil, err
	}
	if b.nginxDir, err = os.MkdirTemp("", "cgb-bench-nginx-"); err != nil {
		return nil, fmt.Errorf("make nginx dir: %w", err)
	}
	if b.Nginx, err = harness.LaunchNginx(nginxBin, b.nginxDir, b.serverBlock()); err != nil {
		return nil, err
	}

	b.Client = &http.Client{Transport: &http.Transport{
		// Enough idle connections that every closed-loop worker and every open-loop
		// request in flight keeps its keep-alive connection to nginx.
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	return b, nil
}

// serverBlock is nginx's server {} body: the same location for each backend,
// differing only in the socket.
func (b *Bed) serverBlock() string {
	var s strings.Builder
	fmt.Fprintf(&s, "root %s;\n", b.Base)
	for _, be := range Backends {
		sock := b.Bridge.Socket
		if be == Fcgiwrap {
			sock = b.FWSocket
		}
		fmt.Fprintf(&s, "location /%s/ {\n", be.Prefix)
		fmt.Fprintf(&s, "fastcgi_pass unix:%s;\n", sock)
		s.WriteString(harness.FastCGIParams())
		s.WriteString("fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n")
		s.WriteString("}\n")
	}
	if b.zygote != nil {
		s.WriteString(b.zygoteLocations()) // before the warm part, which closes the server block
	}
	if b.warm != nil {
		s.WriteString(b.warmLocations())
	}
	return s.String()
}

// writePrograms compiles the C programs and writes the scripts into dir.
func writePrograms(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	for name, src := range map[string]string{
		"hello-c.cgi": helloC, "sleep100ms.cgi": sleepC, "echo1m.cgi": echoC, countFile: countC,
	} {
		if err := compileC(dir, name, src); err != nil {
			return err
		}
	}
	for name, src := range map[string]string{
		"hello-sh.cgi": helloSh, "hello-perl.cgi": helloPerl, "hello-python.cgi": helloPython,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// compileC builds src into dir/name with gcc -O2, linking libs (e.g. -lfcgi).
func compileC(dir, name, src string, libs ...string) error {
	srcPath := filepath.Join(dir, name+".c")
	if err := os.WriteFile(srcPath, []byte(src), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", srcPath, err)
	}
	defer os.Remove(srcPath)
	out := filepath.Join(dir, name)
	if msg, err := exec.Command("gcc", append([]string{"-O2", "-o", out, srcPath}, libs...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("compile %s: %w\n%s", name, err, msg)
	}
	return os.Chmod(out, 0o755)
}

// startFcgiwrap runs fcgiwrap under spawn-fcgi on a unix socket with Procs
// preforked workers. As root it drops to nobody:nogroup, as cgibridge does, so
// both servers' programs start with the same credentials.
func (b *Bed) startFcgiwrap() error {
	dir, err := os.MkdirTemp("", "cgb-fw-")
	if err != nil {
		return fmt.Errorf("make fcgiwrap dir: %w", err)
	}
	b.FWSocket = filepath.Join(dir, "fcgiwrap.sock")
	args := []string{"-n", "-s", b.FWSocket, "-M", "0666"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody", "-g", "nogroup")
	}
	args = append(args, "--", "/usr/sbin/fcgiwrap", "-c", strconv.Itoa(b.Procs))
	cmd := exec.Command("/usr/bin/spawn-fcgi", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start fcgiwrap: %w", err)
	}
	b.FW = cmd
	b.fwDone = make(chan struct{})
	go func() { _ = cmd.Wait(); close(b.fwDone) }()
	deadline := time.Now().Add(harness.StartTimeout)
	for {
		if c, err := net.Dial("unix", b.FWSocket); err == nil {
			c.Close()
			break
		}
		select {
		case <-b.fwDone:
			return fmt.Errorf("fcgiwrap exited before listening:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fcgiwrap socket %s not accepting after %v", b.FWSocket, harness.StartTimeout)
		}
	}
	// The workers are forked after the socket exists; wait until all are there so
	// the memory baseline and the first runs see the full pool.
	for time.Now().Before(deadline) {
		if pids, _ := b.FcgiwrapPIDs(); len(pids) >= b.Procs+1 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("fcgiwrap did not fork %d workers within %v", b.Procs, harness.StartTimeout)
}

// FcgiwrapPIDs returns fcgiwrap's master and its worker processes, leaving out
// programs the workers are running at the moment.
func (b *Bed) FcgiwrapPIDs() ([]int, error) {
	kids, err := harness.Children(b.FW.Process.Pid)
	if err != nil {
		return nil, err
	}
	pids := []int{b.FW.Process.Pid}
	for _, p := range kids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		if err == nil && strings.TrimSpace(string(comm)) == "fcgiwrap" {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// URL returns the address of program file on backend be.
func (b *Bed) URL(be Backend, file string) string {
	return b.Nginx.URL + "/" + be.Prefix + "/" + file
}

// Close stops nginx, fcgiwrap and cgibridge and removes their directories. It
// reports the first failure but always tries everything.
func (b *Bed) Close() error {
	var errs []error
	if b.Client != nil {
		// nginx's graceful stop waits for open client connections.
		b.Client.CloseIdleConnections()
	}
	if b.Nginx != nil {
		errs = append(errs, b.Nginx.Stop())
	}
	if b.FW != nil && b.FW.Process != nil {
		// fcgiwrap's master does not take its workers down on TERM: stop the group.
		_ = syscall.Kill(-b.FW.Process.Pid, syscall.SIGTERM)
		select {
		case <-b.fwDone:
		case <-time.After(harness.StopTimeout):
			_ = syscall.Kill(-b.FW.Process.Pid, syscall.SIGKILL)
			<-b.fwDone
		}
		_ = syscall.Kill(-b.FW.Process.Pid, syscall.SIGKILL) // workers outliving the master
		_ = os.RemoveAll(filepath.Dir(b.FWSocket))
	}
	errs = append(errs, b.closeWarm()...)
	errs = append(errs, b.closeZygote()...)
	if b.Bridge != nil {
		if err := b.Bridge.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("cgibridge did not exit cleanly: %w\n%s", err, b.Bridge.Logs.String()))
		}
	}
	for _, d := range []string{b.bridgeDir, b.nginxDir, b.Base} {
		if d != "" {
			_ = os.RemoveAll(d)
		}
	}
	return errors.Join(errs...)
}

// Do sends one request for p to backend be and checks the status and the whole body.
func (b *Bed) Do(ctx context.Context, be Backend, p *Program) error {
	return b.do(ctx, b.URL(be, p.File), p)
}

func (b *Bed) do(ctx context.Context, url string, p *Program) error {
	var body io.Reader
	if p.Body != nil {
		body = bytes.NewReader(p.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.Method, url, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read %s response: %w", p.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d: %.200q", p.Name, resp.StatusCode, got)
	}
	if !bytes.Equal(got, p.Want) {
		return fmt.Errorf("%s: body of %d bytes differs from the %d expected (%.60q)", p.Name, len(got), len(p.Want), got)
	}
	return nil
}
