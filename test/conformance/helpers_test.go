// This file holds the scaffolding of the conformance tests: the goroutine
// leak check, an in-process server on a unix socket with a handler whose
// behaviour each request picks through its MODE param, and a client-side
// record reader that checks the stream invariants every response must keep.

package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// TestMain fails the package when goroutines outlive the servers: every
// test shuts its server down in a cleanup, so connection readers, request
// goroutines and handlers must all be gone by then.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	// Checked even when tests failed: a failing test must still not strand
	// the server's goroutines.
	{
		var n int
		for range 100 {
			if n = runtime.NumGoroutine(); n <= base {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n > base {
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines after the tests, %d before\n", n, base)
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			code = 1
		}
	}
	os.Exit(code)
}

// ioTimeout bounds every read the client makes, so a server that fails to
// answer fails the test instead of hanging it.
const ioTimeout = 5 * time.Second

const okHeader = "Content-Type: text/plain\r\n\r\n"

// probe is the test handler. The MODE param picks what it does; it reports
// each start and each context cause it saw on channels the tests read.
type probe struct {
	started chan uint16
	causes  chan error
	calls   atomic.Int32
	// ended counts calls for requests that had already been refused or
	// aborted when the handler was called; refused is the last such
	// call's Refused(), params how many params it had.
	ended   atomic.Int32
	refused atomic.Int32
	params  atomic.Int32
	// endedParams sums the params of all those calls.
	endedParams atomic.Int32
	// returned is when ServeFCGI last returned (UnixNano).
	returned atomic.Int64
}

func newProbe() *probe {
	return &probe{started: make(chan uint16, 64), causes: make(chan error, 64)}
}

// ServeFCGI implements bridge.Handler.
func (p *probe) ServeFCGI(r *bridge.Request) uint32 {
	p.calls.Add(1)
	defer func() { p.returned.Store(time.Now().UnixNano()) }()
	if r.Refused() != 0 || r.Context().Err() != nil {
		// The Handler contract: called for every admitted request, so it
		// can log it; it writes nothing and returns.
		p.ended.Add(1)
		p.refused.Store(int32(r.Refused()))
		p.params.Store(int32(len(r.Params)))
		p.endedParams.Add(int32(len(r.Params)))
		return 0
	}
	select {
	case p.started <- r.ID:
	default:
	}
	ctx := r.Context()
	switch r.Param("MODE") {
	case "block":
		// Stands for a program that never finishes on its own.
		<-ctx.Done()
		p.causes <- context.Cause(ctx)
		return 1
	case "bodycause":
		// Waits for the body and reports why it did not get it.
		_, err := r.Body.Wait(ctx)
		if err != nil {
			p.causes <- context.Cause(ctx)
			return 1
		}
		io.WriteString(r.Stdout, okHeader)
		return 0
	case "params":
		var b bytes.Buffer
		b.WriteString(okHeader)
		for _, kv := range r.Params {
			fmt.Fprintf(&b, "%s=%s\n", kv.Name, kv.Value)
		}
		r.Stdout.Write(b.Bytes())
		return 0
	case "authorize":
		if _, err := r.Body.Wait(ctx); err != nil {
			return 1
		}
		io.WriteString(r.Stdout, "Status: 200\r\nVariable-USER: alice\r\n\r\n")
		return 0
	case "bigfirst":
		// Like git-http-backend on push: a megabyte of output before the
		// first read of a large body.
		io.WriteString(r.Stdout, okHeader)
		r.Stdout.Write(bytes.Repeat([]byte("x"), 1<<20))
		h := sha256.New()
		n, err := io.Copy(h, r.Body.NewReader(ctx))
		if err != nil {
			return 1
		}
		fmt.Fprintf(r.Stdout, "\nn=%d sha256=%x\n", n, h.Sum(nil))
		return 0
	case "stream":
		io.WriteString(r.Stdout, okHeader+"a")
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return 1
		}
		io.WriteString(r.Stdout, "b")
		return 0
	case "flood":
		// A large response, written as fast as the web server takes it:
		// against a client that never reads, a write blocks.
		io.WriteString(r.Stdout, okHeader)
		chunk := bytes.Repeat([]byte("f"), 64<<10)
		for range 1024 { // 64 MiB at most
			if _, err := r.Stdout.Write(chunk); err != nil {
				return 1
			}
		}
		return 0
	case "appstatus":
		// A normal response with an application status of its own.
		if _, err := r.Body.Wait(ctx); err != nil {
			return 1
		}
		io.WriteString(r.Stdout, okHeader+"status 7")
		return 7
	case "refuse":
		// A short answer of the bridge's own, given by the handler.
		r.Refuse(503, "refused by the handler")
		return 0
	case "sleep":
		select {
		case <-time.After(150 * time.Millisecond):
		case <-ctx.Done():
			p.causes <- context.Cause(ctx)
			return 1
		}
		io.WriteString(r.Stdout, okHeader+"slept")
		return 0
	case "sha-stdin":
		n, err := r.Body.Wait(ctx)
		if err != nil {
			return 1
		}
		h := sha256.New()
		if in, err := r.Body.Stdin(); err != nil {
			return 1
		} else if in != nil {
			if _, err := io.Copy(h, in); err != nil {
				return 1
			}
		}
		fmt.Fprintf(r.Stdout, "%sn=%d sha256=%x", okHeader, n, h.Sum(nil))
		return 0
	case "sha-stream":
		h := sha256.New()
		n, err := io.Copy(h, r.Body.NewReader(ctx))
		if err != nil {
			return 1
		}
		fmt.Fprintf(r.Stdout, "%sn=%d sha256=%x", okHeader, n, h.Sum(nil))
		return 0
	default: // echo
		if _, err := r.Body.Wait(ctx); err != nil {
			return 1
		}
		io.WriteString(r.Stdout, okHeader)
		if in, _ := r.Body.Stdin(); in != nil {
			io.Copy(r.Stdout, in)
		}
		return 0
	}
}

