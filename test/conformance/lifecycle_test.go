// This file holds the tests of a request's lifecycle: multiplexed ids,
// ABORT_REQUEST and connection loss at each stage, the output hold,
// streaming, the body cap and spool, and shutdown.

package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

func TestInterleavedRequestsEchoOwnBodies(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	body1 := []byte(strings.Repeat("one.", 5000))
	body2 := []byte(strings.Repeat("TWO!", 7000))
	p1, p2 := encodeParams(mode("echo")), encodeParams(mode("echo"))
	must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, true))
	must(t, c.WriteBeginRequest(2, fcgi.RoleResponder, true))
	must(t, c.WriteRecord(fcgi.TypeParams, 1, p1[:5]))
	must(t, c.WriteRecord(fcgi.TypeParams, 2, p2[:9]))
	must(t, c.WriteRecord(fcgi.TypeParams, 1, p1[5:]))
	must(t, c.WriteRecord(fcgi.TypeParams, 2, p2[9:]))
	must(t, c.WriteRecord(fcgi.TypeParams, 2, nil))
	must(t, c.WriteRecord(fcgi.TypeParams, 1, nil))
	for off := 0; off < max(len(body1), len(body2)); off += 8192 {
		if off < len(body1) {
			must(t, c.WriteRecord(fcgi.TypeStdin, 1, body1[off:min(off+8192, len(body1))]))
		}
		if off < len(body2) {
			must(t, c.WriteRecord(fcgi.TypeStdin, 2, body2[off:min(off+8192, len(body2))]))
		}
	}
	must(t, c.WriteRecord(fcgi.TypeStdin, 2, nil))
	must(t, c.WriteRecord(fcgi.TypeStdin, 1, nil))
	got := readResponses(t, c, 1, 2)
	for id, body := range map[uint16][]byte{1: body1, 2: body2} {
		if want := okHeader + string(body); string(got[id].stdout) != want {
			t.Errorf("id %d: got %d bytes, want %d of its own body", id, len(got[id].stdout), len(want))
		}
	}
	assertQuiet(t, c)
}

func TestStalledRequestDoesNotDelayAnother(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	send(t, c, 1, true, mode("block"), nil)
	ts.probe.waitStarted(t)
	t0 := time.Now()
	send(t, c, 2, true, mode("echo"), []byte("not delayed"))
	// readResponses fails on any record for id 1 here.
	resp := readResponse(t, c, 2)
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("request 2 took %v next to a stalled request", d)
	}
	if got := string(resp.stdout); got != okHeader+"not delayed" {
		t.Fatalf("request 2: got %q", got)
	}
	must(t, c.WriteRecord(fcgi.TypeAbortRequest, 1, nil))
	readResponse(t, c, 1)
	if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrAborted) {
		t.Fatalf("stalled handler's cause %v, want ErrAborted", cause)
	}
}

func TestAbortRequestAtEachStage(t *testing.T) {
	tests := []struct {
		name        string
		send        func(t *testing.T, ts *testServer, c *fcgi.ClientConn)
		handlerRuns bool
	}{
		{"during params", func(t *testing.T, ts *testServer, c *fcgi.ClientConn) {
			must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, true))
			must(t, c.WriteRecord(fcgi.TypeParams, 1, encodeParams(mode("block"))))
		}, false},
		{"during stdin", func(t *testing.T, ts *testServer, c *fcgi.ClientConn) {
			must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, true))
			must(t, c.WriteParams(1, mode("block")))
			ts.probe.waitStarted(t)
			must(t, c.WriteRecord(fcgi.TypeStdin, 1, []byte("part of a body")))
		}, true},
		{"while the handler runs", func(t *testing.T, ts *testServer, c *fcgi.ClientConn) {
			send(t, c, 1, true, mode("block"), []byte("whole body"))
			ts.probe.waitStarted(t)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := start(t, &bridge.Server{})
			c := ts.dial(t)
			tt.send(t, ts, c)
			must(t, c.WriteRecord(fcgi.TypeAbortRequest, 1, nil))
			readResponse(t, c, 1)
			if tt.handlerRuns {
				if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrAborted) {
					t.Fatalf("handler's cause %v, want ErrAborted", cause)
				}
			} else if n, ended, params := ts.probe.calls.Load(), ts.probe.ended.Load(), ts.probe.params.Load(); n != 1 || ended != 1 || params != 0 {
				t.Fatalf("handler called %d times (%d already aborted, with %d params) for a request aborted before its params ended; want once, aborted, no params", n, ended, params)
			}
			// Exactly one END_REQUEST, and the kept connection carries on,
			// reusing id 1.
			assertQuiet(t, c)
			echo(t, c, true, "after abort")
		})
	}
}

