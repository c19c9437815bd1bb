// This file holds the tests of peers that do not speak FastCGI or stall:
// each loses its own connection, promptly, and costs no other connection
// anything.

package conformance

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

func TestGarbageClosesOnlyItsConnection(t *testing.T) {
	ts := start(t, &bridge.Server{})
	good := ts.dial(t)
	// A request in flight on the good connection: params done, body half sent.
	must(t, good.WriteBeginRequest(1, fcgi.RoleResponder, false))
	must(t, good.WriteParams(1, mode("echo")))
	must(t, good.WriteRecord(fcgi.TypeStdin, 1, []byte("first half, ")))

	bad := ts.dial(t)
	must(t, bad.WriteRaw([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
	expectClosed(t, bad, 2*time.Second)

	must(t, good.WriteStream(fcgi.TypeStdin, 1, strings.NewReader("second half"), 0))
	if got := string(readResponse(t, good, 1).stdout); got != okHeader+"first half, second half" {
		t.Fatalf("good connection got %q", got)
	}
}

func TestBadHeadersCloseConnection(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
	}{
		{"version 2 header", rawRecord(2, fcgi.TypeBeginRequest, 1, fcgi.AppendBeginRequest(nil, fcgi.BeginRequest{Role: fcgi.RoleResponder}), 0)},
		{"version 0 header", rawRecord(0, fcgi.TypeGetValues, 0, nil, 0)},
		{"short BEGIN_REQUEST body", rawRecord(1, fcgi.TypeBeginRequest, 1, []byte{0, 1, 0}, 5)},
		{"truncated GET_VALUES pair", rawRecord(1, fcgi.TypeGetValues, 0, []byte{14, 0, 'F', 'C'}, 4)},
	}
	ts := start(t, &bridge.Server{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dial(t)
			must(t, c.WriteRaw(tt.raw))
			expectClosed(t, c, 2*time.Second)
		})
	}
}

func TestStalledHeaderDisconnectedAfterRecordTimeout(t *testing.T) {
	ts := start(t, &bridge.Server{RecordTimeout: 300 * time.Millisecond, IdleTimeout: 5 * time.Second})
	c := ts.dial(t)
	echo(t, c, true, "a kept connection")
	// Four bytes of a header, then nothing.
	must(t, c.WriteRaw([]byte{1, byte(fcgi.TypeBeginRequest), 0, 1}))
	if d := expectClosed(t, c, 3*time.Second); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("stalled peer disconnected after %v, want about RecordTimeout (300ms)", d)
	}
}

// Regression test: a request finishing while the peer is stalled mid-record
// once replaced the reader's RecordTimeout deadline with IdleTimeout. Read
// deadlines are now only set under the connection's lock, and a finishing
// request touches them only when the reader waits at a record boundary.
func TestStalledHeaderDisconnectedWhileRequestFinishes(t *testing.T) {
	ts := start(t, &bridge.Server{RecordTimeout: 400 * time.Millisecond, IdleTimeout: 3 * time.Second})
	c := ts.dial(t)
	send(t, c, 1, true, mode("sleep"), nil) // the handler takes 150ms
	ts.probe.waitStarted(t)
	must(t, c.WriteRaw([]byte{1, byte(fcgi.TypeBeginRequest), 0, 2}))
	readResponse(t, c, 1)
	if d := expectClosed(t, c, 5*time.Second); d > time.Second {
		t.Fatalf("peer stalled mid-record disconnected %v after the response, want within RecordTimeout (400ms)", d)
	}
}

func TestMaxConnsClosesExtraConnection(t *testing.T) {
	ts := start(t, &bridge.Server{MaxConns: 2})
	a, b := ts.dial(t), ts.dial(t)
	// Round trips make sure both were accepted before the third dials.
	assertQuiet(t, a)
	assertQuiet(t, b)
	extra := ts.dial(t)
	expectClosed(t, extra, 2*time.Second)
	echo(t, a, true, "first")
	echo(t, b, true, "second")
	if n := ts.srv.Active(); n != 2 {
		t.Fatalf("Active() = %d, want 2", n)
	}
}

func TestRequestsPastPerConnLimitRefused503(t *testing.T) {
	ts := start(t, &bridge.Server{MaxReqsPerConn: 1})
	c := ts.dial(t)
	send(t, c, 1, true, mode("block"), nil)
	ts.probe.waitStarted(t)
	send(t, c, 2, true, mode("echo"), []byte("one too many"))
	resp := readResponse(t, c, 2)
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 503")) {
		t.Fatalf("STDOUT %q, want Status: 503", resp.stdout)
	}
	if resp.end.ProtocolStatus != fcgi.Overloaded {
		t.Fatalf("protocol status %d, want OVERLOADED (%d)", resp.end.ProtocolStatus, fcgi.Overloaded)
	}
	// The admitted request is untouched by its neighbour's refusal.
	must(t, c.WriteRecord(fcgi.TypeAbortRequest, 1, nil))
	readResponse(t, c, 1)
	if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrAborted) {
		t.Fatalf("request 1's cause %v, want ErrAborted", cause)
	}
	if n := ts.probe.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}
