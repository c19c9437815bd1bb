// cgiresp_test.go pins ReadHead's rules and AppendHeader's encoding with table-driven tests.

package cgiresp

import (
	"bufio"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readers builds the ways a test feeds input to ReadHead: a tiny bufio buffer
// (lines arrive in ErrBufferFull pieces), the default one, and a source that
// yields one byte per Read (the header arrives across many reads).
var readers = []struct {
	name string
	mk   func(string) *bufio.Reader
}{
	{"buf16", func(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) }},
	{"buf4096", func(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }},
	{"onebyte", func(s string) *bufio.Reader {
		return bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(s)), 16)
	}},
}

func TestReadHeadAccepts(t *testing.T) {
	type F = Field
	tests := []struct {
		name     string
		head     string // the header block; Size must equal its length
		body     string // must be left in the reader untouched
		max      int
		status   int
		reason   string
		fields   []Field
		kind     Kind
		location string
	}{
		{name: "document with LF line ends", head: "Content-Type: text/plain\n\n", body: "hello",
			status: 200, reason: "OK", fields: []F{{"Content-Type", "text/plain"}}},
		{name: "document with CRLF line ends", head: "Content-Type: text/plain\r\nX-A: 1\r\n\r\n", body: "hello\r\n",
			status: 200, reason: "OK", fields: []F{{"Content-Type", "text/plain"}, {"X-A", "1"}}},
		{name: "LF and CRLF mixed, CRLF blank line", head: "Content-Type: a\nX-A: 1\r\nX-B: 2\n\r\n", body: "b",
			status: 200, reason: "OK", fields: []F{{"Content-Type", "a"}, {"X-A", "1"}, {"X-B", "2"}}},
		{name: "CRLF fields and LF blank line", head: "Content-Type: a\r\n\n", body: "\r\nb",
			status: 200, reason: "OK", fields: []F{{"Content-Type", "a"}}},
		{name: "optional whitespace around value trimmed, inner kept", head: "X-A: \t v a\tl \t\n\n",
			status: 200, reason: "OK", fields: []F{{"X-A", "v a\tl"}}},
		{name: "no whitespace after colon", head: "X-A:v\n\n",
			status: 200, reason: "OK", fields: []F{{"X-A", "v"}}},
		{name: "empty value kept", head: "X-Empty:\nX-Blank:   \n\n",
			status: 200, reason: "OK", fields: []F{{"X-Empty", ""}, {"X-Blank", ""}}},
		{name: "value may contain colons", head: "X-Time: 12:30:00\n\n",
			status: 200, reason: "OK", fields: []F{{"X-Time", "12:30:00"}}},
		{name: "names keep their case and fields their order", head: "content-TYPE: a\nX-B: 2\nX-A: 1\nX-B: 3\n\n",
			status: 200, reason: "OK", fields: []F{{"content-TYPE", "a"}, {"X-B", "2"}, {"X-A", "1"}, {"X-B", "3"}}},
		{name: "all token characters allowed in a name", head: "!#$%&'*+-.^_`|~09azAZ: x\n\n",
			status: 200, reason: "OK", fields: []F{{"!#$%&'*+-.^_`|~09azAZ", "x"}}},
		{name: "non-ASCII bytes allowed in a value", head: "X-U: caf\xc3\xa9 \xff\n\n",
			status: 200, reason: "OK", fields: []F{{"X-U", "caf\xc3\xa9 \xff"}}},
		{name: "body starting with blank lines stays in the reader", head: "A: b\n\n", body: "\n\r\n\nrest\n",
			status: 200, reason: "OK", fields: []F{{"A", "b"}}},
		{name: "binary body stays in the reader", head: "A: b\r\n\r\n", body: "\x00\xff\r\n\r\nStatus: 500\n\n",
			status: 200, reason: "OK", fields: []F{{"A", "b"}}},

		{name: "Status with reason sets status and is removed", head: "Status: 404 Not Here\nContent-Type: x\n\n",
			status: 404, reason: "Not Here", fields: []F{{"Content-Type", "x"}}},
		{name: "Status without reason gets the standard reason", head: "Content-Type: x\nStatus: 404\n\n",
			status: 404, reason: "Not Found", fields: []F{{"Content-Type", "x"}}},
		{name: "Status alone is a valid block", head: "Status: 204\r\n\r\n",
			status: 204, reason: "No Content", fields: []F{}},
		{name: "Status name is case-insensitive", head: "sTaTuS: 201\n\n",
			status: 201, reason: "Created", fields: []F{}},
		{name: "Status of unknown code has empty reason", head: "Status: 599\n\n",
			status: 599, reason: "", fields: []F{}},
		{name: "Status 100 is the lowest accepted", head: "Status: 100\n\n",
			status: 100, reason: "Continue", fields: []F{}},
		{name: "Status reason keeps inner spacing and tabs", head: "Status: 200  all\tgood \n\n",
			status: 200, reason: " all\tgood", fields: []F{}},
		{name: "Status reason may contain non-ASCII", head: "Status: 418 Je suis th\xc3\xa9i\xc3\xa8re\n\n",
			status: 418, reason: "Je suis th\xc3\xa9i\xc3\xa8re", fields: []F{}},

		{name: "NPH status line HTTP/1.0 with reason", head: "HTTP/1.0 201 Made\nContent-Type: x\n\n", body: "b",
			status: 201, reason: "Made", fields: []F{{"Content-Type", "x"}}},
		{name: "NPH status line HTTP/1.1 without reason", head: "HTTP/1.1 201\r\nContent-Type: x\r\n\r\n",
			status: 201, reason: "Created", fields: []F{{"Content-Type", "x"}}},
		{name: "NPH status line alone", head: "HTTP/1.1 204 No Content\r\n\r\n",
			status: 204, reason: "No Content", fields: []F{}},
		{name: "NPH status line with one-digit version", head: "HTTP/2 503\n\n",
			status: 503, reason: "Service Unavailable", fields: []F{}},
		{name: "NPH status line drops Connection and Keep-Alive",
			head:   "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: x\r\nkeep-alive: timeout=5\r\n\r\n",
			status: 200, reason: "OK", fields: []F{{"Content-Type", "x"}}},
		{name: "without NPH status line Connection is kept", head: "Connection: close\nContent-Type: x\n\n",
			status: 200, reason: "OK", fields: []F{{"Connection", "close"}, {"Content-Type", "x"}}},

		{name: "local path alone is a local redirect with 302", head: "Location: /other?q=1\n\n",
			status: 302, reason: "Found", fields: []F{{"Location", "/other?q=1"}},
			kind: LocalRedirect, location: "/other?q=1"},
		{name: "local redirect with CRLF", head: "location: /\r\n\r\n", body: "ignored",
			status: 302, reason: "Found", fields: []F{{"location", "/"}}, kind: LocalRedirect, location: "/"},
		// CGI.pm's redirect('/x') prints exactly this. RFC 3875 6.2.2 makes only a
		// response of Location alone a local redirect: with Status it goes to the
		// client (6.2.3), as nginx would send it.
		{name: "Status with a local path is a client redirect", head: "Status: 302 Found\nLocation: /x\n\n",
			status: 302, reason: "Found", fields: []F{{"Location", "/x"}}, kind: ClientRedirect, location: "/x"},
		{name: "Status 303 with a local path is a client redirect", head: "Status: 303\nLocation: /x\n\n",
			status: 303, reason: "See Other", fields: []F{{"Location", "/x"}}, kind: ClientRedirect, location: "/x"},
		{name: "absolute URI alone is a client redirect with 302", head: "Location: https://example.com/a?b\n\n",
			status: 302, reason: "Found", fields: []F{{"Location", "https://example.com/a?b"}},
			kind: ClientRedirect, location: "https://example.com/a?b"},
		{name: "client redirect keeps a given Status", head: "Location: http://e/\nStatus: 301 Gone Away\n\n",
			status: 301, reason: "Gone Away", fields: []F{{"Location", "http://e/"}},
			kind: ClientRedirect, location: "http://e/"},
		{name: "absolute URI with other fields is a client redirect with document",
			head: "Location: http://e/\nContent-Type: text/html\n\n", body: "<a href=http://e/>here</a>",
			status: 302, reason: "Found", fields: []F{{"Location", "http://e/"}, {"Content-Type", "text/html"}},
			kind: ClientRedirectDoc, location: "http://e/"},
		{name: "local path with other fields goes to the client as a document",
			head:   "Content-Type: text/html\nLocation: /x\n\n",
			status: 302, reason: "Found", fields: []F{{"Content-Type", "text/html"}, {"Location", "/x"}},
			kind: ClientRedirectDoc, location: "/x"},
		{name: "NPH status line and a local path is a client redirect",
			head:   "HTTP/1.1 307 Temporary Redirect\nConnection: close\nLocation: /x\n\n",
			status: 307, reason: "Temporary Redirect", fields: []F{{"Location", "/x"}},
			kind: ClientRedirect, location: "/x"},
		{name: "network-path Location is a client redirect", head: "Location: //other.example/\n\n",
			status: 302, reason: "Found", fields: []F{{"Location", "//other.example/"}},
			kind: ClientRedirect, location: "//other.example/"},
		{name: "relative Location is passed to the client", head: "Location: next.html\n\n",
			status: 302, reason: "Found", fields: []F{{"Location", "next.html"}},
			kind: ClientRedirect, location: "next.html"},
		{name: "3xx Status without Location stays a document", head: "Status: 304\n\n",
			status: 304, reason: "Not Modified", fields: []F{}},

		{name: "block of exactly MaxHeaderBytes is accepted", max: 16, head: "X-Abcdefghi: 1\n\n", // 14+2 bytes
			body: "body", status: 200, reason: "OK", fields: []F{{"X-Abcdefghi", "1"}}},
	}
	for _, tc := range tests {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				br := rd.mk(tc.head + tc.body)
				h, err := ReadHead(br, Options{MaxHeaderBytes: tc.max})
				if err != nil {
					t.Fatalf("ReadHead(%q) error: %v", tc.head, err)
				}
				if h.Status != tc.status || h.Reason != tc.reason {
					t.Errorf("status = %d %q, want %d %q", h.Status, h.Reason, tc.status, tc.reason)
				}
				if !slices.Equal(h.Fields, tc.fields) {
					t.Errorf("fields = %q, want %q", h.Fields, tc.fields)
				}
				if h.Kind != tc.kind || h.Location != tc.location {
					t.Errorf("kind, location = %v %q, want %v %q", h.Kind, h.Location, tc.kind, tc.location)
				}
				if h.Size != len(tc.head) {
					t.Errorf("size = %d, want %d", h.Size, len(tc.head))
				}
				rest, err := io.ReadAll(br)
				if err != nil || string(rest) != tc.body {
					t.Errorf("body left in reader = %q, %v; want %q", rest, err, tc.body)
				}
			})
		}
	}
}

