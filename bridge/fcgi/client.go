// This file holds the client side of the protocol: what a web server sends
// and reads. The bridge uses it for its development HTTP front end and for
// warm FastCGI children; the conformance tests use it to speak like nginx and
// like an attacker.

package fcgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ClientConn is the client end of one FastCGI connection. Writes are safe
// for concurrent use; Next must be called from one goroutine at a time.
type ClientConn struct {
	conn net.Conn
	rd   *Reader

	wmu sync.Mutex
	buf []byte

	broken atomic.Bool

	// Strict makes Do fail with ErrProtocol on any record that is not
	// STDOUT, STDERR or END_REQUEST of its own request: a client that is an
	// application's only peer (a warm child's) knows nothing else can come.
	Strict bool
}

// ErrProtocol means the application sent a record it must not have sent.
var ErrProtocol = errors.New("fcgi: protocol violation by the application")

// NewClientConn wraps an established connection.
func NewClientConn(c net.Conn) *ClientConn {
	return &ClientConn{conn: c, rd: NewReader(bufio.NewReaderSize(c, 32<<10))}
}

// Conn returns the underlying connection.
func (c *ClientConn) Conn() net.Conn { return c.conn }

// Close closes the connection.
func (c *ClientConn) Close() error { return c.conn.Close() }

// Usable reports whether the connection can carry another request: false
// once a Do failed, was cancelled, or had to cut its body short.
func (c *ClientConn) Usable() bool { return !c.broken.Load() }

// Next reads the next record from the application.
func (c *ClientConn) Next() (Record, error) { return c.rd.Next() }

// WriteRaw writes bytes as they are, for tests that send malformed input.
func (c *ClientConn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(b)
	return err
}

