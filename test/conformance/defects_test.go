// This file holds regression tests for defects fixed in the server core
// (package bridge), one test per defect: the race on r.Params after an
// early ABORT_REQUEST, connections accepted during Shutdown, writes blocked
// past Shutdown's deadline, the spool of a request whose params never ended,
// the bridge-wide spool bound, the params timeout, the refused-connection log
// and the appStatus of the Handler contract. Each test bounds every wait, so
// a regression fails it instead of hanging the package.

package conformance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/hashicorp/go-hclog"
)

// Pins: ABORT_REQUEST before the params ended started the handler while the
// connection reader went on appending the rest of the params to r.Params, a
// data race (and a handler that saw params it was told it had none of). The
// abort now marks the params done before the handler starts, and the params
// records after it are ignored. Run with -race.
func TestAbortMidParamsHandlerSeesNoParams(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	pairs := append(mode("params"), fcgi.Pair{Name: "HTTP_X_PADDING", Value: strings.Repeat("p", 3000)})
	enc := encodeParams(pairs)
	ids := []uint16{1, 2, 3, 4}
	const rounds = 50
	for round := range rounds {
		// All in one write, so the reader takes the params that follow
		// each abort while the aborted request's handler starts: right
		// after its ABORT_REQUEST, the rest of its params in two records
		// and their end. No STDIN end: an aborted request is answered
		// without it, so its handler's end follows only the abort, never
		// the params after it, and the race detector sees any access to
		// them.
		var b []byte
		for _, id := range ids {
			b = fcgi.AppendRecord(b, fcgi.TypeBeginRequest, id, fcgi.AppendBeginRequest(nil, fcgi.BeginRequest{Role: fcgi.RoleResponder, Flags: fcgi.FlagKeepConn}))
			b = fcgi.AppendRecord(b, fcgi.TypeParams, id, enc[:40])
		}
		half := 40 + (len(enc)-40)/2
		for _, id := range ids {
			b = fcgi.AppendRecord(b, fcgi.TypeAbortRequest, id, nil)
			b = fcgi.AppendRecord(b, fcgi.TypeParams, id, enc[40:half])
			b = fcgi.AppendRecord(b, fcgi.TypeParams, id, enc[half:])
			b = fcgi.AppendRecord(b, fcgi.TypeParams, id, nil)
		}
		c.Conn().SetWriteDeadline(time.Now().Add(ioTimeout))
		must(t, c.WriteRaw(b))
		for id, resp := range readResponses(t, c, ids...) {
			if len(resp.stdout) != 0 || resp.end.ProtocolStatus != fcgi.RequestComplete {
				t.Fatalf("round %d, aborted request %d: STDOUT %q, END_REQUEST %+v; want no output, REQUEST_COMPLETE", round, id, resp.stdout, resp.end)
			}
		}
		if n, ended := ts.probe.calls.Load(), ts.probe.ended.Load(); n != int32((round+1)*len(ids)) || ended != n {
			t.Fatalf("after round %d: handler called %d times, %d of them aborted; want %d, all aborted", round, n, ended, (round+1)*len(ids))
		}
		if p := ts.probe.endedParams.Load(); p != 0 {
			t.Fatalf("after round %d: aborted requests' handlers saw %d params in all, want none", round, p)
		}
	}
	// The ignored params did not derail the connection.
	assertQuiet(t, c)
	echo(t, c, true, "after the aborts")
}

// handOffListener is a listener whose Accept hands out one prepared
// connection exactly when Shutdown has begun: Accept blocks until Close,
// then returns conn once, then net.ErrClosed.
type handOffListener struct {
	conn      net.Conn
	waiting   chan struct{} // closed when Accept is first entered
	closed    chan struct{}
	waitOnce  sync.Once
	closeOnce sync.Once
	handed    atomic.Bool
}

func newHandOffListener(conn net.Conn) *handOffListener {
	return &handOffListener{conn: conn, waiting: make(chan struct{}), closed: make(chan struct{})}
}

func (l *handOffListener) Accept() (net.Conn, error) {
	l.waitOnce.Do(func() { close(l.waiting) })
	<-l.closed
	if l.handed.CompareAndSwap(false, true) {
		return l.conn, nil
	}
	return nil, net.ErrClosed
}

func (l *handOffListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *handOffListener) Addr() net.Addr { return l.conn.LocalAddr() }