func TestReadHeadRejects(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name   string
		in     string
		max    int
		reason string // exact HeaderError.Reason
	}{
		{"blank first line LF", "\nbody", 0, "no header fields"},
		{"blank first line CRLF", "\r\n\r\nbody", 0, "no header fields"},
		{"EOF after a complete line", "Content-Type: x\n", 0, "end of output inside the header block"},
		{"EOF in the middle of a line", "Content-Type: x", 0, "end of output inside the header block"},
		{"EOF after CR of the blank line", "Content-Type: x\r\n\r", 0, "end of output inside the header block"},
		{"plain text instead of headers", "hello world\n\n", 0, "header line without a colon"},
		{"line without colon after good lines", "A: 1\nB\n\n", 0, "header line without a colon"},
		{"obs-fold continuation line", "X-A: 1\n  more\n\n", 0, "continuation line (obs-fold) not allowed"},
		{"first line starting with tab", "\tX-A: 1\n\n", 0, "continuation line (obs-fold) not allowed"},
		{"space before colon", "X-A : 1\n\n", 0, `invalid header field name "X-A "`},
		{"empty name", ": v\n\n", 0, "empty header field name"},
		{"non-token name", "X(A): 1\n\n", 0, `invalid header field name "X(A)"`},
		{"non-ASCII name", "X-\xc3\xa9: 1\n\n", 0, `invalid header field name "X-\xc3\xa9"`},
		{"NUL in value", "X-A: a\x00b\n\n", 0, `control byte 0x00 in the value of "X-A"`},
		{"CR inside value", "X-A: a\rb\r\n\r\n", 0, `control byte 0x0d in the value of "X-A"`},
		{"CR CR LF line end", "X-A: a\r\r\n\r\n", 0, `control byte 0x0d in the value of "X-A"`},
		{"ESC in value", "X-A: \x1b[31m\n\n", 0, `control byte 0x1b in the value of "X-A"`},
		{"DEL in value", "X-A: a\x7f\n\n", 0, `control byte 0x7f in the value of "X-A"`},

		{"Status not a number", "Status: abc\n\n", 0, `invalid Status "abc"`},
		{"Status empty", "Status:\n\n", 0, `invalid Status ""`},
		{"Status two digits", "Status: 20\n\n", 0, `invalid Status "20"`},
		{"Status four digits", "Status: 2000\n\n", 0, `invalid Status "2000"`},
		{"Status below 100", "Status: 099\n\n", 0, `invalid Status "099"`},
		{"Status above 599", "Status: 600 Big\n\n", 0, `invalid Status "600 Big"`},
		{"Status reason without space", "Status: 200OK\n\n", 0, `invalid Status "200OK"`},
		{"Status reason after tab", "Status: 200\tOK\n\n", 0, `invalid Status "200\x09OK"`},
		{"Status with sign", "Status: +20\n\n", 0, `invalid Status "+20"`},
		{"Status duplicated", "Status: 200\nStatus: 200\n\n", 0, "duplicate Status"},
		{"Status after NPH status line", "HTTP/1.1 200 OK\nStatus: 404\n\n", 0, "duplicate Status"},
		{"NPH status line without code", "HTTP/1.1\n\n", 0, `invalid status line "HTTP/1.1"`},
		{"NPH status line with bad code", "HTTP/1.1 abc\n\n", 0, `invalid status line "HTTP/1.1 abc"`},
		{"NPH status line with code out of range", "HTTP/1.0 700 X\n\n", 0, `invalid status line "HTTP/1.0 700 X"`},
		{"NPH status line with bad version", "HTTP/x.y 200\n\n", 0, `invalid status line "HTTP/x.y 200"`},
		{"NPH status line with double space", "HTTP/1.1  200\n\n", 0, `invalid status line "HTTP/1.1  200"`},
		{"NPH status line with control byte", "HTTP/1.1 200 O\x01K\n\n", 0, `invalid status line "HTTP/1.1 200 O\x01K"`},
		{"status line not on the first line", "A: 1\nHTTP/1.1 200 OK\n\n", 0, "header line without a colon"},

		{"empty Location", "Location:\n\n", 0, "empty Location"},
		{"blank Location", "Location: \t \n\n", 0, "empty Location"},
		{"Location with space", "Location: /a b\n\n", 0, `invalid Location "/a b"`},
		{"Location with tab", "Location: /a\tb\n\n", 0, `invalid Location "/a\x09b"`},
		{"Location with control byte", "Location: /a\x01b\n\n", 0, `control byte 0x01 in the value of "Location"`},
		{"Location duplicated", "Location: /a\nlocation: /b\n\n", 0, "duplicate Location"},

		{"one long line over the limit", "X-A: " + long + "\n\n", 64, "header block larger than 64 bytes"},
		{"many short lines over the limit", strings.Repeat("A: 1\n", 20) + "\n", 64, "header block larger than 64 bytes"},
		{"blank line one byte past the limit", "X-Abcdefghij: 1\n\n", 16, "header block larger than 16 bytes"},
		{"over the default limit", "X-A: " + strings.Repeat(long, 400) + "\n\n", 0, "header block larger than 32768 bytes"},
	}
	for _, tc := range tests {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				h, err := ReadHead(rd.mk(tc.in), Options{MaxHeaderBytes: tc.max})
				var he *HeaderError
				if !errors.As(err, &he) {
					t.Fatalf("ReadHead(%q) = %+v, %v; want HeaderError %q", tc.in, h, err, tc.reason)
				}
				if h != nil {
					t.Errorf("head = %+v alongside an error", h)
				}
				if he.Reason != tc.reason {
					t.Errorf("reason = %q, want %q", he.Reason, tc.reason)
				}
			})
		}
	}
}

