// This file holds one FastCGI request as a handler sees it: its params, its
// body spool, its output streams, and the context that ends when the request
// is aborted, its connection is lost, or it is refused mid-way.

package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/cgienv"
	"github.com/hashicorp/go-hclog"
)

// Causes of a request's context ending, as context.Cause reports them.
var (
	ErrAborted    = errors.New("request aborted by the web server (ABORT_REQUEST)")
	ErrConnClosed = errors.New("connection to the web server lost")
	ErrShutdown   = errors.New("bridge shutting down")
)

// Handler serves FastCGI requests. ServeFCGI writes the CGI response — a
// header block and the body — to r.Stdout and returns the application status
// for END_REQUEST. It must return soon after r.Context() is done.
type Handler interface {
	ServeFCGI(r *Request) (appStatus uint32)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(r *Request) uint32

// ServeFCGI calls f(r).
func (f HandlerFunc) ServeFCGI(r *Request) uint32 { return f(r) }

// Request is one FastCGI request.
type Request struct {
	// Serial numbers requests across the whole process, for log lines.
	Serial   uint64
	ID       uint16
	Role     fcgi.Role
	KeepConn bool
	// Params are the FastCGI params in the order they were sent, duplicates
	// included.
	Params []cgienv.Param
	// Body is the request body, spooled as it arrives.
	Body *Spool
	// Stdout and Stderr send FCGI_STDOUT and FCGI_STDERR records. Output is
	// held until the request's STDIN has ended; see Stream.
	Stdout, Stderr *Stream
	Log            hclog.Logger
	Start          time.Time
	// Info is what the handler reports for the access log.
	Info Info

	ctx    context.Context
	cancel context.CancelCauseFunc
	conn   *conn

	// Owned by the connection reader.
	paramBuf   []byte
	paramsDone bool
	running    atomic.Bool // its run goroutine has started

	stdinDone chan struct{} // closed when the STDIN stream ended
	gone      chan struct{} // closed when nothing more can be sent for it
	goneOnce  sync.Once

	mu      sync.Mutex
	refusal *refusal
}

// Info is what a handler reports about a request for the access log and
// the counters.
type Info struct {
	Status  int    // HTTP status sent (0: none)
	Script  string // the program's SCRIPT_FILENAME
	Runner  string // "exec", …
	Exit    string // "exit 0", "signal KILL", "not started"
	PID     int
	Outcome status.Outcome
}

// refusal is an HTTP answer the bridge itself gives instead of, or after,
// the handler: the front end ignores FastCGI's protocolStatus, so a refusal
// must reach it as a Status header.
type refusal struct {
	status int
	reason string
	proto  fcgi.ProtocolStatus
}

// Context returns the request's context. Its cause (context.Cause) says why
// it ended: ErrAborted, ErrConnClosed, ErrShutdown or ErrBodyTooLarge.
func (r *Request) Context() context.Context { return r.ctx }

// Param returns the last value of the named param, or "".
func (r *Request) Param(name string) string { return lastValue(r.Params, name) }

// refuse records an answer the bridge gives itself and cancels the handler.
// The first refusal wins.
func (r *Request) refuse(status int, reason string, cause error) {
	r.refuseProto(status, reason, cause, fcgi.RequestComplete)
}

// refuseProto is refuse with a FastCGI protocolStatus for END_REQUEST.
func (r *Request) refuseProto(status int, reason string, cause error, ps fcgi.ProtocolStatus) {
	r.mu.Lock()
	if r.refusal == nil {
		r.refusal = &refusal{status: status, reason: reason, proto: ps}
	}
	r.mu.Unlock()
	r.cancel(cause)
}

// Refused returns the HTTP status the bridge answered itself (413, 431,
// 500, 503) instead of the handler's response, or 0.
func (r *Request) Refused() int {
	if ref := r.getRefusal(); ref != nil {
		return ref.status
	}
	return 0
}

func (r *Request) getRefusal() *refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refusal
}

// abort ends the request for good: the web server gave it up or the
// connection is gone.
func (r *Request) abort(cause error) {
	r.goneOnce.Do(func() {
		r.cancel(cause)
		close(r.gone)
	})
}

// stdinEnded reports whether the request body has fully arrived.
func (r *Request) stdinEnded() bool {
	select {
	case <-r.stdinDone:
		return true
	default:
		return false
	}
}

// waitInput blocks until the request's STDIN has ended or the request is
// gone; it reports whether output may be sent.
func (r *Request) waitInput() bool {
	select {
	case <-r.stdinDone:
		return true
	case <-r.gone:
		return false
	}
}

// Stream is one output stream of a request (FCGI_STDOUT or FCGI_STDERR).
// Write sends records at once — no buffering, so progress output and
// server-sent events reach the front end promptly — but not before the
// request's STDIN has ended: nginx stops sending a request body once it has
// seen a response header, so a program that writes before it reads would
// otherwise starve. Backpressure comes through the socket write.
type Stream struct {
	req *Request
	typ fcgi.RecType
	n   atomic.Int64
}

// Write sends p, waiting first until the request's input has ended.
func (s *Stream) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r := s.req
	if !r.waitInput() {
		return 0, context.Cause(r.ctx)
	}
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	if err := r.conn.writeStream(s.typ, r.ID, p); err != nil {
		return 0, err
	}
	s.n.Add(int64(len(p)))
	return len(p), nil
}

// Written returns the bytes sent so far.
func (s *Stream) Written() int64 { return s.n.Load() }