// waitStarted waits for the handler to start a request.
func (p *probe) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-p.started:
	case <-time.After(ioTimeout):
		t.Fatal("handler never started")
	}
}

// waitCause waits for a blocked handler to report its context's cause.
func (p *probe) waitCause(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.causes:
		return err
	case <-time.After(ioTimeout):
		t.Fatal("handler's context never ended")
		return nil
	}
}

// watchedListener notes when the server first writes to any connection, so
// tests can tell whether output was held.
type watchedListener struct {
	net.Listener
	firstWrite atomic.Int64 // UnixNano; 0 until the first write
}

func (l *watchedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: c, l: l}, nil
}

type watchedConn struct {
	net.Conn
	l *watchedListener
}

func (c *watchedConn) Write(p []byte) (int, error) {
	c.l.firstWrite.CompareAndSwap(0, time.Now().UnixNano())
	return c.Conn.Write(p)
}

// testServer is a bridge.Server serving a probe on a unix socket.
type testServer struct {
	srv   *bridge.Server
	probe *probe
	sock  string
	ln    *watchedListener

	served   chan error
	stopOnce sync.Once
	shutErr  error
	serveErr error
}

// start serves srv (with a fresh probe as its handler) until the test ends.
func start(t *testing.T, srv *bridge.Server) *testServer {
	t.Helper()
	// Not t.TempDir: long test names push a socket path past its 108 bytes.
	dir, err := os.MkdirTemp("", "cgibridge-conf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, probe: newProbe(), sock: sock, ln: &watchedListener{Listener: ln}, served: make(chan error, 1)}
	srv.Handler = ts.probe
	go func() { ts.served <- srv.Serve(ts.ln) }()
	t.Cleanup(func() {
		shutErr, serveErr := ts.stop(ioTimeout)
		if shutErr != nil && !errors.Is(shutErr, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v", shutErr)
		}
		if !errors.Is(serveErr, bridge.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", serveErr)
		}
	})
	return ts
}

// stop shuts the server down once and returns what Shutdown and Serve
// returned; later calls return the same.
func (ts *testServer) stop(d time.Duration) (shutErr, serveErr error) {
	ts.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		ts.shutErr = ts.srv.Shutdown(ctx)
		select {
		case ts.serveErr = <-ts.served:
		case <-time.After(ioTimeout):
			ts.serveErr = errors.New("Serve did not return after Shutdown")
		}
	})
	return ts.shutErr, ts.serveErr
}