func TestReadHeadNoOutput(t *testing.T) {
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			h, err := ReadHead(rd.mk(""), Options{})
			if !errors.Is(err, ErrNoOutput) || h != nil {
				t.Fatalf("ReadHead(empty) = %v, %v; want ErrNoOutput", h, err)
			}
		})
	}
}

// TestHeaderErrorLineIsShortAndPrintable pins that the offending line is safe
// to put in a log line whatever the program wrote.
func TestHeaderErrorLineIsShortAndPrintable(t *testing.T) {
	tests := []struct {
		name, in, line string
	}{
		{"short line verbatim", "hello world\n\n", "hello world"},
		{"controls, quotes and non-ASCII escaped", "X-A: \"a\\\x00\xc3\xa9\n\n", `X-A: \"a\\\x00\xc3\xa9`},
		{"long line cut at 80 bytes", strings.Repeat("y", 200) + "\n\n", strings.Repeat("y", 80) + "..."},
		{"line over the limit cut too", "X: " + strings.Repeat("z", 40000) + "\n\n", "X: " + strings.Repeat("z", 77) + "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadHead(bufio.NewReaderSize(strings.NewReader(tc.in), 16), Options{})
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error = %v, want HeaderError", err)
			}
			if he.Line != tc.line {
				t.Errorf("Line = %q, want %q", he.Line, tc.line)
			}
			for _, c := range []byte(he.Error()) {
				if c < ' ' || c >= 0x7f {
					t.Fatalf("Error() has unprintable byte 0x%02x: %q", c, he.Error())
				}
			}
		})
	}
}

