// This file tests Bridge against a stand-in for cgibridge: the test binary itself,
// re-executed in a mode chosen by an environment variable.
package harness

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeBridgeEnv selects the stand-in's behaviour: "serve" listens and exits 0 on
// SIGTERM, "crash" exits 3 at once, "dirty" listens and exits 1 on SIGTERM.
const fakeBridgeEnv = "HARNESS_FAKE_BRIDGE"

// noRaceExitSleep stops the race runtime in the stand-in from pausing a second
// before every clean exit.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeBridgeEnv); mode != "" {
		os.Exit(fakeBridge(mode, os.Args[1:]))
	}
	code := m.Run()
	if err := RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// fakeBridge imitates the parts of `cgibridge serve` the harness relies on.
func fakeBridge(mode string, args []string) int {
	if mode == "crash" {
		fmt.Fprintln(os.Stderr, "boom: fake bridge refuses to start")
		return 3
	}
	if len(args) < 3 || args[0] != "serve" || args[1] != "--listen" || !strings.HasPrefix(args[2], "unix:") {
		fmt.Fprintf(os.Stderr, "fake bridge: unexpected args %q\n", args)
		return 2
	}
	env := os.Environ()
	slices.Sort(env)
	fmt.Printf("args=%q\n", args)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		fmt.Printf("env %s\n", name)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	l, err := net.Listen("unix", strings.TrimPrefix(args[2], "unix:"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Fprintln(os.Stderr, "fake bridge listening")
	<-sigs
	_ = l.Close()
	fmt.Fprintln(os.Stderr, "fake bridge got SIGTERM")
	if mode == "dirty" {
		return 1
	}
	return 0
}

func TestLaunchBridgeWaitsForSocketPassesArgsAndStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	b, err := LaunchBridge(os.Args[0], dir, []string{"--root", "/srv/cgi"}, fakeBridgeEnv+"=serve", noRaceExitSleep, "EXTRA=1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", b.Socket)
	if err != nil {
		t.Fatalf("socket not accepting after launch returned: %v", err)
	}
	c.Close()
	if err := b.Logs.WaitFor("fake bridge listening", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	wantArgs := fmt.Sprintf("args=%q", []string{"serve", "--listen", "unix:" + b.Socket, "--root", "/srv/cgi"})
	if !strings.Contains(b.Logs.String(), wantArgs) {
		t.Errorf("logs lack %s:\n%s", wantArgs, b.Logs)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("Stop of a bridge exiting 0 on SIGTERM = %v, want nil", err)
	}
	if !strings.Contains(b.Logs.String(), "got SIGTERM") {
		t.Errorf("Stop did not deliver SIGTERM; logs:\n%s", b.Logs)
	}
	if err := WaitGone(b.PID(), time.Second); err != nil {
		t.Error(err)
	}
}

func TestLaunchBridgeGivesOnlyPathHomeAndExtraEnv(t *testing.T) {
	t.Setenv("HARNESS_MUST_NOT_LEAK", "1")
	b, err := LaunchBridge(os.Args[0], t.TempDir(), nil, fakeBridgeEnv+"=serve", noRaceExitSleep, "EXTRA=1")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	if err := b.Logs.WaitFor("fake bridge listening", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(b.Logs.String(), "\n") {
		if name, ok := strings.CutPrefix(line, "env "); ok {
			names = append(names, name)
		}
	}
	want := []string{"EXTRA", "GORACE", fakeBridgeEnv, "HOME", "PATH"}
	if !slices.Equal(names, want) {
		t.Errorf("bridge environment names = %q, want %q", names, want)
	}
}

func TestLaunchBridgeFailsFastWithLogsWhenProcessExits(t *testing.T) {
	start := time.Now()
	_, err := LaunchBridge(os.Args[0], t.TempDir(), nil, fakeBridgeEnv+"=crash")
	if err == nil {
		t.Fatal("LaunchBridge of a process that exits at once returned no error")
	}
	if !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exited before listening") {
		t.Errorf("error does not carry the process's output and cause: %v", err)
	}
	if took := time.Since(start); took > StartTimeout/2 {
		t.Errorf("LaunchBridge took %v to notice the exit, want well under %v", took, StartTimeout)
	}
}

func TestLaunchBridgeRefusesSocketPathTooLongForUnix(t *testing.T) {
	dir := "/tmp/" + strings.Repeat("d", 100)
	_, err := LaunchBridge(os.Args[0], dir, nil, fakeBridgeEnv+"=serve")
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("LaunchBridge with a %d-byte socket path: err = %v, want 'too long'", len(dir)+15, err)
	}
}

// recordingTB captures what StartBridge reports instead of failing the real test.
type recordingTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recordingTB) Helper()                      {}
func (r *recordingTB) Cleanup(f func())             { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *recordingTB) Logf(string, ...any)          {}
func (r *recordingTB) Failed() bool                 { return len(r.errs) > 0 }
func (r *recordingTB) Fatal(args ...any)            { r.TB.Fatal(args...) }
func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestStartBridgeCleanupChecksExitOnSIGTERM(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		stopped bool // the test stops the bridge itself before cleanup
		wantErr string
	}{
		{name: "clean exit passes", mode: "serve"},
		{name: "non-zero exit fails the test", mode: "dirty", wantErr: "did not exit cleanly"},
		{name: "exit already seen by the test is not reported again", mode: "dirty", stopped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			b := startBridge(rec, os.Args[0], nil, fakeBridgeEnv+"="+tt.mode, noRaceExitSleep)
			if tt.stopped {
				_ = b.Stop()
			}
			rec.runCleanups()
			got := strings.Join(rec.errs, "\n")
			if tt.wantErr == "" && got != "" {
				t.Errorf("cleanup reported %q, want nothing", got)
			}
			if tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Errorf("cleanup reported %q, want %q", got, tt.wantErr)
			}
			if _, err := os.Stat(b.Dir); !os.IsNotExist(err) {
				t.Errorf("cleanup left %s behind (stat err %v)", b.Dir, err)
			}
		})
	}
}