func TestConnectionCloseCancelsHandler(t *testing.T) {
	tests := []struct {
		name string
		send func(t *testing.T, c *fcgi.ClientConn)
	}{
		{"during stdin", func(t *testing.T, c *fcgi.ClientConn) {
			must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, false))
			must(t, c.WriteParams(1, mode("block")))
			must(t, c.WriteRecord(fcgi.TypeStdin, 1, []byte("part of a body")))
		}},
		{"while the handler runs", func(t *testing.T, c *fcgi.ClientConn) {
			send(t, c, 1, false, mode("block"), []byte("whole body"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := start(t, &bridge.Server{})
			c := ts.dial(t)
			tt.send(t, c)
			ts.probe.waitStarted(t)
			c.Close()
			if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrConnClosed) {
				t.Fatalf("handler's cause %v, want ErrConnClosed", cause)
			}
		})
	}
}

func TestOutputHeldUntilStdinEnds(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	body := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{1}).Read(body)
	must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, false))
	must(t, c.WriteParams(1, mode("bigfirst")))
	ts.probe.waitStarted(t)
	// Like nginx: the body in 8 KiB records, at a modest pace, without
	// reading anything until it has all been sent. A server whose reader
	// waited on the blocked handler would stop reading and block these
	// writes forever: the deadline makes that a failure, not a hang.
	c.Conn().SetWriteDeadline(time.Now().Add(ioTimeout))
	for off := 0; off < len(body); off += 8192 {
		must(t, c.WriteRecord(fcgi.TypeStdin, 1, body[off:off+8192]))
		if off%(256<<10) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	endSent := time.Now() // taken before: the server may answer before Write returns
	must(t, c.WriteRecord(fcgi.TypeStdin, 1, nil))
	resp := readResponse(t, c, 1)
	if first := ts.ln.firstWrite.Load(); first == 0 || first < endSent.UnixNano() {
		t.Fatalf("the server wrote %v before the empty STDIN was sent", endSent.Sub(time.Unix(0, first)))
	}
	want := fmt.Sprintf("%s%s\nn=%d sha256=%x\n", okHeader, bytes.Repeat([]byte("x"), 1<<20), len(body), sha256.Sum256(body))
	if string(resp.stdout) != want {
		t.Fatalf("got %d bytes ending %q, want %d", len(resp.stdout), resp.stdout[max(0, len(resp.stdout)-90):], len(want))
	}
}

func TestStreamingOutputFlushedPromptly(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	send(t, c, 1, false, mode("stream"), nil)
	resp := readResponse(t, c, 1)
	var atA, atB time.Time
	for _, r := range resp.recs {
		if r.Type != fcgi.TypeStdout {
			continue
		}
		if bytes.HasSuffix(r.Content, []byte("a")) && atA.IsZero() {
			atA = r.At
		}
		if bytes.Equal(r.Content, []byte("b")) {
			atB = r.At
		}
	}
	if atA.IsZero() || atB.IsZero() {
		t.Fatalf("want separate records ending in \"a\" and holding \"b\"; got STDOUT %q", resp.stdout)
	}
	if gap := atB.Sub(atA); gap < 200*time.Millisecond {
		t.Fatalf("\"a\" arrived only %v before \"b\": output was buffered", gap)
	}
}

func TestBodyOverCapAnswered413AfterStdinEnds(t *testing.T) {
	ts := start(t, &bridge.Server{MaxBodyBytes: 1000})
	c := ts.dial(t)
	must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, true))
	must(t, c.WriteParams(1, mode("bodycause")))
	ts.probe.waitStarted(t)
	body := bytes.Repeat([]byte("z"), 5000)
	for off := 0; off < len(body); off += 700 {
		must(t, c.WriteRecord(fcgi.TypeStdin, 1, body[off:min(off+700, len(body))]))
	}
	if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrBodyTooLarge) {
		t.Fatalf("handler's cause %v, want ErrBodyTooLarge", cause)
	}
	time.Sleep(50 * time.Millisecond) // give an early answer time to show
	endSent := time.Now()
	must(t, c.WriteRecord(fcgi.TypeStdin, 1, nil))
	resp := readResponse(t, c, 1)
	if first := ts.ln.firstWrite.Load(); first < endSent.UnixNano() {
		t.Fatalf("413 sent %v before the empty STDIN", endSent.Sub(time.Unix(0, first)))
	}
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 413")) {
		t.Fatalf("STDOUT %q, want Status: 413", resp.stdout)
	}
	echo(t, c, true, "under the cap")
}

