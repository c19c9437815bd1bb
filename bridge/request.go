// This file holds one FastCGI request as a handler sees it: its params, its
// body spool, its output streams, the answer the bridge gives itself when it
// refuses it, and the context that ends when the request is aborted, its
// connection is lost, or it is refused mid-way.

package bridge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/hashicorp/go-hclog"
)

// Causes of a request's context ending, as context.Cause reports them.
var (
	ErrAborted    = errors.New("request aborted by the web server (ABORT_REQUEST)")
	ErrConnClosed = errors.New("connection to the web server lost")
	ErrShutdown   = errors.New("bridge shutting down")
)

// Handler serves FastCGI requests.
//
// ServeFCGI is called exactly once for every request the server admitted
// (its BEGIN_REQUEST was taken), from the end of its params until it
// returns — also for a request the server has already refused (Refused is
// not 0: its params were too large, its body too large, the bridge is
// shutting down) or that was aborted before its params ended (its context
// is done), so that the handler sees every request it could log. It writes
// the response — a CGI header block and the body — to r.Stdout, or gives a
// short answer of the bridge's own with r.Refuse, and returns the
// application status that END_REQUEST carries. It must return soon after
// r.Context() is done. After it returns the server sends the refusal, if
// any and if nothing was written, and END_REQUEST.
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
	// included. They are complete when the handler is called; a request
	// aborted or refused before its params ended has none.
	Params []fcgi.Pair
	// Body is the request body, spooled as it arrives.
	Body *Spool
	// Stdout and Stderr send FCGI_STDOUT and FCGI_STDERR records. Output is
	// held until the request's STDIN has ended; see Stream.
	Stdout, Stderr *Stream
	Start          time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc
	conn   *conn

	// Owned by the connection reader.
	paramBuf   []byte
	paramsDone bool        // no more params are taken, complete or not
	paramsBy   time.Time   // the params must have ended by then
	running    atomic.Bool // its run goroutine has started

	writing     atomic.Int32  // stream writes in progress
	interrupted atomic.Bool   // Interrupt was called: no more stream writes
	stdinDone   chan struct{} // closed when the STDIN stream ended
	gone        chan struct{} // closed when nothing more can be sent for it
	goneOnce    sync.Once

	mu      sync.Mutex
	refusal *Refusal
	log     hclog.Logger // made on first use: most requests log nothing here
}

// Logger returns the request's logger: the connection's, with req set.
func (r *Request) Logger() hclog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log == nil {
		r.log = r.conn.logger().With("req", r.Serial)
	}
	return r.log
}

// Refusal is an answer the bridge gives itself instead of a program's:
// front ends ignore FastCGI's protocolStatus, so every refusal reaches them
// as a CGI response with a Status header (see refusalBody).
type Refusal struct {
	Status int
	Reason string
	Proto  fcgi.ProtocolStatus
}

// Context returns the request's context. Its cause (context.Cause) says why
// it ended: ErrAborted, ErrConnClosed, ErrShutdown, ErrBodyTooLarge,
// ErrSpoolFull or errParamsTooLarge.
func (r *Request) Context() context.Context { return r.ctx }

// Param returns the last value of the named param, or "".
func (r *Request) Param(name string) string {
	for i := len(r.Params) - 1; i >= 0; i-- {
		if r.Params[i].Name == name {
			return r.Params[i].Value
		}
	}
	return ""
}

// Refuse answers the request with a short response of the bridge's own —
// "Status: <status>" and reason — sent once the handler has returned, if
// nothing else was written. The first refusal wins.
func (r *Request) Refuse(status int, reason string) {
	r.setRefusal(Refusal{Status: status, Reason: reason, Proto: fcgi.RequestComplete})
}

// Refused returns the status of the request's refusal, or 0.
func (r *Request) Refused() int {
	if ref := r.getRefusal(); ref != nil {
		return ref.Status
	}
	return 0
}

// refuseCancel records a refusal of the server's own and cancels the
// handler with cause.
func (r *Request) refuseCancel(ref Refusal, cause error) {
	r.setRefusal(ref)
	r.cancel(cause)
}

func (r *Request) setRefusal(ref Refusal) {
	r.mu.Lock()
	if r.refusal == nil {
		r.refusal = &ref
	}
	r.mu.Unlock()
}

func (r *Request) getRefusal() *Refusal {
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

	// After Hold, writes are kept (up to holdMax) and go out with the
	// request's END_REQUEST, in one write.
	hmu     sync.Mutex
	holding bool
	held    []byte
}

// holdMax bounds what a held stream keeps before writing anyway.
const holdMax = 64 << 10

// Hold says the response is complete but for what is still to be written:
// the rest goes out with END_REQUEST in one write to the web server, not
// one write for the data and one for the end. A runner calls it when it
// knows its program has finished (a FastCGI child's END_REQUEST).
func (s *Stream) Hold() {
	s.hmu.Lock()
	s.holding = true
	s.hmu.Unlock()
}

// takeHeld returns what Hold kept, and stops holding.
func (s *Stream) takeHeld() []byte {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	h := s.held
	s.held, s.holding = nil, false
	return h
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
	s.hmu.Lock()
	if s.holding && len(s.held)+len(p) <= holdMax {
		s.held = append(s.held, p...)
		s.hmu.Unlock()
		s.n.Add(int64(len(p)))
		return len(p), nil
	}
	if len(s.held) > 0 {
		// Too much to hold: what was kept goes first.
		p = append(s.held, p...)
		s.held = nil
	}
	s.hmu.Unlock()
	r.writing.Add(1)
	defer r.writing.Add(-1)
	if r.interrupted.Load() {
		return 0, errInterrupted
	}
	if err := r.conn.writeStream(s.typ, r.ID, p); err != nil {
		return 0, err
	}
	s.n.Add(int64(len(p)))
	return len(p), nil
}

// errInterrupted is what a stream write returns after Interrupt.
var errInterrupted = errors.New("response interrupted: its program was stopped")

// Interrupt ends the request's output: later writes fail at once, and a
// write blocked on a slow web server is abandoned by cutting the
// connection's writes, when no other request shares the connection (one
// that does is bounded by the write timeout). A runner calls it when it
// stops a program mid-response (timeout), so the stop is not held up by
// the web server.
func (s *Stream) Interrupt() {
	r := s.req
	r.interrupted.Store(true)
	if r.writing.Load() == 0 {
		return
	}
	// A write in progress to a web server that reads is done within
	// moments; cut it only if it is still blocked after interruptGrace, so
	// that a fast front end still gets whole records and the END_REQUEST.
	time.AfterFunc(interruptGrace, func() {
		if r.writing.Load() > 0 {
			r.conn.cutWrites(false)
		}
	})
}

// interruptGrace is how long Interrupt lets a write in progress finish.
const interruptGrace = 100 * time.Millisecond

// Written returns the bytes sent so far.
func (s *Stream) Written() int64 { return s.n.Load() }
