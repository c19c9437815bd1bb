// This file holds one FastCGI connection from a web server: the reader loop
// that takes records and dispatches them to requests, and the writer that
// interleaves the records of the connection's requests on the socket.
//
// Ownership: the reader goroutine owns the request table's entries until a
// request's params are complete; from then on one goroutine per request (run)
// owns the handler call and sends the request's only END_REQUEST. The
// reader never waits on a handler: STDIN goes into the request's spool.

package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/hashicorp/go-hclog"
)

type conn struct {
	srv  *Server
	nc   net.Conn
	logv atomic.Pointer[hclog.Logger] // made on first use: see logger
	br   *bufio.Reader
	rd   *fcgi.Reader

	wmu  sync.Mutex
	wbuf []byte
	werr error

	cut atomic.Bool // writes are being abandoned (cutWrites)

	mu         sync.Mutex
	atBoundary bool      // the reader waits for the first byte of a record
	accepted   time.Time // when the connection was accepted
	begun      int       // requests begun on it
	reqs       map[uint16]*Request
	closeIdle  bool // close once no request is in flight (KEEP_CONN off, shutdown)
	handlers   sync.WaitGroup
	closeOnce  sync.Once
}

// errMalformed marks input that is not FastCGI; the connection is closed.
var errMalformed = errors.New("malformed FastCGI input")

// readers recycles connections' read buffers: nginx opens a connection per
// request unless fastcgi_keep_conn is on.
var readers = sync.Pool{New: func() any {
	br := bufio.NewReaderSize(nil, 16<<10)
	return &connReader{br: br, rd: fcgi.NewReader(br)}
}}

type connReader struct {
	br *bufio.Reader
	rd *fcgi.Reader
}

func newConn(s *Server, nc net.Conn) *conn {
	cr := readers.Get().(*connReader)
	cr.br.Reset(nc)
	return &conn{
		srv:      s,
		nc:       nc,
		br:       cr.br,
		rd:       cr.rd,
		accepted: time.Now(),
		reqs:     make(map[uint16]*Request),
	}
}

// releaseReader returns the read buffers once the reader loop has ended.
func (c *conn) releaseReader() {
	c.br.Reset(nil)
	readers.Put(&connReader{br: c.br, rd: c.rd})
	c.br, c.rd = nil, nil
}

// logger returns the connection's logger, the server's with peer set. It is
// made on first use: a connection that logs nothing (nearly all) costs no
// logger.
func (c *conn) logger() hclog.Logger {
	if l := c.logv.Load(); l != nil {
		return *l
	}
	l := c.srv.Log.With("peer", peerName(c.nc))
	c.logv.CompareAndSwap(nil, &l)
	return *c.logv.Load()
}

func peerName(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "unix"
}

// serve runs the reader loop until the connection ends, then aborts what is
// still in flight and waits for every request's goroutine.
func (c *conn) serve() {
	if c.srv.Log.IsTrace() {
		c.logger().Trace("connection opened")
	}
	err := c.readLoop()
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		if c.srv.Log.IsTrace() {
			c.logger().Trace("connection closed")
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.logger().Debug("connection closed: peer idle or stalled", "error", err)
	case errors.Is(err, errMalformed), errors.Is(err, fcgi.ErrVersion), errors.Is(err, io.ErrUnexpectedEOF):
		c.logger().Warn("closing connection: bad FastCGI input", "error", err)
	default:
		c.logger().Debug("connection ended", "error", err)
	}
	c.mu.Lock()
	for id, r := range c.reqs {
		r.abort(ErrConnClosed)
		if !r.running.Load() {
			// Its params never ended, so no run goroutine owns it: its
			// spool is released here.
			delete(c.reqs, id)
			r.Body.release()
		}
	}
	c.mu.Unlock()
	c.handlers.Wait()
	c.close()
	c.releaseReader()
}

func (c *conn) close() {
	c.closeOnce.Do(func() { c.nc.Close() })
}

