// cgiresp.go holds the parser for the header block a CGI program writes at the
// start of its standard output, and the encoder that writes it back out normalised.

// Package cgiresp parses a CGI program's response header block (RFC 3875
// section 6) and re-encodes it for the front end. It knows nothing of FastCGI:
// the bridge feeds it the program's stdout and forwards what AppendHeader
// produces, followed by the body left unread in the reader.
package cgiresp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// DefaultMaxHeaderBytes is the header block limit used when Options.MaxHeaderBytes is 0.
const DefaultMaxHeaderBytes = 32 << 10

// Field is one response header line, name as the program wrote it.
type Field struct{ Name, Value string }

// Kind classifies a response per RFC 3875 section 6.2.
type Kind int

// The response kinds of RFC 3875 section 6.2.
const (
	// Document is an ordinary response with a body (6.2.1).
	Document Kind = iota
	// LocalRedirect is a Location with a local path and no other field, not
	// even Status (6.2.2):
	// the server, not the client, should fetch the new path.
	LocalRedirect
	// ClientRedirect is a Location the client must follow, with no other field (6.2.3).
	ClientRedirect
	// ClientRedirectDoc is a Location the client must follow, sent with a document (6.2.4).
	ClientRedirectDoc
)

// String names the kind for log lines.
func (k Kind) String() string {
	switch k {
	case Document:
		return "document"
	case LocalRedirect:
		return "local-redirect"
	case ClientRedirect:
		return "client-redirect"
	case ClientRedirectDoc:
		return "client-redirect-doc"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Head is a parsed response header block.
type Head struct {
	// Status is 100..599: from a Status field, an NPH status line, or implied
	// (200 for a document, 302 for any kind of redirect).
	Status int
	// Reason is the reason phrase: the program's, else net/http.StatusText's,
	// "" when the program gave none and the code is unknown.
	Reason string
	// Fields are the header fields in the program's order, Status removed (and
	// Connection and Keep-Alive removed after an NPH status line).
	Fields []Field
	// Kind classifies the response.
	Kind Kind
	// Location is the Location field's value, "" when there is none.
	Location string
	// Size is the number of bytes the header block, blank line included,
	// occupied in the input.
	Size int
}

// Options tunes ReadHead.
type Options struct {
	// MaxHeaderBytes caps the header block, blank line included;
	// DefaultMaxHeaderBytes when 0 or less.
	MaxHeaderBytes int
}

// ErrNoOutput means the program wrote nothing at all: EOF before the first byte.
var ErrNoOutput = errors.New("CGI program wrote no output")

// HeaderError reports output that is not a valid CGI header block.
type HeaderError struct {
	// Reason says what is wrong, for the log line.
	Reason string
	// Line is the offending line, cut to about 80 bytes, with every byte that
	// is not printable ASCII escaped so it is safe to log.
	Line string
}

// Error formats the reason and, when known, the offending line.
func (e *HeaderError) Error() string {
	if e.Line == "" {
		return "bad CGI response header: " + e.Reason
	}
	return "bad CGI response header: " + e.Reason + " in line \"" + e.Line + "\""
}

// ReadHead reads and parses the header block from br. On success the body
// follows, unread, in br: ReadHead consumes exactly Head.Size bytes and never
// asks br's source for more than it needs to find the blank line, so a program
// that writes its headers and then pauses is answered at once. Its errors are
// ErrNoOutput, a *HeaderError, or a wrapped read error from br.
func ReadHead(br *bufio.Reader, opt Options) (*Head, error) {
	p := parser{max: opt.MaxHeaderBytes, loc: -1}
	if p.max <= 0 {
		p.max = DefaultMaxHeaderBytes
	}
	for n := 0; ; n++ {
		start, end, err := p.nextLine(br)
		if err != nil {
			return nil, err
		}
		if start == end {
			if n == 0 {
				return nil, &HeaderError{Reason: "no header fields"}
			}
			return p.finish(), nil
		}
		if err := p.parseLine(n, start, end); err != nil {
			return nil, err
		}
	}
}

// AppendHeader appends the normalised header block to dst: "Status: NNN Reason\r\n",
// each field as "Name: Value\r\n", then "\r\n". A local redirect has no Status
// line, since one would make it a client redirect. h must hold what ReadHead
// produces (valid status, names and values); AppendHeader does not re-check it.
func (h *Head) AppendHeader(dst []byte) []byte {
	if h.Kind != LocalRedirect {
		dst = append(dst, "Status: "...)
		dst = strconv.AppendInt(dst, int64(h.Status), 10)
		if h.Reason != "" {
			dst = append(dst, ' ')
			dst = append(dst, h.Reason...)
		}
		dst = append(dst, "\r\n"...)
	}
	for _, f := range h.Fields {
		dst = append(dst, f.Name...)
		dst = append(dst, ':')
		if f.Value != "" {
			dst = append(dst, ' ')
			dst = append(dst, f.Value...)
		}
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// span locates one kept field inside parser.block, so that the whole block
// becomes one string at the end instead of two allocations per field.
type span struct{ name0, name1, val0, val1 int }

// parser holds the state of one ReadHead call.
type parser struct {
	max   int
	block []byte // the header block read so far, never longer than max
	spans []span
	loc   int // index in spans of the Location field, -1 when none

	haveStatus bool
	nph        bool // the first line was an HTTP status line
	status     int
	reason     string
}

// nextLine reads one line into p.block and returns where its content starts
// and ends, line terminator (LF or CRLF) excluded. ReadSlice hands out slices
// of br's own buffer, so nothing beyond the LF is taken from br and a line
// longer than br's buffer arrives in pieces that are checked against the limit
// before being kept.
func (p *parser) nextLine(br *bufio.Reader) (start, end int, err error) {
	start = len(p.block)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(p.block)+len(chunk) > p.max {
			return 0, 0, &HeaderError{
				Reason: fmt.Sprintf("header block larger than %d bytes", p.max),
				Line:   excerpt(p.block[start:], chunk),
			}
		}
		p.keep(chunk)
		switch {
		case err == nil:
			end = len(p.block) - 1
			if end > start && p.block[end-1] == '\r' {
				end--
			}
			return start, end, nil
		case errors.Is(err, bufio.ErrBufferFull):
			// The line goes on past br's buffer; keep collecting it.
		case errors.Is(err, io.EOF):
			if len(p.block) == 0 {
				return 0, 0, ErrNoOutput
			}
			return 0, 0, &HeaderError{
				Reason: "end of output inside the header block",
				Line:   excerpt(p.block[start:]),
			}
		default:
			return 0, 0, fmt.Errorf("read CGI response header: %w", err)
		}
	}
}

// keep appends b to p.block, growing it by doubling but never past p.max, so a
// huge header costs at most p.max bytes here. The caller has checked the limit.
func (p *parser) keep(b []byte) {
	need := len(p.block) + len(b)
	if need > cap(p.block) {
		c := min(max(2*cap(p.block), need, 512), p.max)
		nb := make([]byte, len(p.block), c)
		copy(nb, p.block)
		p.block = nb
	}
	p.block = append(p.block, b...)
}

// parseLine checks the n-th (0-based) non-empty line, block[start:end], and
// records what it says. Errors come out as soon as the line is complete, so a
// program that writes garbage and then stalls is reported without waiting.
func (p *parser) parseLine(n, start, end int) error {
	line := p.block[start:end]
	bad := func(reason string) error { return &HeaderError{Reason: reason, Line: excerpt(line)} }

	if line[0] == ' ' || line[0] == '\t' {
		return bad("continuation line (obs-fold) not allowed")
	}
	if n == 0 && bytes.HasPrefix(line, []byte("HTTP/")) {
		// An NPH program, or one that imitates one: nginx would turn this into
		// a 200, so the status is taken from here instead.
		code, reason, ok := parseStatusLine(line)
		if !ok {
			return bad("invalid status line " + quote(line))
		}
		p.haveStatus, p.nph, p.status, p.reason = true, true, code, reason
		return nil
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return bad("header line without a colon")
	}
	name := line[:colon]
	if len(name) == 0 {
		return bad("empty header field name")
	}
	if !isToken(name) {
		return bad("invalid header field name " + quote(name))
	}
	v0, v1 := colon+1, len(line)
	for v0 < v1 && isOWS(line[v0]) {
		v0++
	}
	for v1 > v0 && isOWS(line[v1-1]) {
		v1--
	}
	value := line[v0:v1]
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return bad(fmt.Sprintf("control byte 0x%02x in the value of %s", c, quote(name)))
		}
	}

	switch {
	case asciiEqualFold(name, "Status"):
		if p.haveStatus {
			return bad("duplicate Status")
		}
		code, reason, ok := parseStatus(value)
		if !ok {
			return bad("invalid Status " + quote(value))
		}
		p.haveStatus, p.status, p.reason = true, code, reason
		return nil
	case p.nph && (asciiEqualFold(name, "Connection") || asciiEqualFold(name, "Keep-Alive")):
		// Hop-by-hop fields written for a raw HTTP connection; forwarded by the
		// front end they would describe the wrong connection.
		return nil
	case asciiEqualFold(name, "Location"):
		if p.loc >= 0 {
			return bad("duplicate Location")
		}
		if len(value) == 0 {
			return bad("empty Location")
		}
		if bytes.IndexByte(value, ' ') >= 0 || bytes.IndexByte(value, '\t') >= 0 {
			return bad("invalid Location " + quote(value))
		}
		p.loc = len(p.spans)
	}
	p.spans = append(p.spans, span{start, start + colon, start + v0, start + v1})
	return nil
}

// finish builds the Head once the blank line has been read.
func (p *parser) finish() *Head {
	s := string(p.block)
	h := &Head{Size: len(p.block), Fields: make([]Field, len(p.spans))}
	for i, sp := range p.spans {
		h.Fields[i] = Field{Name: s[sp.name0:sp.name1], Value: s[sp.val0:sp.val1]}
	}
	h.Kind = Document
	if p.loc >= 0 {
		h.Location = h.Fields[p.loc].Value
		switch {
		case len(h.Fields) > 1:
			// Other fields make it a document for the client, whatever the path.
			h.Kind = ClientRedirectDoc
		case isLocalPath(h.Location) && !p.haveStatus:
			// RFC 3875 6.2.2: a local redirect is a Location and nothing
			// else. A Status (CGI.pm's redirect('/x') sends "Status: 302")
			// asks for a redirect of the client (6.2.3).
			h.Kind = LocalRedirect
		default:
			h.Kind = ClientRedirect
		}
	}
	h.Status, h.Reason = p.status, p.reason
	if !p.haveStatus {
		h.Status = http.StatusOK
		if h.Kind != Document {
			// RFC 3875 6.2.3/6.2.4 want 302 for a client redirect; a local
			// redirect gets it too, so a front end that does not redirect
			// internally (nginx does not) still sends the client somewhere.
			h.Status = http.StatusFound
		}
	}
	if h.Reason == "" {
		h.Reason = http.StatusText(h.Status)
	}
	return h
}

// parseStatus parses a Status value: "DDD" or "DDD SP reason", 100..599.
// The value has already been checked for control bytes and trimmed.
func parseStatus(v []byte) (code int, reason string, ok bool) {
	if len(v) < 3 || (len(v) > 3 && v[3] != ' ') {
		return 0, "", false
	}
	for _, c := range v[:3] {
		if c < '0' || c > '9' {
			return 0, "", false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return 0, "", false
	}
	if len(v) > 3 {
		reason = string(v[4:])
	}
	return code, reason, true
}

// parseStatusLine parses "HTTP/D.D DDD [reason]" (or "HTTP/D DDD ..."), trailing
// whitespace ignored, with the same rules for code and reason as a Status value.
func parseStatusLine(line []byte) (code int, reason string, ok bool) {
	rest := line[len("HTTP/"):]
	switch {
	case len(rest) >= 4 && isDigit(rest[0]) && rest[1] == '.' && isDigit(rest[2]) && rest[3] == ' ':
		rest = rest[4:]
	case len(rest) >= 2 && isDigit(rest[0]) && rest[1] == ' ':
		rest = rest[2:]
	default:
		return 0, "", false
	}
	for len(rest) > 0 && isOWS(rest[len(rest)-1]) {
		rest = rest[:len(rest)-1]
	}
	for _, c := range rest {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return 0, "", false
		}
	}
	return parseStatus(rest)
}

// isLocalPath reports whether a Location is a local path for an internal
// redirect (RFC 3875 6.2.2). "//host/..." is excluded: it names another host.
func isLocalPath(loc string) bool {
	return len(loc) > 0 && loc[0] == '/' && (len(loc) == 1 || loc[1] != '/')
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// isToken reports whether b is an RFC 9110 token (section 5.6.2).
func isToken(b []byte) bool {
	for _, c := range b {
		if !isTchar(c) {
			return false
		}
	}
	return len(b) > 0
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// asciiEqualFold compares a field name with a known one, ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// excerptMax is roughly how many bytes of an offending line go into a log line.
const excerptMax = 80

// excerpt renders the start of a line (given in pieces) for a log line: every
// byte outside printable ASCII, and '"' and '\\', is escaped, and the result is
// cut near excerptMax bytes with "..." marking the cut.
func excerpt(parts ...[]byte) string {
	var out []byte
	for _, part := range parts {
		for _, c := range part {
			if len(out) >= excerptMax {
				return string(out) + "..."
			}
			switch {
			case c == '"' || c == '\\':
				out = append(out, '\\', c)
			case c < ' ' || c >= 0x7f:
				out = fmt.Appendf(out, `\x%02x`, c)
			default:
				out = append(out, c)
			}
		}
	}
	return string(out)
}

// quote renders a name or value inside a HeaderError reason.
func quote(b []byte) string { return `"` + excerpt(b) + `"` }