// TestReadHeadReturnsBeforeBodyArrives pins that the header is available as
// soon as its blank line is written: streaming output must not wait for more.
func TestReadHeadReturnsBeforeBodyArrives(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() { _, _ = pw.Write([]byte("Content-Type: text/event-stream\r\n\r\ndata: 1\n")) }()
	got := make(chan error, 1)
	go func() {
		br := bufio.NewReader(pr)
		h, err := ReadHead(br, Options{})
		if err == nil && h.Size != len("Content-Type: text/event-stream\r\n\r\n") {
			err = errors.New("wrong size")
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("ReadHead: %v", err)
		}
	case <-time.After(5 * time.Second):
		pw.CloseWithError(errors.New("test gave up"))
		t.Fatal("ReadHead waited for more output after the blank line")
	}
}

// TestReadHeadRejectsBadLineWithoutWaiting pins that garbage is reported when
// its line ends, not when the program finally exits.
func TestReadHeadRejectsBadLineWithoutWaiting(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() { _, _ = pw.Write([]byte("Hello, world!\n")) }()
	got := make(chan error, 1)
	go func() {
		_, err := ReadHead(bufio.NewReader(pr), Options{})
		got <- err
	}()
	select {
	case err := <-got:
		var he *HeaderError
		if !errors.As(err, &he) || he.Reason != "header line without a colon" {
			t.Fatalf("error = %v, want HeaderError about the colon", err)
		}
	case <-time.After(5 * time.Second):
		pw.CloseWithError(errors.New("test gave up"))
		t.Fatal("ReadHead waited for more output after an invalid line")
	}
}

