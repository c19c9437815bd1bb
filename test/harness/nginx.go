// This file holds Nginx: a throwaway nginx on a loopback port with a config written
// by the test, plus the standard FastCGI parameter set to put in it.
package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Nginx is a running nginx with a config of the test's own.
type Nginx struct {
	URL string // http://127.0.0.1:PORT
	Dir string // holds nginx.conf, error.log, access.log, nginx.pid and temp dirs
	Cmd *exec.Cmd

	done    chan struct{} // closed once Cmd.Wait has returned
	waitErr error
}

// nginxInstallHint is the whole of the advice when nginx is missing: end-to-end tests
// must fail, not skip, so the message says how to fix it.
const nginxInstallHint = "nginx not installed: apt-get install nginx-light"

// NginxBinary returns the path of nginx: /usr/sbin/nginx, else nginx on PATH.
func NginxBinary() (string, error) {
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return "/usr/sbin/nginx", nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	return "", errors.New(nginxInstallHint)
}

// StartNginx writes DIR/nginx.conf around serverBlock (the inside of a `server {}`:
// locations, root, fastcgi_pass...), starts nginx on a free loopback port and waits
// until it serves. On cleanup it sends SIGQUIT (graceful), then SIGKILL to the whole
// process group after StopTimeout. If the test failed, error.log is logged.
func StartNginx(tb testing.TB, serverBlock string) *Nginx {
	tb.Helper()
	return StartNginxHTTP(tb, "", serverBlock)
}

// StartNginxHTTP is StartNginx with httpBlock written inside `http {}`, before
// the server: what nginx takes only at http level, such as `upstream {}`
// blocks of several backends, `map` or `limit_req_zone`.
func StartNginxHTTP(tb testing.TB, httpBlock, serverBlock string) *Nginx {
	tb.Helper()
	bin, err := NginxBinary()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	n, err := LaunchNginxHTTP(bin, dir, httpBlock, serverBlock)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Stop(); err != nil {
			tb.Errorf("stop nginx: %v", err)
		}
		if tb.Failed() {
			tb.Logf("nginx error.log (%s):\n%s", dir, n.ErrorLog())
		}
	})
	return n
}

// LaunchNginx is StartNginx without a testing.TB: it runs bin with its files in dir,
// which the caller owns. If the chosen port is taken before nginx binds it, it tries
// again with another port, up to 3 more times. The caller must call Stop.
func LaunchNginx(bin, dir, serverBlock string) (*Nginx, error) {
	return LaunchNginxHTTP(bin, dir, "", serverBlock)
}

// LaunchNginxHTTP is LaunchNginx with httpBlock at http level (see
// StartNginxHTTP).
func LaunchNginxHTTP(bin, dir, httpBlock, serverBlock string) (*Nginx, error) {
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, fmt.Errorf("launch nginx: %w", err)
		}
		n, err := launchNginxOnce(bin, dir, httpBlock, serverBlock, port)
		if err == nil {
			return n, nil
		}
		lastErr = err
		if !strings.Contains(ReadFile(filepath.Join(dir, "error.log")), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

func launchNginxOnce(bin, dir, httpBlock, serverBlock string, port int) (*Nginx, error) {
	_, mimeErr := os.Stat("/etc/nginx/mime.types")
	conf := nginxConfHTTP(dir, port, httpBlock, serverBlock, os.Geteuid() == 0, mimeErr == nil)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("launch nginx: %w", err)
	}
	// A fresh error.log per attempt, so the bind check above reads this attempt's.
	_ = os.Remove(filepath.Join(dir, "error.log"))
	pidPath := filepath.Join(dir, "nginx.pid")
	_ = os.Remove(pidPath)

	n := &Nginx{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		Dir:  dir,
		done: make(chan struct{}),
	}
	// -e sends the messages logged before the config is read to dir as well, instead
	// of to the compiled-in /var/log/nginx/error.log.
	n.Cmd = exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	n.Cmd.Dir = dir
	n.Cmd.Env = minimalEnv(dir)
	out := &SafeBuffer{}
	n.Cmd.Stdout = out
	n.Cmd.Stderr = out
	n.Cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true, // so a SIGKILL can take the workers along with the master
		Pdeathsig: syscall.SIGKILL,
	}
	if err := closeInheritedOnExec(); err != nil {
		return nil, fmt.Errorf("launch nginx: %w", err)
	}
	if err := n.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("launch nginx: %w", err)
	}
	go func() {
		n.waitErr = n.Cmd.Wait()
		close(n.done)
	}()
	if err := n.waitReady(pidPath, port); err != nil {
		_ = n.Stop()
		return nil, fmt.Errorf("launch nginx on port %d: %w\noutput:\n%s\nerror.log:\n%s",
			port, err, out.String(), n.ErrorLog())
	}
	return n, nil
}