// unixPair returns the two ends of a connected unix stream socket, both
// closed when the test ends.
func unixPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgibridge-pair-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	must(t, err)
	defer ln.Close()
	client, err = net.Dial("unix", ln.Addr().String())
	must(t, err)
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	must(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

// Pins: a connection accepted while Shutdown ran was registered without
// seeing that the server was closing, so Shutdown neither closed it nor
// stopped waiting for it, and returned only when the connection's idle
// timeout closed it (two minutes by default). It is now closed at once.
func TestConnAcceptedDuringShutdownClosedAtOnce(t *testing.T) {
	client, server := unixPair(t)
	ln := newHandOffListener(server)
	t.Cleanup(func() { ln.Close() })
	srv := &bridge.Server{Handler: newProbe()} // default ParamsTimeout and IdleTimeout
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ln.waiting:
	case <-time.After(ioTimeout):
		t.Fatal("Serve never called Accept")
	}

	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	shut := make(chan error, 1)
	t0 := time.Now()
	go func() { shut <- srv.Shutdown(ctx) }()
	// Whatever happens, the server's goroutines must be gone when the test
	// ends: closing the client's end ends the connection if nothing did.
	t.Cleanup(func() {
		client.Close()
		select {
		case <-shut:
		case <-time.After(ioTimeout):
			t.Error("Shutdown never returned")
		}
	})

	select {
	case err := <-shut:
		shut <- err // for the cleanup
		if err != nil {
			t.Fatalf("Shutdown returned %v, want nil", err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("Shutdown took %v", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Shutdown still waiting 2s after it began: it waits for the connection accepted while it ran")
	}
	select {
	case err := <-served:
		if !errors.Is(err, bridge.ErrServerClosed) {
			t.Fatalf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return after Shutdown")
	}
	// Checked once Serve has returned: Shutdown may return before the
	// Accept it unblocked has.
	if !ln.handed.Load() {
		t.Fatal("the listener never handed out its connection: the test proved nothing")
	}
	client.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the connection accepted during Shutdown: read %d bytes, %v; want EOF", n, err)
	}
}

// Pins: when Shutdown's deadline passed while a request's stream write was
// blocked on a web server that does not read, the write went on blocking
// for the server's WriteTimeout (two minutes by default), far past the
// deadline. The connection's writes are now cut when the deadline passes.
func TestShutdownDeadlineCutsWriteToClientThatNeverReads(t *testing.T) {
	ts := start(t, &bridge.Server{}) // WriteTimeout left at its 2m default
	c := ts.dial(t)
	send(t, c, 1, false, mode("flood"), nil)
	ts.probe.waitStarted(t)
	// The flood fills the socket buffers at once: soon after the first
	// write, writes block on this client, which never reads.
	waitFor(t, ioTimeout, "the server's first write", func() bool { return ts.ln.firstWrite.Load() != 0 })

	const deadline = 300 * time.Millisecond
	type result struct{ shut, serve error }
	stopped := make(chan result, 1)
	t0 := time.Now()
	go func() {
		shut, serve := ts.stop(deadline)
		stopped <- result{shut, serve}
	}()
	select {
	case r := <-stopped:
		if d := time.Since(t0); d > 3*time.Second {
			t.Fatalf("Shutdown with a %v deadline returned after %v", deadline, d)
		}
		if !errors.Is(r.shut, context.DeadlineExceeded) {
			t.Fatalf("Shutdown returned %v, want the context's error", r.shut)
		}
		if !errors.Is(r.serve, bridge.ErrServerClosed) {
			t.Fatalf("Serve returned %v, want ErrServerClosed", r.serve)
		}
	case <-time.After(5 * time.Second):
		c.Close() // unblocks the server's write, so the cleanup ends
		t.Fatalf("Shutdown with a %v deadline still waiting after 5s: the write blocked on the client was not cut", deadline)
	}
	if ts.probe.returned.Load() == 0 {
		t.Fatal("Shutdown returned before the handler did")
	}
	// The connection was closed: what is buffered drains, then EOF.
	c.Conn().SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.Copy(io.Discard, c.Conn()); err != nil {
		t.Fatalf("draining the cut connection: %v, want EOF", err)
	}
}

// openFDs counts the process's open descriptors, and those whose target is
// under dir (the spool files of a server whose TempDir is dir).
func openFDs(t *testing.T, dir string) (total, under int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	for _, e := range ents {
		total++
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			under++
		}
	}
	return total, under
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, d)
		}
	}
}

