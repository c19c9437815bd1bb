// Package bridge is the FastCGI server core of cgibridge: it accepts the web
// server's connections, reads their records, and owns each request's
// lifecycle — the body spool, the output hold, aborts, refusals and the one
// END_REQUEST — handing every request to a Handler. It knows nothing of CGI,
// programs or processes.
package bridge

// This file holds the Server: its limits, the accept loop and shutdown.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/hashicorp/go-hclog"
)

// Server accepts FastCGI connections and hands their requests to Handler.
// Set its fields before the first Serve; zero values take the defaults
// named on each field.
type Server struct {
	Handler Handler
	Log     hclog.Logger

	// MaxConns caps open connections; further ones are closed at once with
	// a log line (default 1024).
	MaxConns int
	// MaxReqsPerConn caps requests in flight on one connection; more are
	// answered 503 / FCGI_OVERLOADED (default 64).
	MaxReqsPerConn int
	// MaxParamsBytes caps a request's encoded params; more is answered 431
	// (default 256 KiB).
	MaxParamsBytes int
	// MaxBodyBytes caps a request body; more is answered 413 once the body
	// has been drained. 0 means no cap. SetMaxBodyBytes changes it later.
	MaxBodyBytes int64
	// SpoolMemory is how much of a body is kept in memory before it moves
	// to an unlinked temporary file in TempDir (default 64 KiB).
	SpoolMemory int
	TempDir     string
	// MaxSpoolBytes bounds the bodies spooled across all connections, in
	// memory and on disk; a request that would pass it is answered 503
	// (default 4 GiB). SpoolMemoryTotal bounds the part kept in memory;
	// past it bodies go to disk at once (default 64 MiB).
	MaxSpoolBytes    int64
	SpoolMemoryTotal int64
	// ParamsTimeout bounds how long a request may take to send its params,
	// from its BEGIN_REQUEST (for a connection's first request, from the
	// accept): a connection that sends nothing, or stalls in its headers,
	// is closed after it (default 10s).
	ParamsTimeout time.Duration
	// IdleTimeout bounds how long a kept connection may wait for its next
	// request, and a request for the next record of its body (default 2m).
	IdleTimeout time.Duration
	// RecordTimeout bounds reading the rest of a record once it has begun,
	// against peers that stall mid-record (default 30s).
	RecordTimeout time.Duration
	// WriteTimeout bounds one write to the web server (default 2m).
	WriteTimeout time.Duration
	// Stats, when set, counts accepted requests.
	Stats *status.Stats

	initOnce sync.Once
	conns    chan struct{} // semaphore of MaxConns
	serial   atomic.Uint64
	closing  atomic.Bool
	maxBodyV atomic.Int64
	tempDir  atomic.Pointer[string]
	budget   spoolBudget
	refused  refusedConns

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	active    map[*conn]struct{}
	wg        sync.WaitGroup // connections
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("bridge: server closed")

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Log == nil {
			s.Log = hclog.NewNullLogger()
		}
		setDefault(&s.MaxConns, 1024)
		setDefault(&s.MaxReqsPerConn, 64)
		setDefault(&s.MaxParamsBytes, 256<<10)
		setDefault(&s.SpoolMemory, 64<<10)
		setDefault(&s.MaxSpoolBytes, 4<<30)
		setDefault(&s.SpoolMemoryTotal, 64<<20)
		setDefault(&s.ParamsTimeout, 10*time.Second)
		setDefault(&s.IdleTimeout, 2*time.Minute)
		setDefault(&s.RecordTimeout, 30*time.Second)
		setDefault(&s.WriteTimeout, 2*time.Minute)
		s.conns = make(chan struct{}, s.MaxConns)
		s.maxBodyV.Store(s.MaxBodyBytes)
		s.tempDir.Store(&s.TempDir)
		s.budget.memMax, s.budget.totalMax = s.SpoolMemoryTotal, s.MaxSpoolBytes
		s.refused.log = s.Log
		s.listeners = make(map[net.Listener]struct{})
		s.active = make(map[*conn]struct{})
	})
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

func (s *Server) shuttingDown() bool { return s.closing.Load() }

// SetMaxBodyBytes changes the body cap (on reload); requests whose body is
// arriving see the new cap from their next record.
func (s *Server) SetMaxBodyBytes(n int64) {
	s.init()
	s.maxBodyV.Store(n)
}

func (s *Server) maxBody() int64 { return s.maxBodyV.Load() }

// SetTempDir changes where large bodies are spooled (on reload), for
// requests that begin from now on.
func (s *Server) SetTempDir(dir string) {
	s.init()
	s.tempDir.Store(&dir)
}

// refusedConns logs connections refused over MaxConns once per burst: the
// first at once, the rest as a count when a second has passed.
type refusedConns struct {
	log   hclog.Logger
	mu    sync.Mutex
	since time.Time // start of the burst being counted
	n     int       // refused since then, not yet logged
}

func (rc *refusedConns) note(limit int, peer string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	now := time.Now()
	switch {
	case rc.since.IsZero() || now.Sub(rc.since) >= time.Second && rc.n == 0:
		rc.log.Warn("connection refused: too many open connections", "limit", limit, "peer", peer)
		rc.since = now
	case now.Sub(rc.since) >= time.Second:
		rc.log.Warn("connections refused: too many open connections", "limit", limit, "refused", rc.n+1, "during", now.Sub(rc.since).Round(time.Millisecond))
		rc.since, rc.n = now, 0
	default:
		rc.n++
	}
}

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. Several listeners may be served at once.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// Out of descriptors or similar: wait instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Log.Warn("accept failed; retrying", "error", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		select {
		case s.conns <- struct{}{}:
		default:
			s.refused.note(s.MaxConns, peerName(nc))
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing.Load() {
			// Accepted while Shutdown ran: it would never see this one.
			s.mu.Unlock()
			<-s.conns
			c.close()
			c.releaseReader()
			return ErrServerClosed
		}
		s.active[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.active, c)
				s.mu.Unlock()
				<-s.conns
				s.wg.Done()
			}()
			c.serve()
		}()
	}
}

// Shutdown stops accepting, closes idle connections, and waits for the
// requests in flight. When ctx ends first, the remaining requests are
// cancelled (their handlers kill their programs) and answered 503, and
// Shutdown waits for them to finish before returning ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.active))
	for c := range s.active {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWhenIdle()
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.active {
		c.cancelAll()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// Active returns the number of open connections. It may be called at any
// time, also while the first Serve starts.
func (s *Server) Active() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}

func (s *Server) newRequest(c *conn, id uint16, b fcgi.BeginRequest) *Request {
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &Request{
		Serial:    s.serial.Add(1),
		ID:        id,
		Role:      b.Role,
		KeepConn:  b.KeepConn(),
		Body:      newSpool(s.SpoolMemory, *s.tempDir.Load(), &s.budget),
		Start:     time.Now(),
		ctx:       ctx,
		cancel:    cancel,
		conn:      c,
		stdinDone: make(chan struct{}),
		gone:      make(chan struct{}),
	}
	r.Stdout = &Stream{req: r, typ: fcgi.TypeStdout}
	r.Stderr = &Stream{req: r, typ: fcgi.TypeStderr}
	s.Stats.Accepted()
	return r
}

// statusText is net/http's reason phrase, or a generic one.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status " + strconv.Itoa(code)
}

// isTemporaryAccept reports accept errors that pass: out of descriptors or
// memory, or a connection reset before it was accepted.
func isTemporaryAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}