// waitReady waits until nginx has written its pid file and the port accepts. nginx
// writes the pid file only after binding, so a stranger that grabbed the port in the
// meantime is not mistaken for nginx.
func (n *Nginx) waitReady(pidPath string, port int) error {
	deadline := time.Now().Add(StartTimeout)
	want := strconv.Itoa(n.Cmd.Process.Pid)
	for {
		if strings.TrimSpace(ReadFile(pidPath)) == want {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				_ = c.Close()
				return nil
			}
		}
		select {
		case <-n.done:
			return fmt.Errorf("exited before serving: %v", n.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %v", StartTimeout)
		}
	}
}

// nginxConf renders the whole nginx.conf around serverBlock.
func nginxConf(dir string, port int, serverBlock string, asRoot, haveMimeTypes bool) string {
	return nginxConfHTTP(dir, port, "", serverBlock, asRoot, haveMimeTypes)
}

// nginxConfHTTP renders the whole nginx.conf around httpBlock (at http level,
// before the server) and serverBlock.
func nginxConfHTTP(dir string, port int, httpBlock, serverBlock string, asRoot, haveMimeTypes bool) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Written by cgibridge's test harness for one test; nginx runs with -p %s.\n", dir)
	p("daemon off;\nmaster_process on;\nworker_processes 1;\n")
	if asRoot {
		// As root nginx would switch its worker to nobody, which cannot reach the
		// test's temp dirs and sockets.
		p("user root;\n")
	}
	p("pid %s;\n", filepath.Join(dir, "nginx.pid"))
	p("error_log %s info;\n", filepath.Join(dir, "error.log"))
	p("events {\n}\n")
	p("http {\n")
	if haveMimeTypes {
		p("    include /etc/nginx/mime.types;\n")
	}
	p("    default_type application/octet-stream;\n")
	p("    access_log %s;\n", filepath.Join(dir, "access.log"))
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		p("    %s_temp_path %s;\n", t, filepath.Join(dir, t+"_temp"))
	}
	p("    client_max_body_size 128m;\n")
	if httpBlock != "" {
		p("%s\n", httpBlock)
	}
	p("    server {\n        listen 127.0.0.1:%d;\n", port)
	p("%s\n", serverBlock)
	p("    }\n}\n")
	return b.String()
}

// FreePort asks the kernel for an unused loopback port. It is free when this
// returns, not necessarily when a server binds it: callers retry that race.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ReadFile returns a file's contents, or "" if it cannot be read: for logs
// printed when a test fails.
func ReadFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

// ErrorLog returns the contents of nginx's error.log.
func (n *Nginx) ErrorLog() string { return ReadFile(filepath.Join(n.Dir, "error.log")) }

// AccessLog returns the contents of nginx's access.log.
func (n *Nginx) AccessLog() string { return ReadFile(filepath.Join(n.Dir, "access.log")) }

// PID returns the nginx master's process id.
func (n *Nginx) PID() int { return n.Cmd.Process.Pid }

// Stop sends SIGQUIT (graceful shutdown), waits, and after StopTimeout sends SIGKILL
// to the process group. It returns an error only if nginx had to be killed or exited
// with a failure of its own; calling it again is harmless.
func (n *Nginx) Stop() error {
	select {
	case <-n.done:
		return n.exitError()
	default:
	}
	_ = n.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
		return n.exitError()
	case <-time.After(StopTimeout):
		_ = syscall.Kill(-n.PID(), syscall.SIGKILL)
		<-n.done
		return fmt.Errorf("nginx (pid %d) ignored SIGQUIT for %v and was killed", n.PID(), StopTimeout)
	}
}

// exitError reports how nginx exited, ignoring the SIGQUIT the harness itself sent.
func (n *Nginx) exitError() error {
	var ee *exec.ExitError
	if errors.As(n.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGQUIT {
			return nil
		}
	}
	if n.waitErr != nil {
		return fmt.Errorf("nginx exited: %w", n.waitErr)
	}
	return nil
}
