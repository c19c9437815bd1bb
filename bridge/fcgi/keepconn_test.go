package fcgi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// earlyApp answers every request as soon as its params have ended, before
// its body, then keeps reading (and ignoring) the rest, like an application
// that refuses a request without looking at the body.
func earlyApp(c net.Conn) {
	rd := NewReader(bufio.NewReader(c))
	var out []byte
	for {
		rec, err := rd.Next()
		if err != nil {
			return
		}
		if rec.Type == TypeParams && len(rec.Content) == 0 {
			out = AppendRecord(out[:0], TypeStdout, rec.RequestID, []byte("Status: 403\r\n\r\n"))
			out = AppendRecord(out, TypeStdout, rec.RequestID, nil)
			out = AppendRecord(out, TypeEndRequest, rec.RequestID, AppendEndRequest(nil, EndRequest{}))
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}

// TestDoKeepsAKeptConnectionUsable pins that Do, stopping a body sender
// that is still running when END_REQUEST arrives, leaves the connection
// usable when the body had in fact been sent in full: a past write deadline
// once stayed on the connection and broke the next request on it.
func TestDoKeepsAKeptConnectionUsable(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			client, app := tr.pair(t)
			go earlyApp(app)
			c := NewClientConn(client)
			body := bytes.Repeat([]byte("b"), 3000)
			for i := range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var out bytes.Buffer
				_, err := c.Do(ctx, uint16(i%100+1), RoleResponder, true, []Pair{{Name: "A", Value: "b"}}, bytes.NewReader(body), &out, io.Discard)
				cancel()
				if err != nil {
					t.Fatalf("request %d on the kept connection: %v", i, err)
				}
				if out.String() != "Status: 403\r\n\r\n" {
					t.Fatalf("request %d: got %q", i, out.String())
				}
			}
		})
	}
}