// Pins: the spool of a request whose params never ended (a client may send
// STDIN before its params are complete) was never released when its
// connection closed: no handler goroutine owned it, so its temporary file
// stayed open for the life of the process. It is now released by the
// connection as it closes.
func TestSpoolOfRequestWithUnfinishedParamsReleasedOnClose(t *testing.T) {
	// An *os.File's finalizer closes a lost descriptor at some garbage
	// collection: with the collector off, only a real release closes it.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	dir, err := os.MkdirTemp("", "cgibridge-spool-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The bound on all spools holds the leaked body or the next one, not
	// both.
	ts := start(t, &bridge.Server{SpoolMemory: 1024, TempDir: dir, MaxSpoolBytes: 160 << 10})
	before, _ := openFDs(t, dir)

	c := ts.dial(t)
	enc := encodeParams(mode("echo"))
	must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, false))
	must(t, c.WriteRecord(fcgi.TypeParams, 1, enc[:len(enc)/2])) // and never the rest
	body := bytes.Repeat([]byte("s"), 8192)
	for range 12 { // 96 KiB: past the memory part, so a temporary file
		must(t, c.WriteRecord(fcgi.TypeStdin, 1, body))
	}
	assertQuiet(t, c) // the server has spooled all of it
	if _, n := openFDs(t, dir); n != 1 {
		t.Fatalf("%d spool files open, want the request's one", n)
	}
	c.Close()
	waitFor(t, ioTimeout, "the spool file to be closed", func() bool {
		total, n := openFDs(t, dir)
		return n == 0 && total <= before
	})
	// Its bytes are back in the bridge-wide budget: a body that would not
	// fit beside them is taken.
	echoLarge(t, ts.dial(t), false, strings.Repeat("n", 100<<10))
}

// echoLarge is echo for a body too large to print when it fails.
func echoLarge(t *testing.T, c *fcgi.ClientConn, keepConn bool, body string) {
	t.Helper()
	send(t, c, 1, keepConn, mode("echo"), []byte(body))
	resp := readResponse(t, c, 1)
	if got, want := string(resp.stdout), okHeader+body; got != want {
		t.Fatalf("echo of a %d-byte body: got %d bytes beginning %.120q, want %d", len(body), len(got), got, len(want))
	}
}

// Pins: the bridge-wide bound on spooled request bodies (MaxSpoolBytes, new
// with the refactor): a body that would pass it while another request holds
// most of it is refused 503, and once that request has ended its space
// serves the next one.
func TestSpoolBoundRefusesBodyPastItUntilSpaceReturns(t *testing.T) {
	const limit = 256 << 10
	ts := start(t, &bridge.Server{MaxSpoolBytes: limit})
	holder := ts.dial(t)
	send(t, holder, 1, true, mode("block"), bytes.Repeat([]byte("h"), 200<<10))
	ts.probe.waitStarted(t)
	assertQuiet(t, holder) // its whole body is spooled, and held by its handler

	body := strings.Repeat("b", 100<<10) // 200 KiB + 100 KiB passes the bound
	other := ts.dial(t)
	send(t, other, 1, true, mode("echo"), []byte(body))
	resp := readResponse(t, other, 1)
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 503")) || resp.end.ProtocolStatus != fcgi.Overloaded {
		t.Fatalf("body past the spool bound got %.40q, %+v; want Status: 503 and OVERLOADED", resp.stdout, resp.end)
	}

	// The holder ends: its body's space is given back.
	must(t, holder.WriteRecord(fcgi.TypeAbortRequest, 1, nil))
	readResponse(t, holder, 1)
	if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrAborted) {
		t.Fatalf("holder's cause %v, want ErrAborted", cause)
	}
	echoLarge(t, other, true, body)
}