// armIdleDeadline chooses how long the reader may wait for the next
// record. A request must finish its params by its paramsBy (ParamsTimeout
// after its BEGIN_REQUEST; for a connection's first request, after the
// accept), so connections that send nothing or stall in their headers hold
// a slot for seconds, not minutes. A connection with no request in flight
// waits IdleTimeout for the next one (ParamsTimeout when it has never begun
// one); one with a request still receiving its body waits IdleTimeout; one
// whose requests are all being served waits as long as they run. Deadlines
// are only set under c.mu, so a request ending (run) and the reader starting
// a record never overwrite each other's deadline.
func (c *conn) armIdleDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.atBoundary = true
	c.nc.SetReadDeadline(c.idleDeadline(time.Now()))
}

// idleDeadline is armIdleDeadline's choice; the zero time means none.
// Called with c.mu held.
func (c *conn) idleDeadline(now time.Time) time.Time {
	if len(c.reqs) == 0 {
		if c.begun == 0 {
			return c.accepted.Add(c.srv.ParamsTimeout)
		}
		return now.Add(c.srv.IdleTimeout)
	}
	var d time.Time
	receiving := false
	for _, r := range c.reqs {
		switch {
		case !r.paramsDone:
			if d.IsZero() || r.paramsBy.Before(d) {
				d = r.paramsBy
			}
		case !r.stdinEnded():
			receiving = true
		}
	}
	if receiving {
		if idle := now.Add(c.srv.IdleTimeout); d.IsZero() || idle.Before(d) {
			d = idle
		}
	}
	return d
}

// armRecordDeadline bounds reading the rest of a record that has begun:
// RecordTimeout, or sooner when a request's params are due.
func (c *conn) armRecordDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.atBoundary = false
	d := time.Now().Add(c.srv.RecordTimeout)
	for _, r := range c.reqs {
		if !r.paramsDone && r.paramsBy.Before(d) {
			d = r.paramsBy
		}
	}
	c.nc.SetReadDeadline(d)
}

func (c *conn) readLoop() error {
	for {
		c.armIdleDeadline()
		if _, err := c.br.Peek(1); err != nil {
			return err
		}
		// A record has begun: the peer must finish it promptly.
		c.armRecordDeadline()
		rec, err := c.rd.Next()
		if err != nil {
			return err
		}
		if err := c.dispatch(rec); err != nil {
			return err
		}
	}
}

func (c *conn) lookup(id uint16) *Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[id]
}

func (c *conn) dispatch(rec fcgi.Record) error {
	if rec.RequestID == fcgi.NullRequestID {
		return c.management(rec)
	}
	switch rec.Type {
	case fcgi.TypeBeginRequest:
		return c.begin(rec)
	case fcgi.TypeParams:
		if r := c.lookup(rec.RequestID); r != nil {
			return c.params(r, rec.Content)
		}
	case fcgi.TypeStdin:
		if r := c.lookup(rec.RequestID); r != nil {
			c.stdin(r, rec.Content)
		}
	case fcgi.TypeAbortRequest:
		if r := c.lookup(rec.RequestID); r != nil {
			r.Logger().Debug("ABORT_REQUEST received")
			// The handler may start now: the reader must not touch the
			// params after this, so the rest of them is ignored.
			r.paramsDone = true
			r.paramBuf = nil
			r.abort(ErrAborted)
			c.startRun(r)
		}
	case fcgi.TypeData:
		// FILTER is refused at BEGIN_REQUEST, so DATA has no reader.
	default:
		c.logger().Debug("ignoring record", "type", rec.Type, "id", rec.RequestID)
	}
	// Records for unknown or finished request ids are ignored, as the
	// specification asks.
	return nil
}

