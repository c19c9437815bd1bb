// This file holds the tests of the command line itself: version, help, refusal of
// bad options, and the --http development front end run with no web server.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestCLIVersion(t *testing.T) {
	out, err := exec.Command(harness.MustBinary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("cgibridge version: %v\n%s", err, out)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 || fields[0] != "cgibridge" || fields[1] == "" || !strings.Contains(string(out), "go1.") {
		t.Errorf("cgibridge version printed %q, want \"cgibridge <version> (..., <go version>)\"", out)
	}
	flag, err := exec.Command(harness.MustBinary(t), "--version").CombinedOutput()
	if err != nil || string(flag) != string(out) {
		t.Errorf("cgibridge --version: %q, %v; want what version prints", flag, err)
	}
}

func TestCLIServeHelpListsMainFlags(t *testing.T) {
	out, err := exec.Command(harness.MustBinary(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("cgibridge serve --help: %v\n%s", err, out)
	}
	for _, flag := range []string{"--listen", "--root", "--timeout", "--max-procs", "--interpreter", "--http"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("serve --help does not mention %s", flag)
		}
	}
}

func TestCLIInvalidOptionExitsNamingIt(t *testing.T) {
	bin := harness.MustBinary(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		want string // the option the message must name
	}{
		{"MaxProcsZero", []string{"--max-procs", "0"}, "max-procs"},
		{"SocketModeNotOctal", []string{"--socket-mode", "999"}, "socket-mode"},
		{"UnknownFlag", []string{"--no-such-flag"}, "no-such-flag"},
		{"TimeoutNotADuration", []string{"--timeout", "soon"}, "timeout"},
		{"BadInterpreter", []string{"--interpreter", "py"}, "interpreter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sock := filepath.Join(dir, c.name+".sock")
			args := append([]string{"serve", "--listen", "unix:" + sock, "--root", dir}, c.args...)
			// A bridge that wrongly accepts the option would serve forever.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = []string{harness.SafePath}
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("serve %v was still running after 5s: the option was accepted\n%s", c.args, out)
			}
			if err == nil {
				t.Fatalf("serve %v exited 0, want non-zero\n%s", c.args, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("serve %v: message does not name %q:\n%s", c.args, c.want, out)
			}
		})
	}
}

func TestHTTPFrontEndServesDirectory(t *testing.T) {
	tr := newTree(t)
	bin := harness.MustBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cmd := exec.Command(bin, "serve", "--http", addr, "--root", tr.Root)
	cmd.Env = []string{harness.SafePath}
	logs := &harness.SafeBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("cgibridge --http did not exit cleanly on SIGTERM: %v", err)
			}
		case <-time.After(harness.StopTimeout):
			_ = cmd.Process.Kill()
			t.Errorf("cgibridge --http ignored SIGTERM")
		}
		if t.Failed() {
			t.Logf("cgibridge output:\n%s", logs.String())
		}
	})
	waitDial(t, addr, exited)
	base := "http://" + addr

	t.Run("Index", func(t *testing.T) {
		wantStatusBody(t, get(t, base+"/"), 200, "hello.sh", "query.py")
	})
	t.Run("ShellHello", func(t *testing.T) {
		wantStatusBody(t, get(t, base+"/hello.sh?q=1"), 200, "Hello from hello.sh", "QUERY_STRING=q=1")
	})
	t.Run("PythonPOST", func(t *testing.T) {
		r := wantStatusBody(t, post(t, base+"/query.py?a=1", "application/x-www-form-urlencoded", "b=2"), 200)
		var got struct {
			Method string              `json:"method"`
			Query  map[string][]string `json:"query"`
			Form   map[string][]string `json:"form"`
		}
		if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
			t.Fatalf("query.py output is not JSON: %v\n%s", err, r.Body)
		}
		if got.Method != "POST" || got.Query["a"][0] != "1" || len(got.Form["b"]) != 1 || got.Form["b"][0] != "2" {
			t.Errorf("query.py saw %+v, want POST a=1 b=2", got)
		}
	})
}

// waitDial waits until addr accepts a TCP connection, failing if the process exits
// first or it takes longer than harness.StartTimeout.
func waitDial(t *testing.T, addr string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(harness.StartTimeout)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("cgibridge exited before serving %s: %v", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s after %v", addr, harness.StartTimeout)
		}
	}
}

// TestUsageErrorsAreOneLineAndExit2: a command line or config file that
// cannot be used prints one line and a hint, not the whole usage, and
// exits 2; a failure at run time exits 1; nothing says "started" first.
func TestUsageErrorsAreOneLineAndExit2(t *testing.T) {
	dir := t.TempDir()
	badType := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badType, []byte(`{"root": 5}`), 0o644); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.json")
	if err := os.WriteFile(unknown, []byte(`{"roots": "/srv"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"serve", "--no-such-flag"}, 2, "unknown flag --no-such-flag"},
		{"bad value", []string{"serve", "--timeout", "soon", "--root", dir}, 2, "--timeout"},
		{"bad socket mode", []string{"serve", "--socket-mode", "999", "--root", dir, "--http", "127.0.0.1:1"}, 2, "--socket-mode"},
		{"missing root", []string{"serve", "--root", filepath.Join(dir, "nope"), "--http", "127.0.0.1:1"}, 2, "--root"},
		{"config of the wrong type", []string{"--config", badType, "serve"}, 2, `"root": want a string`},
		{"config with an unknown key", []string{"--config", unknown, "serve"}, 2, `unknown option "roots"`},
		{"nothing to listen on", []string{"serve", "--root", dir, "--allow-root"}, 1, "nothing to listen on"},
		{"socket in a missing directory", []string{"serve", "--root", dir, "--allow-root", "--listen", "unix:" + filepath.Join(dir, "no", "such", "s.sock")}, 1, "--listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(harness.MustBinary(t), tc.args...)
			cmd.Env = []string{harness.SafePath}
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			var errLines []string
			for _, l := range lines {
				if !strings.Contains(l, "[INFO]") {
					errLines = append(errLines, l)
				}
			}
			if code != tc.code || !strings.Contains(string(out), tc.want) || len(errLines) > 2 {
				t.Errorf("exit %d, output:\n%s\nwant exit %d, at most two lines, mentioning %q", code, out, tc.code, tc.want)
			}
			if strings.Contains(string(out), "cgibridge started") {
				t.Errorf("logged as started before failing:\n%s", out)
			}
		})
	}
}
