// This file holds the background start and where the log goes.
//
// Go cannot fork without exec, so detaching is a re-exec: the command
// starts itself again with the same arguments in a new session, its stdin
// on /dev/null and its stdout/stderr on --log-file or /dev/null, and a pipe
// on fd 3 named by an environment variable. The copy in the background is
// the supervisor. It reports on the pipe when its children are up (or why
// it could not start them), and only then does the command in the
// foreground return: 0, or 1 with the supervisor's error. The pid file, if
// any, names the supervisor.
//
// The detached supervisor logs to --log-file when given, else to syslog
// (facility daemon, tag cgibridge-spawn; journald reads it on systemd
// machines), else, with no syslog socket, nowhere; the foreground command
// says which. spawn-fcgi sent its children's output to /dev/null.

package spawn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// envReadyFD names the descriptor of the start pipe in the detached
// supervisor. It is no flag (so no CGIBRIDGE_SPAWN_ variable kong would
// read) and never reaches the children.
const envReadyFD = "_CGIBRIDGE_SPAWN_READY_FD"

// detachTimeout bounds the wait for the supervisor in the background to
// report its children up.
const detachTimeout = 30 * time.Second

// detach starts the supervisor in the background and waits for its report.
func detach(p *plan) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable to start in the background: %w", err)
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()
	out := devNull
	if p.cfg.LogFile != "" {
		f, err := openLogFile(p.cfg.LogFile)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envReadyFD+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, out, out
	cmd.ExtraFiles = []*os.File{w}
	// A session of its own: no controlling terminal, no ^C from it. No
	// parent-death signal: this process is about to exit.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start the supervisor in the background: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	report := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		report <- strings.TrimSuffix(line, "\n")
	}()
	select {
	case line := <-report:
		kind, rest, _ := strings.Cut(line, "\t")
		switch kind {
		case "ready":
			fmt.Printf("cgibridge spawn: %s on %s, children: %d, supervisor pid: %d, log: %s\n",
				p.path, p.socketDesc(), p.cfg.Children, cmd.Process.Pid, rest)
			return nil
		case "error":
			<-exited
			return errors.New(rest)
		}
		err := <-exited
		return fmt.Errorf("the supervisor exited before its children were up (%v); see %s", err, logPlace(p))
	case <-time.After(detachTimeout):
		cmd.Process.Signal(syscall.SIGTERM)
		return fmt.Errorf("the supervisor did not report its children up within %v; stopped it (pid %d); see %s", detachTimeout, cmd.Process.Pid, logPlace(p))
	}
}

func logPlace(p *plan) string {
	if p.cfg.LogFile != "" {
		return p.cfg.LogFile
	}
	return "syslog"
}

func (p *plan) socketDesc() string {
	if p.unixPath != "" {
		return p.unixPath
	}
	return p.tcpAddr
}

// openLogFile opens --log-file for appending (logrotate's copytruncate
// works with that), creating it readable by its owner and group.
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	return f, nil
}

// readyPipe is the detached supervisor's end of the start pipe; nil in the
// foreground, where its methods do nothing.
type readyPipe struct {
	f       *os.File
	logDesc string
}

// takeReadyPipe finds the start pipe when this process is the detached
// supervisor, and removes its variable from the environment.
func takeReadyPipe() (*readyPipe, bool, error) {
	v, ok := os.LookupEnv(envReadyFD)
	if !ok {
		return nil, false, nil
	}
	os.Unsetenv(envReadyFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, false, fmt.Errorf("%s=%q: not a descriptor", envReadyFD, v)
	}
	syscall.CloseOnExec(fd)
	return &readyPipe{f: os.NewFile(uintptr(fd), "start pipe")}, true, nil
}

func (r *readyPipe) send(line string) {
	if r == nil || r.f == nil {
		return
	}
	io.WriteString(r.f, strings.ReplaceAll(line, "\n", " ")+"\n")
	r.f.Close()
	r.f = nil
}

// ok reports the children up.
func (r *readyPipe) ok() { r.send("ready\t" + r.describeLog()) }

// fail reports why they could not be started; nothing once ok was sent.
func (r *readyPipe) fail(err error) { r.send("error\t" + err.Error()) }

func (r *readyPipe) describeLog() string {
	if r == nil {
		return ""
	}
	return r.logDesc
}

// newLogger makes the supervisor's logger: to --log-file (in the
// background the file is already its stderr), to stderr in the
// foreground, and to syslog in the background without --log-file.
func newLogger(p *plan, ready *readyPipe, detached bool) (hclog.Logger, func(), error) {
	c := p.cfg
	opts := &hclog.LoggerOptions{
		Name:       "spawn",
		Level:      hclog.LevelFromString(c.LogLevel),
		Output:     os.Stderr,
		JSONFormat: c.LogFormat == "json",
		TimeFormat: "2006-01-02T15:04:05.000Z0700",
	}
	if opts.Level == hclog.NoLevel {
		opts.Level = hclog.Info
	}
	closeFn := func() {}
	desc := c.LogFile
	switch {
	case c.LogFile != "" && !detached:
		f, err := openLogFile(c.LogFile)
		if err != nil {
			return nil, nil, err
		}
		opts.Output, closeFn = f, func() { f.Close() }
	case c.LogFile == "" && detached:
		w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "cgibridge-spawn")
		if err != nil {
			desc = fmt.Sprintf("none (no syslog: %v; use --log-file)", err)
			opts.Output = io.Discard
			break
		}
		desc = "syslog"
		opts.Output, opts.DisableTime, closeFn = syslogWriter{w}, true, func() { w.Close() }
	}
	if ready != nil {
		ready.logDesc = desc
	}
	return hclog.New(opts), closeFn, nil
}

// syslogWriter sends each log line to syslog at its level's priority.
type syslogWriter struct{ w *syslog.Writer }

func (s syslogWriter) Write(p []byte) (int, error) { return s.LevelWrite(hclog.Info, p) }

// LevelWrite implements hclog.LevelWriter.
func (s syslogWriter) LevelWrite(level hclog.Level, p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	var err error
	switch {
	case level >= hclog.Error:
		err = s.w.Err(msg)
	case level == hclog.Warn:
		err = s.w.Warning(msg)
	case level == hclog.Info:
		err = s.w.Info(msg)
	default:
		err = s.w.Debug(msg)
	}
	return len(p), err
}
