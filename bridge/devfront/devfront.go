// Package devfront is the development HTTP front end (--http): a small web
// server in the same process that forwards each request to the bridge's own
// FastCGI server, over an in-memory connection, with the params nginx's
// fastcgi_params would send. It lets one command serve a cgi-bin directory
// in a browser with no web server installed. It is a development aid, not a
// production web server: no TLS, no static files, no access control.
package devfront

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cgibridge/cgibridge/bridge/cgiresp"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/hashicorp/go-hclog"
)

// pipeListener is a net.Listener whose connections are made in-process.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial makes a connection to the server behind the listener.
func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "http-front-end" }

// Front forwards HTTP requests as FastCGI requests to the server that
// serves its Listener.
type Front struct {
	ln   *pipeListener
	root string
	log  hclog.Logger
	// Describe, when set, says for the index page how the program name
	// (relative to the root) would run, or why it would be refused.
	// Neither may contain an absolute path.
	Describe func(name string) (how, refused string)
}

// New returns a front end for the cgi-bin root.
func New(root string, log hclog.Logger) *Front {
	return &Front{ln: newPipeListener(), root: root, log: log}
}

// Listener is what the FastCGI server serves for the front end.
func (f *Front) Listener() net.Listener { return f.ln }

// ServeHTTP forwards one request.
func (f *Front) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/" && f.root != "" {
		f.index(w)
		return
	}
	nc, err := f.ln.dial(req.Context())
	if err != nil {
		http.Error(w, "bridge unavailable", http.StatusServiceUnavailable)
		return
	}
	defer nc.Close()
	c := fcgi.NewClientConn(nc)

	pr, pw := io.Pipe()
	defer pr.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(req.Context(), 1, fcgi.RoleResponder, false, f.params(req), req.Body, pw, stderrLog{f.log})
		pw.CloseWithError(err)
		done <- err
	}()
	if err := relayResponse(w, pr); err != nil {
		f.log.Debug("response not relayed", "uri", req.RequestURI, "error", err)
	}
	pr.Close()
	<-done
}

// relayResponse parses the CGI header block the bridge produced and streams
// the body to the HTTP client, flushing as it comes.
func relayResponse(w http.ResponseWriter, r io.Reader) error {
	br := bufio.NewReaderSize(r, 32<<10)
	head, err := cgiresp.ReadHead(br, cgiresp.Options{})
	if err != nil {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return err
	}
	for _, f := range head.Fields {
		w.Header().Add(f.Name, f.Value)
	}
	w.WriteHeader(head.Status)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// params builds what nginx would send with Debian's fastcgi_params and
// SCRIPT_FILENAME $document_root$fastcgi_script_name.
func (f *Front) params(req *http.Request) []fcgi.Pair {
	root := f.root
	host, port, _ := net.SplitHostPort(req.RemoteAddr)
	laddr, _ := req.Context().Value(http.LocalAddrContextKey).(net.Addr)
	shost, sport := "", ""
	if laddr != nil {
		shost, sport, _ = net.SplitHostPort(laddr.String())
	}
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	cl := ""
	if req.ContentLength > 0 {
		cl = strconv.FormatInt(req.ContentLength, 10)
	}
	p := []fcgi.Pair{
		{Name: "QUERY_STRING", Value: req.URL.RawQuery},
		{Name: "REQUEST_METHOD", Value: req.Method},
		{Name: "CONTENT_TYPE", Value: req.Header.Get("Content-Type")},
		{Name: "CONTENT_LENGTH", Value: cl},
		{Name: "SCRIPT_NAME", Value: req.URL.Path},
		{Name: "REQUEST_URI", Value: req.RequestURI},
		{Name: "DOCUMENT_URI", Value: req.URL.Path},
		{Name: "DOCUMENT_ROOT", Value: root},
		{Name: "SERVER_PROTOCOL", Value: req.Proto},
		{Name: "REQUEST_SCHEME", Value: scheme},
		{Name: "GATEWAY_INTERFACE", Value: "CGI/1.1"},
		{Name: "SERVER_SOFTWARE", Value: "cgibridge-http"},
		{Name: "REMOTE_ADDR", Value: host},
		{Name: "REMOTE_PORT", Value: port},
		{Name: "SERVER_ADDR", Value: shost},
		{Name: "SERVER_PORT", Value: sport},
		{Name: "SERVER_NAME", Value: hostOnly(req.Host)},
		{Name: "REDIRECT_STATUS", Value: "200"},
		{Name: "SCRIPT_FILENAME", Value: root + path.Clean("/"+req.URL.Path)},
	}
	names := make([]string, 0, len(req.Header))
	for name := range req.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "Content-Type" || name == "Content-Length" {
			continue
		}
		env := "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		for _, v := range req.Header[name] {
			p = append(p, fcgi.Pair{Name: env, Value: v})
		}
	}
	return append(p, fcgi.Pair{Name: "HTTP_HOST", Value: req.Host})
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// index lists the root's programs so the examples can be clicked through,
// each with how it runs or why it would be refused (that refusal also gets
// a log line). It shows names relative to the root, never the root's path.
func (f *Front) index(w http.ResponseWriter) {
	entries, err := os.ReadDir(f.root)
	if err != nil {
		f.log.Error("cannot list the root for the index page", "error", err)
		http.Error(w, "cannot list the root (the log says why)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, "<!doctype html><title>cgibridge</title><h1>cgibridge</h1><p>Development front end. The programs in the root:</p><ul>\n")
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		n := html.EscapeString(e.Name())
		how, refused := "", ""
		if f.Describe != nil {
			how, refused = f.Describe(e.Name())
		}
		switch {
		case refused != "":
			f.log.Info("index: this program would be refused", "name", e.Name(), "reason", refused)
			fmt.Fprintf(w, "<li><a href=\"/%s\">%s</a> — <em>refused: %s</em></li>\n", n, n, html.EscapeString(refused))
		case how != "":
			fmt.Fprintf(w, "<li><a href=\"/%s\">%s</a> — %s</li>\n", n, n, html.EscapeString(how))
		default:
			fmt.Fprintf(w, "<li><a href=\"/%s\">%s</a></li>\n", n, n)
		}
	}
	fmt.Fprint(w, "</ul>\n")
}

// stderrLog logs STDERR records the bridge sends back; the bridge logs the
// same lines itself unless --stderr=fcgi.
type stderrLog struct{ log hclog.Logger }

func (s stderrLog) Write(p []byte) (int, error) {
	s.log.Debug("stderr record", "text", strings.TrimSpace(string(p)))
	return len(p), nil
}