func TestLargeBodyArrivesByteExact(t *testing.T) {
	body := make([]byte, 20<<20)
	rand.NewChaCha8([32]byte{2}).Read(body)
	want := fmt.Sprintf("%sn=%d sha256=%x", okHeader, len(body), sha256.Sum256(body))
	for _, m := range []string{"sha-stdin", "sha-stream"} {
		t.Run(m, func(t *testing.T) {
			ts := start(t, &bridge.Server{SpoolMemory: 64 << 10})
			c := ts.dial(t)
			must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, false))
			must(t, c.WriteParams(1, mode(m)))
			ts.probe.waitStarted(t)
			// A pause mid-body makes the streaming reader wait for data.
			half := len(body) / 2
			for off := 0; off < len(body); off += 32 << 10 {
				if off == half {
					time.Sleep(50 * time.Millisecond)
				}
				must(t, c.WriteRecord(fcgi.TypeStdin, 1, body[off:off+32<<10]))
			}
			must(t, c.WriteRecord(fcgi.TypeStdin, 1, nil))
			if got := string(readResponse(t, c, 1).stdout); got != want {
				t.Fatalf("handler saw %q, want %q", got, want)
			}
		})
	}
}

func TestShutdownWaitsForRequestInFlight(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	send(t, c, 1, true, mode("sleep"), nil)
	ts.probe.waitStarted(t)
	stopped := make(chan error, 1)
	var stoppedAt time.Time
	go func() {
		err, _ := ts.stop(ioTimeout)
		stoppedAt = time.Now() // read after the channel receive below
		stopped <- err
	}()
	resp := readResponse(t, c, 1)
	if got := string(resp.stdout); got != okHeader+"slept" {
		t.Fatalf("in-flight request got %q", got)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if done := ts.probe.returned.Load(); done == 0 || stoppedAt.UnixNano() < done {
			t.Fatalf("Shutdown returned before the in-flight handler did")
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return after the last request")
	}
	if _, serveErr := ts.stop(0); !errors.Is(serveErr, bridge.ErrServerClosed) {
		t.Fatalf("Serve returned %v", serveErr)
	}
	// The kept connection is closed once idle.
	expectClosed(t, c, time.Second)
}

func TestShutdownDeadlineCancelsHandler(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	send(t, c, 1, true, mode("block"), nil)
	ts.probe.waitStarted(t)
	shutErr, serveErr := ts.stop(100 * time.Millisecond)
	if !errors.Is(shutErr, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v, want the context's error", shutErr)
	}
	if !errors.Is(serveErr, bridge.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", serveErr)
	}
	if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrShutdown) {
		t.Fatalf("handler's cause %v, want ErrShutdown", cause)
	}
	resp := readResponse(t, c, 1)
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 503")) {
		t.Fatalf("STDOUT %q, want Status: 503", resp.stdout)
	}
}

// Regression test: Shutdown with an expired ctx once left a request whose
// params were still arriving unanswered (no goroutine ran it yet), blocking
// Shutdown until IdleTimeout. Such connections are now closed outright.
func TestShutdownDeadlineEndsRequestMidParams(t *testing.T) {
	ts := start(t, &bridge.Server{IdleTimeout: 3 * time.Second})
	c := ts.dial(t)
	must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, true))
	must(t, c.WriteRecord(fcgi.TypeParams, 1, encodeParams(mode("echo"))))
	assertQuiet(t, c) // the server has read the records above
	t0 := time.Now()
	ts.stop(100 * time.Millisecond)
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Shutdown with a 100ms context took %v", d)
	}
}

func TestShutdownRefusesNewRequestOnBusyConnection(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	send(t, c, 1, true, mode("block"), nil)
	ts.probe.waitStarted(t)
	go ts.stop(ioTimeout)
	// Wait until Shutdown has begun: the listener refuses new connections.
	for deadline := time.Now().Add(ioTimeout); ; time.Sleep(5 * time.Millisecond) {
		nc, err := net.Dial("unix", ts.sock)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open after Shutdown")
		}
	}
	send(t, c, 2, true, mode("echo"), nil)
	resp := readResponse(t, c, 2)
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 503")) || resp.end.ProtocolStatus != fcgi.Overloaded {
		t.Fatalf("request begun during shutdown got %q, %+v; want Status: 503 and OVERLOADED", resp.stdout, resp.end)
	}
	// The drain goes on: the request in flight still ends normally, and
	// then the connection closes.
	must(t, c.WriteRecord(fcgi.TypeAbortRequest, 1, nil))
	readResponse(t, c, 1)
	if cause := ts.probe.waitCause(t); !errors.Is(cause, bridge.ErrAborted) {
		t.Fatalf("request 1's cause %v, want ErrAborted", cause)
	}
	expectClosed(t, c, time.Second)
}
