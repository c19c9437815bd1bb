// This file holds the client side of the protocol: what a web server sends
// and reads. The bridge uses it for its development HTTP front end and for
// warm FastCGI children; the conformance tests use it to speak like nginx and
// like an attacker.

package fcgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ClientConn is the client end of one FastCGI connection. Writes are safe
// for concurrent use; Next must be called from one goroutine at a time.
type ClientConn struct {
	conn net.Conn
	bufs *clientBufs
	rd   *Reader

	wmu sync.Mutex
	buf []byte

	broken atomic.Bool

	// OnEnd, when set, is called once Do has read END_REQUEST and the
	// connection is usable (and no longer Do's), before Do delivers the
	// rest of the output: a pool can give the application back — with a
	// kept connection — before relaying its answer. Do returns after.
	OnEnd func()

	// Strict makes Do fail with ErrProtocol on any record that is not
	// STDOUT, STDERR or END_REQUEST of its own request: a client that is an
	// application's only peer (a warm child's) knows nothing else can come.
	Strict bool
}

// ErrProtocol means the application sent a record it must not have sent.
var ErrProtocol = errors.New("fcgi: protocol violation by the application")

// clientBufs are a connection's buffers, recycled by Release: a warm pool
// opens a connection per request, and 16 KiB per request adds up.
type clientBufs struct {
	br   *bufio.Reader
	rd   *Reader
	out  []byte
	pend []byte // STDOUT read but not yet delivered
}

var clientPool = sync.Pool{New: func() any {
	br := bufio.NewReaderSize(nil, 16<<10)
	return &clientBufs{br: br, rd: NewReader(br)}
}}

// NewClientConn wraps an established connection.
func NewClientConn(c net.Conn) *ClientConn {
	b := clientPool.Get().(*clientBufs)
	b.br.Reset(c)
	return &ClientConn{conn: c, bufs: b, rd: b.rd, buf: b.out[:0]}
}

// Release gives the connection's buffers back for reuse. The ClientConn
// must not be used after; the connection itself is not closed.
func (c *ClientConn) Release() {
	b := c.bufs
	if b == nil {
		return
	}
	c.bufs, c.rd = nil, nil
	b.br.Reset(nil)
	if cap(c.buf) <= 64<<10 {
		b.out = c.buf[:0]
	}
	clientPool.Put(b)
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
	return appendParamRecords(b, id, len(pairs), func(b []byte, i int) []byte {
		return AppendPair(b, pairs[i].Name, pairs[i].Value)
	})
}

// appendEnvParams appends "NAME=VALUE" strings as PARAMS records.
func appendEnvParams(b []byte, id uint16, env []string) []byte {
	return appendParamRecords(b, id, len(env), func(b []byte, i int) []byte {
		name, value, _ := strings.Cut(env[i], "=")
		return AppendPair(b, name, value)
	})
}

// appendParamRecords encodes n pairs straight into PARAMS records, with no
// buffer of their own: each record is filled to MaxContent, its header
// written once its length is known; then the stream's end.
func appendParamRecords(b []byte, id uint16, n int, pair func([]byte, int) []byte) []byte {
	start := len(b)
	b = AppendHeader(b, TypeParams, id, 0)
	for i := range n {
		b = pair(b, i)
	}
	// Split what was encoded into records of at most MaxContent.
	enc := b[start+HeaderLen:]
	switch {
	case len(enc) == 0:
		b = b[:start] // no pairs: only the end
	case len(enc) <= MaxContent:
		binary.BigEndian.PutUint16(b[start+4:], uint16(len(enc)))
		b[start+6] = byte(padding(len(enc)))
		b = append(b, Padding(len(enc))...)
	default:
		encoded := append([]byte(nil), enc...)
		b = AppendStream(b[:start], TypeParams, id, encoded)
	}
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
	return c.do(ctx, id, role, keepConn, func(b []byte) []byte { return appendParams(b, id, params) }, body, stdout, stderr)
}

// DoEnv is Do with the params given as an environment, "NAME=VALUE"
// strings, encoded as they are: a warm child gets the environment exec mode
// would have given the program.
func (c *ClientConn) DoEnv(ctx context.Context, id uint16, role Role, keepConn bool, env []string, body io.Reader, stdout, stderr io.Writer) (EndRequest, error) {
	return c.do(ctx, id, role, keepConn, func(b []byte) []byte { return appendEnvParams(b, id, env) }, body, stdout, stderr)
}