// endless is a source that never ends and never writes a newline, counting
// what was taken from it.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n += len(p)
	return len(p), nil
}

// TestReadHeadEndlessLineIsBounded pins that a program writing one endless
// line costs about MaxHeaderBytes of reading and memory, then an error.
func TestReadHeadEndlessLineIsBounded(t *testing.T) {
	const limit = 64 << 10
	src := &endless{}
	br := bufio.NewReaderSize(src, 4096)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadHead(br, Options{MaxHeaderBytes: limit})
	runtime.ReadMemStats(&after)
	var he *HeaderError
	if !errors.As(err, &he) || !strings.HasPrefix(he.Reason, "header block larger than") {
		t.Fatalf("error = %v, want a too-large HeaderError", err)
	}
	if src.n > limit+2*4096 {
		t.Errorf("read %d bytes from the source, want at most about %d", src.n, limit)
	}
	// Growing a buffer by doubling to the limit allocates about twice the
	// limit in all, and TotalAlloc is process-wide: 4x still tells a bounded
	// parser from one whose memory grows with the input (this source never
	// ends).
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*limit {
		t.Errorf("allocated %d bytes, want at most about %d", alloc, 2*limit)
	}
}

// failing returns its data, then a read error that is not EOF.
type failing struct {
	data string
	err  error
}

