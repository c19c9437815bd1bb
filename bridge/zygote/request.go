// This file holds one request on a helper: the descriptors and the payload
// sent, the child's pid received, and the child supervised as exec mode
// supervises its programs.

package zygote

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"golang.org/x/sys/unix"
)

// startTimeout bounds how long a helper may take to answer P: a spare that
// is not there, or a helper that hangs, must not hold the request up — it
// goes to exec mode.
const startTimeout = 5 * time.Second

// serve runs job on one of h's children.
func (h *helper) serve(ctx context.Context, job *runner.Job) runner.Result {
	stdin, closeStdin, err := stdinFile(job)
	if err != nil {
		return runner.Result{Err: err}
	}
	defer closeStdin()
	pipes, err := process.NewPipes()
	if err != nil {
		return runner.Result{Err: fmt.Errorf("create output pipes: %w", err)}
	}
	pid, err := h.send(ctx, job, stdin, pipes)
	// The child has its copies (or none was made): the bridge's go.
	pipes.CloseWrite()
	if err != nil {
		pipes.Close()
		if ctx.Err() != nil {
			return runner.Result{Cause: context.Cause(ctx)}
		}
		h.log.Warn("helper did not take the request; it runs in exec mode", "error", err)
		return runner.Result{Err: err}
	}
	if job.OnStart != nil {
		job.OnStart(pid)
	}
	return process.Supervise(ctx, &child{pid: pid, exit: h.await(pid), helper: h.exited}, pipes, job.Stdout, job.Stderr, process.Grace{Kill: h.r.cfg.Grace})
}

// child is a request child of a helper, as process.Supervise sees it.
type child struct {
	pid    int
	exit   chan runner.Exit
	helper chan struct{} // closed when the helper is gone
}

func (c *child) PID() int { return c.pid }

// Wait waits for the helper to report the child's exit.
func (c *child) Wait() (runner.Exit, error) {
	return <-c.exit, nil
}

// send connects to the helper, passes the descriptors and the payload, and
// returns the child's pid from its P line.
func (h *helper) send(ctx context.Context, job *runner.Job, stdin *os.File, pipes *process.Pipes) (int, error) {
	d := net.Dialer{}
	dctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	nc, err := d.DialContext(dctx, "unix", h.sock)
	if err != nil {
		return 0, fmt.Errorf("connect to the helper: %w", err)
	}
	defer nc.Close()
	uc := nc.(*net.UnixConn)
	if dl, ok := dctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(dctx, func() { uc.SetDeadline(time.Now()) })
	defer stop()
	payload := encodeRequest(job)
	if len(payload)-8 > maxPayload {
		// The helper refuses such a payload too; exec mode serves it.
		return 0, fmt.Errorf("request too large for the helper (%d bytes of environment and argv, at most %d)", len(payload)-8, maxPayload)
	}
	oob := unix.UnixRights(int(stdin.Fd()), int(pipes.OutWrite.Fd()), int(pipes.ErrWrite.Fd()))
	if _, _, err := uc.WriteMsgUnix(payload[:8], oob, nil); err != nil {
		return 0, fmt.Errorf("send to the helper: %w", err)
	}
	if _, err := uc.Write(payload[8:]); err != nil {
		return 0, fmt.Errorf("send to the helper: %w", err)
	}
	// One line: P<pid>, or E and the reason (bounded).
	var line [1024]byte
	n := 0
	for n < len(line) && !bytes.Contains(line[:n], []byte("\n")) {
		m, err := uc.Read(line[n:])
		n += m
		if err != nil {
			if n == 0 {
				return 0, fmt.Errorf("no answer from the helper: %w", err)
			}
			break
		}
	}
	reply, _, _ := bytes.Cut(line[:n], []byte("\n"))
	switch {
	case len(reply) > 1 && reply[0] == 'P':
		pid, err := strconv.Atoi(string(reply[1:]))
		if err != nil || pid <= 1 {
			return 0, fmt.Errorf("bad answer from the helper: %q", reply)
		}
		return pid, nil
	case len(reply) > 0 && reply[0] == 'E':
		return 0, fmt.Errorf("the helper refused it: %s", reply[1:])
	}
	return 0, fmt.Errorf("bad answer from the helper: %q", reply)
}

// encodeRequest builds the payload: magic, length, then NUL-terminated
// SCRIPT, CWD, ARGC, ARGV..., NAME=VALUE....
func encodeRequest(job *runner.Job) []byte {
	// The script's argv as a fresh interpreter would see it: exec mode
	// runs the checked path (job.Script), with the interpreter before it.
	argv := []string{job.Script}
	var b bytes.Buffer
	b.WriteString(protoMagic)
	b.Write([]byte{0, 0, 0, 0})
	field := func(s string) {
		b.WriteString(s)
		b.WriteByte(0)
	}
	field(job.Script)
	field(job.Dir)
	field(strconv.Itoa(len(argv)))
	for _, a := range argv {
		field(a)
	}
	for _, kv := range job.Env {
		field(kv)
	}
	p := b.Bytes()
	binary.BigEndian.PutUint32(p[4:8], uint32(len(p)-8))
	return p
}

// devNullFile is the stdin of requests with no body.
var devNullFile, devNullErr = os.Open(os.DevNull)

// stdinFile returns a descriptor to pass as the script's stdin: the spooled
// body's file, a pipe fed from the in-memory body, or /dev/null.
func stdinFile(job *runner.Job) (*os.File, func(), error) {
	noop := func() {}
	if job.Body == nil || job.Body.Size() == 0 {
		if devNullErr != nil {
			return nil, noop, devNullErr
		}
		return devNullFile, noop, nil
	}
	in, err := job.Body.Stdin()
	if err != nil {
		return nil, noop, fmt.Errorf("read the spooled body: %w", err)
	}
	if f, ok := in.(*os.File); ok {
		return f, noop, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, noop, err
	}
	go func() {
		// Ends when the body is written or the script's end closes the
		// pipe (EPIPE).
		io.Copy(w, in)
		w.Close()
	}()
	return r, func() { r.Close() }, nil
}