// Pins: ParamsTimeout (new with the refactor). Before it, a connection that
// sent nothing, or stalled in its params, held one of MaxConns slots for
// the whole IdleTimeout. Now a request must have sent its params within
// ParamsTimeout of its BEGIN_REQUEST (of the accept, for a connection's
// first request), while a kept connection idle between requests still waits
// IdleTimeout.
func TestParamsTimeoutClosesSilentAndStalledConnections(t *testing.T) {
	const (
		paramsTimeout = 300 * time.Millisecond
		idleTimeout   = 2 * time.Second
	)
	ts := start(t, &bridge.Server{MaxConns: 3, ParamsTimeout: paramsTimeout, IdleTimeout: idleTimeout})
	t0 := time.Now()
	silent1, silent2, stalled := ts.dial(t), ts.dial(t), ts.dial(t)
	enc := encodeParams(mode("echo"))
	must(t, stalled.WriteBeginRequest(1, fcgi.RoleResponder, true))
	must(t, stalled.WriteRecord(fcgi.TypeParams, 1, enc[:len(enc)/2]))
	waitFor(t, ioTimeout, "the three connections to be accepted", func() bool { return ts.srv.Active() == 3 })
	// They hold every slot: a fourth is turned away.
	expectClosed(t, ts.dial(t), 2*time.Second)

	// Closed by ParamsTimeout, well before IdleTimeout would.
	for name, c := range map[string]*fcgi.ClientConn{"silent": silent1, "second silent": silent2, "stalled in its params": stalled} {
		expectClosed(t, c, time.Until(t0.Add(idleTimeout*3/4)))
		if d := time.Since(t0); d < paramsTimeout/2 {
			t.Fatalf("%s connection closed after %v, before ParamsTimeout (%v)", name, d, paramsTimeout)
		}
	}

	// The slots are free again: a fresh connection is served. The slot is
	// given back just after the close the client sees, so a dial in between
	// may still be turned away; hence the retries.
	waitFor(t, ioTimeout, "the closed connections to be gone", func() bool { return ts.srv.Active() == 0 })
	var fresh *fcgi.ClientConn
	waitFor(t, 2*time.Second, "a fresh connection to be served", func() bool {
		c := ts.dial(t)
		must(t, c.WriteRecord(fcgi.TypeGetValues, 0, fcgi.AppendPair(nil, fcgi.MpxsConns, "")))
		c.Conn().SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := c.Next(); err != nil {
			c.Close()
			return false
		}
		fresh = c
		return true
	})
	echo(t, fresh, true, "fresh")

	// Idle between requests for several ParamsTimeouts: still open.
	nc := fresh.Conn()
	nc.SetReadDeadline(time.Now().Add(4 * paramsTimeout))
	if n, err := nc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("kept connection idle for %v: read %d bytes, %v; want it still open and quiet", 4*paramsTimeout, n, err)
	}
	echo(t, fresh, true, "after idling")
	// And it is closed once idle for IdleTimeout.
	idleFrom := time.Now()
	expectClosed(t, fresh, idleTimeout+3*time.Second)
	if d := time.Since(idleFrom); d < idleTimeout-200*time.Millisecond {
		t.Fatalf("kept connection closed after %v idle, want IdleTimeout (%v)", d, idleTimeout)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's writes and a test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Pins: every connection refused over MaxConns was logged, so a burst of
// them (a flood, or nginx opening connections faster than they close) wrote
// a warning each. They are now logged once per burst: the first at once,
// the rest as one count after a second.
func TestMaxConnsRefusalsLoggedOncePerBurst(t *testing.T) {
	var logs syncBuffer
	ts := start(t, &bridge.Server{MaxConns: 1, Log: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})})
	held := ts.dial(t)
	assertQuiet(t, held) // accepted: it holds the only slot
	const extra = 30
	conns := make([]*fcgi.ClientConn, extra)
	for i := range conns {
		conns[i] = ts.dial(t)
	}
	for _, c := range conns {
		expectClosed(t, c, 2*time.Second)
	}
	var refusals []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "connection refused") || strings.Contains(line, "connections refused") {
			refusals = append(refusals, line)
		}
	}
	if len(refusals) < 1 || len(refusals) > 2 {
		t.Fatalf("%d refused connections logged %d warnings, want 1 or 2:\n%s", extra, len(refusals), strings.Join(refusals, ""))
	}
	echo(t, held, true, "still served")
}

// Pins the Handler contract now that the server writes every request's end:
// the appStatus ServeFCGI returns is what END_REQUEST carries, with
// REQUEST_COMPLETE, and a handler's own refusal (r.Refuse) goes out as a
// Status response written by the server, with the handler's appStatus.
func TestHandlerAppStatusAndRefusalReachEndRequest(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	send(t, c, 1, true, mode("appstatus"), []byte("in"))
	resp := readResponse(t, c, 1)
	if got, want := string(resp.stdout), okHeader+"status 7"; got != want {
		t.Fatalf("STDOUT %q, want %q", got, want)
	}
	if want := (fcgi.EndRequest{AppStatus: 7, ProtocolStatus: fcgi.RequestComplete}); resp.end != want {
		t.Fatalf("END_REQUEST %+v, want %+v", resp.end, want)
	}

	send(t, c, 1, true, mode("refuse"), []byte("in"))
	resp = readResponse(t, c, 1)
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 503")) || !bytes.Contains(resp.stdout, []byte("refused by the handler")) {
		t.Fatalf("STDOUT %q, want the handler's refusal: Status: 503 and its reason", resp.stdout)
	}
	if want := (fcgi.EndRequest{AppStatus: 0, ProtocolStatus: fcgi.RequestComplete}); resp.end != want {
		t.Fatalf("END_REQUEST %+v, want %+v", resp.end, want)
	}
	assertQuiet(t, c)
}