func (c *ClientConn) send(build func([]byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.buf = build(c.buf[:0])
	_, err := c.conn.Write(c.buf)
	return err
}

// WriteRecord writes one record; content must not exceed MaxContent.
func (c *ClientConn) WriteRecord(typ RecType, id uint16, content []byte) error {
	return c.send(func(b []byte) []byte { return AppendRecord(b, typ, id, content) })
}

// WriteBeginRequest starts request id.
func (c *ClientConn) WriteBeginRequest(id uint16, role Role, keepConn bool) error {
	var flags uint8
	if keepConn {
		flags = FlagKeepConn
	}
	body := AppendBeginRequest(nil, BeginRequest{Role: role, Flags: flags})
	return c.WriteRecord(TypeBeginRequest, id, body)
}

// WriteParams sends the pairs as PARAMS records, split at MaxContent, and
// the empty record that ends the stream.
func (c *ClientConn) WriteParams(id uint16, pairs []Pair) error {
	return c.send(func(b []byte) []byte { return appendParams(b, id, pairs) })
}

// appendParams appends the pairs as PARAMS records and the stream's end.
func appendParams(b []byte, id uint16, pairs []Pair) []byte {
	var enc []byte
	for _, p := range pairs {
		enc = AppendPair(enc, p.Name, p.Value)
	}
	b = AppendStream(b, TypeParams, id, enc)
	return AppendRecord(b, TypeParams, id, nil)
}

// WriteStream copies r into records of typ of at most chunk bytes each (as
// nginx sends its request body in 8 KiB records), then ends the stream with
// an empty record. A nil r sends only the end.
func (c *ClientConn) WriteStream(typ RecType, id uint16, r io.Reader, chunk int) error {
	if chunk <= 0 || chunk > MaxContent {
		chunk = MaxContent
	}
	if r != nil {
		p := make([]byte, chunk)
		for {
			n, err := r.Read(p)
			if n > 0 {
				if werr := c.WriteRecord(typ, id, p[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: %w", errReadBody, err)
			}
		}
	}
	return c.WriteRecord(typ, id, nil)
}

// Response is what the application sent for one request.
type Response struct {
	End EndRequest
}

// ErrNoEnd means the connection ended before the request's END_REQUEST.
var ErrNoEnd = errors.New("fcgi: connection closed before END_REQUEST")

// Do runs one request on the connection the way a web server does: it sends
// BEGIN_REQUEST, the params and the body (a small body in the same write,
// a larger one concurrently with reading, so a response that arrives early
// never deadlocks the exchange) and copies the STDOUT and STDERR streams to
// stdout and stderr until END_REQUEST. Records for other request ids are
// ignored. Cancelling ctx closes the connection, which is how nginx aborts
// a request. Whenever Do fails, is cancelled, or has to cut the body short
// after the response ended, the connection is closed and Usable reports
// false; Do never waits on the body sender beyond senderGrace.
func (c *ClientConn) Do(ctx context.Context, id uint16, role Role, keepConn bool, params []Pair, body io.Reader, stdout, stderr io.Writer) (EndRequest, error) {
	stop := context.AfterFunc(ctx, func() {
		c.broken.Store(true)
		c.conn.Close()
	})
	defer stop()

	var sendErr chan error
	if small, ok := smallBody(body); ok {
		if err := c.send(func(b []byte) []byte { return appendRequest(b, id, role, keepConn, params, small) }); err != nil {
			// The application may have answered and closed already: its
			// answer is still read below.
			sendErr = make(chan error, 1)
			sendErr <- err
		}
	} else {
		sendErr = make(chan error, 1)
		go func() {
			err := c.WriteBeginRequest(id, role, keepConn)
			if err == nil {
				err = c.WriteParams(id, params)
			}
			if err == nil {
				err = c.WriteStream(TypeStdin, id, body, 8192)
			}
			if errors.Is(err, errReadBody) {
				// The body cannot be finished: abort the request the way
				// nginx does, by closing the connection, rather than leave
				// the application waiting for the rest of it.
				c.broken.Store(true)
				c.conn.Close()
			}
			sendErr <- err
		}()
	}

	end, err := c.readResponse(id, stdout, stderr)
	if err == nil {
		if sendErr != nil {
			// The response is complete. A well-behaved application drains
			// the rest of the body, so the sender finishes soon; one that
			// stopped reading would block it forever. After a short grace
			// the sender is cut off, and the connection, its body cut
			// short, is closed.
			grace := time.NewTimer(senderGrace)
			defer grace.Stop()
			select {
			case serr := <-sendErr:
				if serr != nil {
					c.markBroken()
				}
			case <-grace.C:
				c.conn.SetWriteDeadline(time.Now())
				<-sendErr
				c.markBroken()
			}
		}
		return end, nil
	}
	// The exchange failed: the connection is unusable. Closing it also
	// unblocks a sender stuck on a peer that stopped reading.
	c.markBroken()
	var werr error
	if sendErr != nil {
		werr = <-sendErr
	}
	if ctx.Err() != nil {
		return end, ctx.Err()
	}
	if werr != nil && !errors.Is(werr, net.ErrClosed) {
		err = fmt.Errorf("%w (sending: %v)", err, werr)
	}
	return end, err
}

func (c *ClientConn) markBroken() {
	c.broken.Store(true)
	c.conn.Close()
}

// smallBodyMax is the largest body Do sends in the same write as the
// request's other records.
const smallBodyMax = 16 << 10

// smallBody returns the whole body when it is small and in memory.
func smallBody(body io.Reader) ([]byte, bool) {
	switch b := body.(type) {
	case nil:
		return nil, true
	case *bytes.Reader:
		if b.Len() > smallBodyMax {
			return nil, false
		}
		p := make([]byte, b.Len())
		n, _ := b.Read(p)
		return p[:n], true
	}
	return nil, false
}

// appendRequest appends a whole request: BEGIN_REQUEST, the params and
// their end, the body and its end.
func appendRequest(b []byte, id uint16, role Role, keepConn bool, params []Pair, body []byte) []byte {
	var flags uint8
	if keepConn {
		flags = FlagKeepConn
	}
	b = AppendRecord(b, TypeBeginRequest, id, AppendBeginRequest(nil, BeginRequest{Role: role, Flags: flags}))
	b = appendParams(b, id, params)
	b = AppendStream(b, TypeStdin, id, body)
	return AppendRecord(b, TypeStdin, id, nil)
}

// senderGrace is how long Do lets the request body finish sending after the
// response has ended.
const senderGrace = 500 * time.Millisecond

// errReadBody marks a failure to read the request body being sent.
var errReadBody = errors.New("read request body")

func (c *ClientConn) readResponse(id uint16, stdout, stderr io.Writer) (EndRequest, error) {
	for {
		rec, err := c.Next()
		if err != nil {
			if err == io.EOF || errors.Is(err, net.ErrClosed) {
				return EndRequest{}, ErrNoEnd
			}
			return EndRequest{}, fmt.Errorf("%w: %w", ErrNoEnd, err)
		}
		if rec.RequestID != id {
			if c.Strict {
				return EndRequest{}, fmt.Errorf("%w: %v record for request %d, not %d", ErrProtocol, rec.Type, rec.RequestID, id)
			}
			continue
		}
		switch rec.Type {
		case TypeStdout:
			if stdout != nil {
				if _, err := stdout.Write(rec.Content); err != nil {
					return EndRequest{}, err
				}
			}
		case TypeStderr:
			if stderr != nil {
				if _, err := stderr.Write(rec.Content); err != nil {
					return EndRequest{}, err
				}
			}
		case TypeEndRequest:
			return ParseEndRequest(rec.Content)
		default:
			if c.Strict {
				return EndRequest{}, fmt.Errorf("%w: unexpected %v record", ErrProtocol, rec.Type)
			}
		}
	}
}