func (f *failing) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReadHeadWrapsReadErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, data := range []string{"", "Content-Type: x\n", "Content-Ty"} {
		_, err := ReadHead(bufio.NewReader(&failing{data, boom}), Options{})
		var he *HeaderError
		if !errors.Is(err, boom) || errors.As(err, &he) || errors.Is(err, ErrNoOutput) {
			t.Errorf("after %q: error = %v, want the read error wrapped", data, err)
		}
	}
}

func TestAppendHeader(t *testing.T) {
	tests := []struct {
		name string
		head Head
		want string
	}{
		{"status, reason and fields in order",
			Head{Status: 404, Reason: "Not Found", Fields: []Field{{"Content-Type", "text/plain"}, {"x-a", "1"}}},
			"Status: 404 Not Found\r\nContent-Type: text/plain\r\nx-a: 1\r\n\r\n"},
		{"empty reason leaves no trailing space",
			Head{Status: 599, Fields: []Field{{"A", "b"}}},
			"Status: 599\r\nA: b\r\n\r\n"},
		{"empty value leaves no trailing space",
			Head{Status: 200, Reason: "OK", Fields: []Field{{"X-Empty", ""}}},
			"Status: 200 OK\r\nX-Empty:\r\n\r\n"},
		{"no fields",
			Head{Status: 204, Reason: "No Content"},
			"Status: 204 No Content\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.head.AppendHeader([]byte("prefix|"))
			if string(got) != "prefix|"+tc.want {
				t.Errorf("AppendHeader = %q, want %q", got, "prefix|"+tc.want)
			}
		})
	}
}

// TestAppendHeaderNormalisesReadHead pins the whole path the bridge takes:
// an NPH, LF-terminated block comes out as a Status line and CRLF fields.
func TestAppendHeaderNormalisesReadHead(t *testing.T) {
	in := "HTTP/1.1 201\nConnection: keep-alive\nContent-Type:text/plain  \nLocation: http://e/x\n\nbody"
	h, err := ReadHead(bufio.NewReader(strings.NewReader(in)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "Status: 201 Created\r\nContent-Type: text/plain\r\nLocation: http://e/x\r\n\r\n"
	if got := string(h.AppendHeader(nil)); got != want {
		t.Errorf("AppendHeader = %q, want %q", got, want)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		Document: "document", LocalRedirect: "local-redirect", ClientRedirect: "client-redirect",
		ClientRedirectDoc: "client-redirect-doc", Kind(9): "kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
