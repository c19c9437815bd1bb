package bridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// startServer serves h on a unix socket in a temp dir and returns a dialer.
func startServer(t *testing.T, s *Server) func() *fcgi.ClientConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	})
	return func() *fcgi.ClientConn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return fcgi.NewClientConn(c)
	}
}

// echoHandler answers with the request's body after a header.
var echoHandler = HandlerFunc(func(r *Request) uint32 {
	n, err := r.Body.Wait(r.Context())
	if err != nil {
		return 1
	}
	in, _ := r.Body.Stdin()
	fmt.Fprintf(r.Stdout, "Content-Type: text/plain\r\nX-Len: %d\r\n\r\n", n)
	if in != nil {
		io.Copy(r.Stdout, in)
	}
	return 0
})

func TestEchoBodyOverSpoolBound(t *testing.T) {
	dial := startServer(t, &Server{Handler: echoHandler, SpoolMemory: 1000})
	for _, size := range []int{0, 10, 999, 1000, 1001, 300 << 10} {
		c := dial()
		body := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		var out, errb bytes.Buffer
		end, err := c.Do(context.Background(), 1, fcgi.RoleResponder, false,
			[]fcgi.Pair{{Name: "REQUEST_METHOD", Value: "POST"}}, bytes.NewReader(body), &out, &errb)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		want := fmt.Sprintf("Content-Type: text/plain\r\nX-Len: %d\r\n\r\n", size) + string(body)
		if out.String() != want || end.ProtocolStatus != fcgi.RequestComplete {
			t.Fatalf("size %d: got %d bytes, status %v", size, out.Len(), end)
		}
	}
}
