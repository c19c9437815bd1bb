package zygote

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
	"github.com/cgibridge/cgibridge/bridge/runner"
)

func testHelper(t *testing.T) *helper {
	t.Helper()
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	job := &runner.Job{Script: "/nonexistent/script.py", Dir: "/nonexistent"}
	return newHelper(r, helperKey{script: job.Script}, interp{kind: python}, job, 1)
}

// FuzzHelperReply: whatever a helper answers to a request — garbage, a P
// line with a bad pid, nothing, a flood — send returns, in bounded time,
// with a pid only for a well-formed P line.
func FuzzHelperReply(f *testing.F) {
	for _, s := range []string{"P1234\n", "P1\n", "P-5\n", "Pabc\n", "Enope\n", "", "P", "\x00\x00", "P99999999999999999999\n", "X 1 0\n"} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("P1234"), true)
	f.Fuzz(func(t *testing.T, reply []byte, hold bool) {
		h := testHelper(t)
		dir := t.TempDir()
		h.sock = filepath.Join(dir, "s")
		ln, err := net.Listen("unix", h.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			var buf [4096]byte
			c.Read(buf[:]) // the request's start
			c.Write(reply)
			if hold {
				io.Copy(io.Discard, c) // never closes on its own
			}
		}()
		pipes, err := process.NewPipes()
		if err != nil {
			t.Fatal(err)
		}
		defer pipes.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		pid, err := h.send(ctx, &runner.Job{Script: h.key.script, Dir: "/"}, os.Stdin, pipes)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("send took %v on %q", d, reply)
		}
		line, _, _ := bytes.Cut(reply, []byte("\n"))
		if err == nil && (len(line) < 2 || line[0] != 'P' || pid <= 1) {
			t.Fatalf("send accepted %q as pid %d", reply, pid)
		}
	})
}

// FuzzControlLines: whatever a helper writes on its control pipe, the
// reader neither panics nor blocks, and a waiter for a child's exit is
// answered when the helper is gone.
func FuzzControlLines(f *testing.F) {
	for _, s := range []string{"R 3\nX 42 0\n", "X\n", "X a b\n", "X 1 99999999999\n", "F \n", "C why\n", "W w\n", "Q?\n", "\n\n\n", "X -1 -1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := testHelper(t)
		wait := h.await(42)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			h.control(r)
			close(done)
		}()
		w.Write(data)
		w.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("control reader did not end at EOF")
		}
		select {
		case <-wait:
		default:
			// 42's exit did not come: the helper's end answers it.
			h.mu.Lock()
			h.state = dead
			for pid, ch := range h.waits {
				ch <- runner.Exit{Code: -1}
				delete(h.waits, pid)
			}
			h.mu.Unlock()
			<-wait
		}
	})
}