func (c *ClientConn) do(ctx context.Context, id uint16, role Role, keepConn bool, params func([]byte) []byte, body io.Reader, stdout, stderr io.Writer) (EndRequest, error) {
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
				err = c.send(params)
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

	// finishSend waits for the body sender once the response has ended. A
	// well-behaved application drains the rest of the body, so the sender
	// finishes soon; one that stopped reading would block it forever: after
	// a short grace the sender is cut off, and the connection, its body cut
	// short, is broken.
	sent := sendErr == nil
	finishSend := func() {
		if sent {
			return
		}
		sent = true
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
	// At END_REQUEST the connection is done with, unless it broke: OnEnd
	// may hand it (and the application) to another request at once, so
	// nothing here may touch it after.
	handed := false
	atEnd := func() bool {
		if c.OnEnd == nil {
			return false
		}
		finishSend()
		if !c.Usable() {
			return false
		}
		stop()
		handed = true
		c.OnEnd()
		return true
	}

	end, err := c.readResponse(id, stdout, stderr, atEnd)
	if err == nil {
		finishSend()
		return end, nil
	}
	if handed {
		// The application answered; what failed is delivering its answer
		// (the sink). The connection is another request's now.
		return end, err
	}
	// The exchange failed: the connection is unusable. Closing it also
	// unblocks a sender stuck on a peer that stopped reading.
	c.markBroken()
	var werr error
	if !sent {
		werr = <-sendErr
	}
	if ctx.Err() != nil {
		return end, ctx.Err()
	}
	if werr != nil && !errors.Is(werr, net.ErrClosed) {
		err = fmt.Errorf("%w (sending: %w)", err, werr)
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
func appendRequest(b []byte, id uint16, role Role, keepConn bool, params func([]byte) []byte, body []byte) []byte {
	var flags uint8
	if keepConn {
		flags = FlagKeepConn
	}
	var begin [8]byte
	b = AppendRecord(b, TypeBeginRequest, id, AppendBeginRequest(begin[:0], BeginRequest{Role: role, Flags: flags}))
	b = params(b)
	b = AppendStream(b, TypeStdin, id, body)
	return AppendRecord(b, TypeStdin, id, nil)
}

// senderGrace is how long Do lets the request body finish sending after the
// response has ended.
const senderGrace = 500 * time.Millisecond

// errReadBody marks a failure to read the request body being sent.
var errReadBody = errors.New("read request body")

func (c *ClientConn) readResponse(id uint16, stdout, stderr io.Writer, atEnd func() bool) (end EndRequest, err error) {
	// STDOUT is delivered when the next read would wait (so a program's
	// progress output streams promptly), when a lot is pending, and at the
	// end — after atEnd, so that the END_REQUEST usually reaches the sink
	// together with the last output.
	var pend []byte
	bufs := c.bufs
	handed := false
	if bufs != nil {
		pend = bufs.pend[:0]
		defer func() {
			// Once the connection is another request's, so are its buffers.
			if !handed && cap(pend) <= 64<<10 {
				bufs.pend = pend[:0]
			}
		}()
	}
	flush := func() error {
		if len(pend) == 0 || stdout == nil {
			pend = pend[:0]
			return nil
		}
		_, err := stdout.Write(pend)
		pend = pend[:0]
		return err
	}
	for {
		rec, err := c.Next()
		if err != nil {
			if ferr := flush(); ferr != nil {
				return EndRequest{}, ferr
			}
			if err == io.EOF || errors.Is(err, net.ErrClosed) {
				return EndRequest{}, ErrNoEnd
			}
			return EndRequest{}, fmt.Errorf("%w: %w", ErrNoEnd, err)
		}
		if rec.RequestID != id {
			if c.Strict {
				flush()
				return EndRequest{}, fmt.Errorf("%w: %v record for request %d, not %d", ErrProtocol, rec.Type, rec.RequestID, id)
			}
			continue
		}
		switch rec.Type {
		case TypeStdout:
			pend = append(pend, rec.Content...)
			if len(pend) >= 32<<10 || bufs == nil || bufs.br.Buffered() == 0 {
				if err := flush(); err != nil {
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
			end, err := ParseEndRequest(rec.Content)
			if err == nil && bufs != nil {
				// The pending output leaves with this call, not with the
				// connection's buffers, which may be handed on.
				bufs.pend = nil
			}
			if err == nil {
				handed = atEnd()
			}
			if ferr := flush(); ferr != nil && err == nil {
				err = ferr
			}
			return end, err
		default:
			if c.Strict {
				flush()
				return EndRequest{}, fmt.Errorf("%w: unexpected %v record", ErrProtocol, rec.Type)
			}
		}
	}
}