// management answers records with request id 0.
func (c *conn) management(rec fcgi.Record) error {
	if rec.Type != fcgi.TypeGetValues {
		c.logger().Debug("unknown management record", "type", rec.Type)
		return c.writeRecords(func(b []byte) []byte {
			return fcgi.AppendRecord(b, fcgi.TypeUnknownType, 0, fcgi.AppendUnknownType(nil, rec.Type))
		})
	}
	var reply []byte
	err := fcgi.ForEachPair(rec.Content, func(name, _ []byte) error {
		var v string
		switch string(name) {
		case fcgi.MaxConns:
			v = strconv.Itoa(c.srv.MaxConns)
		case fcgi.MaxReqs:
			v = strconv.Itoa(c.srv.MaxConns * c.srv.MaxReqsPerConn)
		case fcgi.MpxsConns:
			v = "1"
		default:
			return nil // only the names asked for, and only those we know
		}
		reply = fcgi.AppendPair(reply, string(name), v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: GET_VALUES: %w", errMalformed, err)
	}
	return c.writeRecords(func(b []byte) []byte {
		return fcgi.AppendRecord(b, fcgi.TypeGetValuesResult, 0, reply)
	})
}

func (c *conn) begin(rec fcgi.Record) error {
	body, err := fcgi.ParseBeginRequest(rec.Content)
	if err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}
	id := rec.RequestID
	c.mu.Lock()
	_, dup := c.reqs[id]
	n := len(c.reqs)
	c.mu.Unlock()
	if dup {
		c.logger().Warn("BEGIN_REQUEST for a request id already in flight; ignored", "id", id)
		return nil
	}
	switch {
	case body.Role != fcgi.RoleResponder && body.Role != fcgi.RoleAuthorizer:
		// FILTER is sent by no real web server: refuse it, and any unknown
		// role, as the specification allows.
		c.logger().Warn("refusing request: role not supported", "id", id, "role", body.Role)
		return c.refuseNow(id, body.KeepConn(), Refusal{Status: 501, Reason: "FastCGI role " + body.Role.String() + " is not supported", Proto: fcgi.UnknownRole})
	case n >= c.srv.MaxReqsPerConn:
		c.logger().Warn("refusing request: too many requests on one connection", "id", id, "limit", c.srv.MaxReqsPerConn)
		return c.refuseNow(id, body.KeepConn(), Refusal{Status: 503, Reason: "too many concurrent requests on this connection", Proto: fcgi.Overloaded})
	}
	r := c.srv.newRequest(c, id, body)
	if c.srv.shuttingDown() {
		// Answered 503 once its params and body are drained, so the web
		// server is not cut off in the middle of sending them.
		r.refuseCancel(shutdownRefusal, ErrShutdown)
	}
	c.mu.Lock()
	r.paramsBy = time.Now().Add(c.srv.ParamsTimeout)
	if c.begun == 0 {
		r.paramsBy = c.accepted.Add(c.srv.ParamsTimeout)
	}
	c.begun++
	c.reqs[id] = r
	c.mu.Unlock()
	return nil
}

var shutdownRefusal = Refusal{Status: 503, Reason: "the bridge is shutting down", Proto: fcgi.Overloaded}

// refuseNow answers a request that was never admitted. Later records for
// its id are ignored.
func (c *conn) refuseNow(id uint16, keepConn bool, ref Refusal) error {
	err := c.writeRecords(func(b []byte) []byte { return appendAnswer(b, id, &ref, false, 0) })
	if err == nil && !keepConn {
		c.closeWhenIdle()
	}
	return err
}

func (c *conn) params(r *Request, p []byte) error {
	if r.paramsDone {
		return nil
	}
	if len(p) > 0 {
		if len(r.paramBuf)+len(p) > c.srv.MaxParamsBytes {
			r.Logger().Warn("refusing request: params too large", "limit", c.srv.MaxParamsBytes)
			r.paramBuf = nil
			r.paramsDone = true
			r.refuseCancel(Refusal{Status: 431, Reason: "request headers too large", Proto: fcgi.RequestComplete}, errParamsTooLarge)
			c.paramsComplete(r)
			return nil
		}
		r.paramBuf = append(r.paramBuf, p...)
		return nil
	}
	r.paramsDone = true
	params, err := fcgi.ParsePairs(r.paramBuf)
	r.Params = params
	r.paramBuf = nil
	if err != nil {
		return fmt.Errorf("%w: request %d params: %w", errMalformed, r.ID, err)
	}
	c.paramsComplete(r)
	return nil
}

// paramsComplete starts serving r once its params have ended.
func (c *conn) paramsComplete(r *Request) {
	if r.Role == fcgi.RoleAuthorizer {
		// An authorizer gets no body; front ends may not even end the stream.
		c.endStdin(r)
	}
	c.startRun(r)
}

var errParamsTooLarge = errors.New("request params larger than the configured limit")

func (c *conn) stdin(r *Request, p []byte) {
	if r.stdinEnded() {
		return
	}
	if len(p) == 0 {
		c.endStdin(r)
		return
	}
	if r.getRefusal() != nil {
		return // keep draining, discard
	}
	if max := c.srv.maxBody(); max > 0 && r.Body.Size()+int64(len(p)) > max {
		r.Logger().Warn("refusing request: body too large", "limit", max)
		r.refuseCancel(Refusal{Status: 413, Reason: "request body too large", Proto: fcgi.RequestComplete}, ErrBodyTooLarge)
		r.Body.finish(ErrBodyTooLarge)
		return
	}
	switch err := r.Body.write(p); {
	case err == nil:
	case errors.Is(err, ErrSpoolFull):
		r.Logger().Warn("refusing request: the bridge holds too many request bodies", "limit", c.srv.MaxSpoolBytes)
		r.refuseCancel(Refusal{Status: 503, Reason: "the bridge is busy storing other request bodies; try again shortly", Proto: fcgi.Overloaded}, ErrSpoolFull)
		r.Body.finish(err)
	default:
		r.Logger().Error("cannot spool request body", "error", err)
		r.refuseCancel(Refusal{Status: 500, Reason: "cannot store the request body", Proto: fcgi.RequestComplete}, err)
		r.Body.finish(err)
	}
}

func (c *conn) endStdin(r *Request) {
	r.Body.finish(nil)
	close(r.stdinDone)
}

// startRun starts the goroutine that serves r and ends it, once.
func (c *conn) startRun(r *Request) {
	if !r.running.CompareAndSwap(false, true) {
		return
	}
	c.handlers.Add(1)
	go c.run(r)
}

// run owns a request from the end of its params to its END_REQUEST.
func (c *conn) run(r *Request) {
	defer c.handlers.Done()
	appStatus := c.srv.Handler.ServeFCGI(r)
	// Hold the end, like any output, until the body has arrived. A request
	// the web server aborted, or that shutdown cut short, still gets its
	// END_REQUEST; one whose connection is gone gets nothing.
	inputDone := r.waitInput()
	cause := context.Cause(r.ctx)
	answer := inputDone || errors.Is(cause, ErrAborted) || errors.Is(cause, ErrShutdown)
	// The handler is done with the body: give its bytes back to the
	// bridge-wide budget before END_REQUEST goes out, so a request the web
	// server sends once it has read the end finds them free. (STDIN that
	// still arrives for an aborted request is discarded by the released
	// spool.)
	r.Body.release()

	// Free the id before END_REQUEST goes out: nginx reuses id 1 for its
	// next request on a kept connection as soon as it has read it.
	c.mu.Lock()
	delete(c.reqs, r.ID)
	if !r.KeepConn {
		c.closeIdle = true
	}
	idle := len(c.reqs) == 0
	closeNow := idle && c.closeIdle
	if idle && !closeNow && c.atBoundary {
		// The reader may be waiting with no deadline; now idle, it may not
		// wait forever.
		c.nc.SetReadDeadline(time.Now().Add(c.srv.IdleTimeout))
	}
	c.mu.Unlock()

	if answer {
		ref := r.getRefusal()
		if r.Stdout.Written() > 0 {
			ref = nil // the handler's response went out: only its end is due
		}
		held := r.Stdout.takeHeld()
		err := c.writeRecords(func(b []byte) []byte {
			b = fcgi.AppendStream(b, fcgi.TypeStdout, r.ID, held)
			return appendAnswer(b, r.ID, ref, r.Stderr.Written() > 0, appStatus)
		})
		if err != nil {
			r.Logger().Debug("cannot send END_REQUEST", "error", err)
		}
	}
	r.abort(context.Canceled) // release anything still waiting on the request
	if closeNow {
		c.close()
	}
}

// cancelAll ends every request in flight for shutdown: each is answered
// 503 (if it had sent nothing) and its handler cancelled. A request still
// receiving its params has no goroutine to answer it, so a connection that
// holds one is closed outright.
func (c *conn) cancelAll() {
	c.mu.Lock()
	unstarted, writing := false, false
	for _, r := range c.reqs {
		r.refuseCancel(shutdownRefusal, ErrShutdown)
		r.abort(ErrShutdown)
		unstarted = unstarted || !r.running.Load()
		writing = writing || r.writing.Load() > 0
	}
	c.closeIdle = true
	c.mu.Unlock()
	if writing {
		// The deadline has passed: a write blocked on a slow web server
		// must not hold the shutdown up for the write timeout.
		c.cutWrites(true)
	}
	if unstarted {
		c.close()
	}
}

// cutWrites abandons the connection's writes: the one in progress fails at
// once and every later one too, which closes the connection. Unless all is
// set it does so only while at most one request is in flight, so a request
// cannot cut the responses of others multiplexed with it.
func (c *conn) cutWrites(all bool) {
	c.mu.Lock()
	shared := len(c.reqs) > 1
	c.mu.Unlock()
	if shared && !all {
		return
	}
	c.cut.Store(true)
	c.nc.SetWriteDeadline(time.Now())
}

// closeWhenIdle closes the connection now if nothing is in flight, else
// after the last request ends.
func (c *conn) closeWhenIdle() {
	c.mu.Lock()
	c.closeIdle = true
	idle := len(c.reqs) == 0
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

// appendAnswer appends the end of request id: the refusal ref as its
// response when there is one, the ends of its streams, and END_REQUEST. It
// is the one place every answer of the bridge's own is written.
func appendAnswer(b []byte, id uint16, ref *Refusal, stderrUsed bool, appStatus uint32) []byte {
	end := fcgi.EndRequest{AppStatus: appStatus}
	if ref != nil {
		b = fcgi.AppendStream(b, fcgi.TypeStdout, id, refusalBody(ref.Status, ref.Reason))
		end.ProtocolStatus = ref.Proto
	}
	b = fcgi.AppendRecord(b, fcgi.TypeStdout, id, nil)
	if stderrUsed {
		b = fcgi.AppendRecord(b, fcgi.TypeStderr, id, nil)
	}
	return fcgi.AppendRecord(b, fcgi.TypeEndRequest, id, fcgi.AppendEndRequest(nil, end))
}

// refusalBody is a minimal CGI response carrying status: front ends ignore
// FastCGI's protocolStatus, so a refusal must reach them as a Status header.
func refusalBody(status int, reason string) []byte {
	text := statusText(status)
	b := fmt.Appendf(nil, "Status: %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n", status, text)
	if status == 503 {
		b = append(b, "Retry-After: 1\r\n"...)
	}
	return fmt.Appendf(b, "\r\n%d %s: %s\n", status, text, reason)
}

// maxWriteChunk bounds how much one stream write puts on the socket under
// the lock, so requests sharing a connection take turns.
const maxWriteChunk = 64 << 10

// writeStream sends p as records of typ for request id.
func (c *conn) writeStream(typ fcgi.RecType, id uint16, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxWriteChunk)
		chunk := p[:n]
		if err := c.writeRecords(func(b []byte) []byte { return fcgi.AppendStream(b, typ, id, chunk) }); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// writeRecords builds records with build and writes them in one write under
// the connection's write lock. After a failed write every later write fails
// too, and the connection is closed so the reader stops.
func (c *conn) writeRecords(build func([]byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.wbuf = build(c.wbuf[:0])
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.WriteTimeout))
	if c.cut.Load() {
		// cutWrites may have run between the check and the deadline above.
		c.nc.SetWriteDeadline(time.Now())
	}
	if _, err := c.nc.Write(c.wbuf); err != nil {
		c.werr = fmt.Errorf("write to web server: %w", err)
		c.close()
		return c.werr
	}
	if cap(c.wbuf) > 2*maxWriteChunk+1024 {
		c.wbuf = nil // don't keep an outsized buffer for the connection's life
	}
	return nil
}