// dial opens a client connection, closed when the test ends.
func (ts *testServer) dial(t *testing.T) *fcgi.ClientConn {
	t.Helper()
	nc, err := net.Dial("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return fcgi.NewClientConn(nc)
}

// record is a record as the client received it, with its arrival time.
type record struct {
	Type    fcgi.RecType
	ID      uint16
	Content []byte
	At      time.Time
}

// next reads one record within ioTimeout.
func next(t *testing.T, c *fcgi.ClientConn) record {
	t.Helper()
	c.Conn().SetReadDeadline(time.Now().Add(ioTimeout))
	rec, err := c.Next()
	if err != nil {
		t.Fatalf("reading a record: %v", err)
	}
	return record{Type: rec.Type, ID: rec.RequestID, Content: bytes.Clone(rec.Content), At: time.Now()}
}

// response is what the client received for one request id.
type response struct {
	recs   []record
	stdout []byte
	stderr []byte
	end    fcgi.EndRequest
}

// readResponses reads until every id in ids has its END_REQUEST. It fails
// the test on a record for an id not asked for, on any record of an id after
// its END_REQUEST, and on a STDOUT stream not closed by an empty STDOUT
// record before END_REQUEST.
func readResponses(t *testing.T, c *fcgi.ClientConn, ids ...uint16) map[uint16]*response {
	t.Helper()
	out := make(map[uint16]*response)
	for _, id := range ids {
		out[id] = &response{}
	}
	ended := make(map[uint16]bool)
	stdoutClosed := make(map[uint16]bool)
	for len(ended) < len(ids) {
		rec := next(t, c)
		resp, ok := out[rec.ID]
		if !ok {
			t.Fatalf("unexpected %v record for request id %d (content %q)", rec.Type, rec.ID, rec.Content)
		}
		if ended[rec.ID] {
			t.Fatalf("%v record for id %d after its END_REQUEST", rec.Type, rec.ID)
		}
		resp.recs = append(resp.recs, rec)
		switch rec.Type {
		case fcgi.TypeStdout:
			if stdoutClosed[rec.ID] {
				t.Fatalf("STDOUT record for id %d after its empty STDOUT", rec.ID)
			}
			if len(rec.Content) == 0 {
				stdoutClosed[rec.ID] = true
			}
			resp.stdout = append(resp.stdout, rec.Content...)
		case fcgi.TypeStderr:
			resp.stderr = append(resp.stderr, rec.Content...)
		case fcgi.TypeEndRequest:
			if !stdoutClosed[rec.ID] {
				t.Fatalf("END_REQUEST for id %d before an empty STDOUT record", rec.ID)
			}
			end, err := fcgi.ParseEndRequest(rec.Content)
			if err != nil {
				t.Fatal(err)
			}
			resp.end = end
			ended[rec.ID] = true
		default:
			t.Fatalf("unexpected %v record for id %d", rec.Type, rec.ID)
		}
	}
	return out
}

// readResponse reads the one response for id.
func readResponse(t *testing.T, c *fcgi.ClientConn, id uint16) *response {
	t.Helper()
	return readResponses(t, c, id)[id]
}

// send writes a whole request the way nginx does: BEGIN_REQUEST, params,
// the body in 8 KiB STDIN records and the empty STDIN.
func send(t *testing.T, c *fcgi.ClientConn, id uint16, keepConn bool, params []fcgi.Pair, body []byte) {
	t.Helper()
	must(t, c.WriteBeginRequest(id, fcgi.RoleResponder, keepConn))
	must(t, c.WriteParams(id, params))
	must(t, c.WriteStream(fcgi.TypeStdin, id, bytes.NewReader(body), 8192))
}

// echo runs one echo request and checks the response.
func echo(t *testing.T, c *fcgi.ClientConn, keepConn bool, body string) {
	t.Helper()
	send(t, c, 1, keepConn, mode("echo"), []byte(body))
	resp := readResponse(t, c, 1)
	if got, want := string(resp.stdout), okHeader+body; got != want {
		t.Fatalf("echo: got %q, want %q", got, want)
	}
	if resp.end.ProtocolStatus != fcgi.RequestComplete {
		t.Fatalf("echo: protocol status %d", resp.end.ProtocolStatus)
	}
}

// mode returns nginx-like params selecting the probe's behaviour.
func mode(m string) []fcgi.Pair {
	return []fcgi.Pair{
		{Name: "MODE", Value: m},
		{Name: "REQUEST_METHOD", Value: "POST"},
		{Name: "CONTENT_LENGTH", Value: ""},
		{Name: "SCRIPT_NAME", Value: "/cgi-bin/t.cgi/extra"},
	}
}

// encodeParams is the PARAMS stream content for pairs.
func encodeParams(pairs []fcgi.Pair) []byte {
	var b []byte
	for _, p := range pairs {
		b = fcgi.AppendPair(b, p.Name, p.Value)
	}
	return b
}

// assertQuiet proves nothing is queued on c: a GET_VALUES round trip must
// return its answer as the very next record.
func assertQuiet(t *testing.T, c *fcgi.ClientConn) {
	t.Helper()
	must(t, c.WriteRecord(fcgi.TypeGetValues, 0, fcgi.AppendPair(nil, fcgi.MpxsConns, "")))
	rec := next(t, c)
	if rec.Type != fcgi.TypeGetValuesResult || rec.ID != 0 {
		t.Fatalf("got %v for id %d (%q) where only the GET_VALUES_RESULT was due", rec.Type, rec.ID, rec.Content)
	}
}

// expectClosed checks that the server closes c within d: the next read is
// EOF or a reset, not a record and not a timeout.
func expectClosed(t *testing.T, c *fcgi.ClientConn, d time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	c.Conn().SetReadDeadline(t0.Add(d))
	rec, err := c.Next()
	switch {
	case err == nil:
		t.Fatalf("got a %v record for id %d, want the connection closed", rec.Type, rec.RequestID)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		t.Fatalf("want the connection closed within %v, got %v", d, err)
	}
	return time.Since(t0)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// rawRecord builds a record by hand with any padding, which is filled with
// non-zero bytes since a receiver must ignore it.
func rawRecord(version uint8, typ fcgi.RecType, id uint16, content []byte, pad int) []byte {
	b := []byte{version, byte(typ), byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, bytes.Repeat([]byte{0xAA}, pad)...)
}
