// This file tests the record layer (headers, padding, the Reader's errors,
// stream splitting, the fixed-size bodies, the record type names) and the
// client side, ClientConn, against a small fake application.

package fcgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// readAll reads records until an error, copying each record's content
// because Record.Content is only valid until the next call to Next.
func readAll(t *testing.T, r io.Reader) ([]Record, error) {
	t.Helper()
	rd := NewReader(r)
	var recs []Record
	for {
		rec, err := rd.Next()
		if err != nil {
			return recs, err
		}
		rec.Content = bytes.Clone(rec.Content)
		recs = append(recs, rec)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		typ  RecType
		id   uint16
		n    int
	}{
		{"empty begin request id 1", TypeBeginRequest, 1, 0},
		{"management record id 0", TypeGetValues, NullRequestID, 17},
		{"max id", TypeStdout, 0xFFFF, 8},
		{"id with both bytes set", TypeStdin, 0x1234, 0x0102},
		{"max content", TypeStderr, 7, MaxContent},
		{"unknown type", RecType(200), 9, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendHeader(nil, tt.typ, tt.id, tt.n)
			if len(b) != HeaderLen {
				t.Fatalf("AppendHeader wrote %d bytes, want %d", len(b), HeaderLen)
			}
			if b[7] != 0 {
				t.Errorf("reserved byte = %#x, want 0", b[7])
			}
			got := ParseHeader(b)
			want := Header{
				Version:       Version1,
				Type:          tt.typ,
				RequestID:     tt.id,
				ContentLength: uint16(tt.n),
				PaddingLength: uint8(len(Padding(tt.n))),
			}
			if got != want {
				t.Errorf("ParseHeader(AppendHeader(...)) = %+v, want %+v", got, want)
			}
		})
	}
}

func TestParseHeaderIsBigEndian(t *testing.T) {
	got := ParseHeader([]byte{0x01, 0x06, 0xAB, 0xCD, 0x12, 0x34, 0x56, 0x99})
	want := Header{Version: 1, Type: TypeStdout, RequestID: 0xABCD, ContentLength: 0x1234, PaddingLength: 0x56}
	if got != want {
		t.Errorf("ParseHeader = %+v, want %+v", got, want)
	}
}

func TestAppendRecordPadsToMultipleOf8(t *testing.T) {
	tests := []struct {
		n, pad int
	}{
		{0, 0}, {1, 7}, {7, 1}, {8, 0}, {9, 7}, {MaxContent, 1},
	}
	for _, tt := range tests {
		content := bytes.Repeat([]byte{0xAA}, tt.n)
		b := AppendRecord([]byte("prefix"), TypeStdout, 1, content)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("n=%d: AppendRecord did not append to dst", tt.n)
		}
		b = b[len("prefix"):]
		if len(b)%8 != 0 {
			t.Errorf("n=%d: record is %d bytes, not a multiple of 8", tt.n, len(b))
		}
		if want := HeaderLen + tt.n + tt.pad; len(b) != want {
			t.Errorf("n=%d: record is %d bytes, want %d", tt.n, len(b), want)
		}
		h := ParseHeader(b)
		if int(h.ContentLength) != tt.n || int(h.PaddingLength) != tt.pad {
			t.Errorf("n=%d: header says content %d padding %d, want %d and %d",
				tt.n, h.ContentLength, h.PaddingLength, tt.n, tt.pad)
		}
		if !bytes.Equal(b[HeaderLen:HeaderLen+tt.n], content) {
			t.Errorf("n=%d: content not copied verbatim", tt.n)
		}
		if pad := b[HeaderLen+tt.n:]; !bytes.Equal(pad, make([]byte, tt.pad)) {
			t.Errorf("n=%d: padding = % x, want %d zero bytes", tt.n, pad, tt.pad)
		}
		if got := len(Padding(tt.n)); got != tt.pad {
			t.Errorf("len(Padding(%d)) = %d, want %d", tt.n, got, tt.pad)
		}
	}
}

// rawRecord builds a record by hand so the padding length and padding bytes
// can be anything a peer might send, not what AppendRecord chooses.
func rawRecord(version uint8, typ RecType, id uint16, content []byte, pad int, padByte byte) []byte {
	b := []byte{version, byte(typ), byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, bytes.Repeat([]byte{padByte}, pad)...)
}

func TestReaderSkipsAnyReceivedPadding(t *testing.T) {
	for pad := 0; pad <= 255; pad++ {
		var in []byte
		in = append(in, rawRecord(1, TypeStdout, 1, []byte("hello"), pad, 0xEE)...)
		// The second record proves the padding was skipped exactly: one byte
		// too few or too many would misalign its header.
		in = append(in, rawRecord(1, TypeEndRequest, 1, AppendEndRequest(nil, EndRequest{AppStatus: 7}), 0, 0)...)
		recs, err := readAll(t, bytes.NewReader(in))
		if err != io.EOF {
			t.Fatalf("pad=%d: stream ended with %v, want io.EOF", pad, err)
		}
		if len(recs) != 2 {
			t.Fatalf("pad=%d: read %d records, want 2", pad, len(recs))
		}
		if recs[0].Type != TypeStdout || string(recs[0].Content) != "hello" {
			t.Errorf("pad=%d: first record = %v %q, want STDOUT \"hello\"", pad, recs[0].Type, recs[0].Content)
		}
		if e, err := ParseEndRequest(recs[1].Content); recs[1].Type != TypeEndRequest || err != nil || e.AppStatus != 7 {
			t.Errorf("pad=%d: second record = %v %+v %v, want END_REQUEST appStatus 7", pad, recs[1].Type, e, err)
		}
	}
}

func TestReaderReadsRecordsDeliveredOneByteAtATime(t *testing.T) {
	var in []byte
	in = AppendRecord(in, TypeStdout, 3, []byte("abc"))
	in = AppendRecord(in, TypeStdout, 3, nil)
	in = AppendRecord(in, TypeStderr, 4, bytes.Repeat([]byte("x"), 1000))
	recs, err := readAll(t, iotest.OneByteReader(bytes.NewReader(in)))
	if err != io.EOF {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	want := []Record{
		{TypeStdout, 3, []byte("abc")},
		{TypeStdout, 3, []byte{}},
		{TypeStderr, 4, bytes.Repeat([]byte("x"), 1000)},
	}
	if !recordsEqual(recs, want) {
		t.Errorf("records = %v, want %v", recs, want)
	}
}

func recordsEqual(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].RequestID != b[i].RequestID || !bytes.Equal(a[i].Content, b[i].Content) {
			return false
		}
	}
	return true
}

var errBoom = errors.New("boom")

func TestReaderErrors(t *testing.T) {
	good := AppendRecord(nil, TypeStdout, 1, []byte("ok"))
	tests := []struct {
		name     string
		in       io.Reader
		wantRecs int
		wantErr  error
	}{
		{"empty stream is a clean EOF", bytes.NewReader(nil), 0, io.EOF},
		{"EOF right after a record", bytes.NewReader(good), 1, io.EOF},
		{"EOF after one header byte", bytes.NewReader(good[:1]), 0, io.ErrUnexpectedEOF},
		{"EOF after seven header bytes", bytes.NewReader(good[:7]), 0, io.ErrUnexpectedEOF},
		{"EOF inside the next header", bytes.NewReader(append(bytes.Clone(good), good[:3]...)), 1, io.ErrUnexpectedEOF},
		{"EOF right after the header", bytes.NewReader(good[:HeaderLen]), 0, io.ErrUnexpectedEOF},
		{"EOF inside the content", bytes.NewReader(good[:HeaderLen+1]), 0, io.ErrUnexpectedEOF},
		{"EOF inside the padding", bytes.NewReader(good[:len(good)-1]), 0, io.ErrUnexpectedEOF},
		{"EOF inside max-length content", bytes.NewReader(rawRecord(1, TypeStdin, 1, make([]byte, MaxContent), 255, 0)[:HeaderLen+MaxContent+254]), 0, io.ErrUnexpectedEOF},
		{"version 0", bytes.NewReader(rawRecord(0, TypeStdout, 1, nil, 0, 0)), 0, ErrVersion},
		{"version 2", bytes.NewReader(rawRecord(2, TypeStdout, 1, nil, 0, 0)), 0, ErrVersion},
		{"version 255 after a good record", bytes.NewReader(append(bytes.Clone(good), rawRecord(255, TypeStdout, 1, nil, 0, 0)...)), 1, ErrVersion},
		{"HTTP instead of FastCGI", bytes.NewReader([]byte("GET / HTTP/1.1\r\n\r\n")), 0, ErrVersion},
		{"transport error passes through", io.MultiReader(bytes.NewReader(good), iotest.ErrReader(errBoom)), 1, errBoom},
		{"transport error inside a body passes through", io.MultiReader(bytes.NewReader(good[:HeaderLen]), iotest.ErrReader(errBoom)), 0, errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := readAll(t, tt.in)
			if len(recs) != tt.wantRecs {
				t.Errorf("read %d records before the error, want %d", len(recs), tt.wantRecs)
			}
			// io.EOF must be returned bare: callers compare it with ==.
			if tt.wantErr == io.EOF && err != io.EOF {
				t.Errorf("err = %v, want io.EOF itself", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestAppendStreamSplitsAtMaxContent(t *testing.T) {
	tests := []struct {
		n     int
		sizes []int
	}{
		{0, nil},
		{1, []int{1}},
		{MaxContent, []int{MaxContent}},
		{MaxContent + 1, []int{MaxContent, 1}},
		{2*MaxContent + 10, []int{MaxContent, MaxContent, 10}},
	}
	for _, tt := range tests {
		p := make([]byte, tt.n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b := AppendStream(nil, TypeStdout, 5, p)
		recs, err := readAll(t, bytes.NewReader(b))
		if err != io.EOF {
			t.Fatalf("n=%d: reading the stream: %v", tt.n, err)
		}
		var sizes []int
		var joined []byte
		for _, r := range recs {
			if r.Type != TypeStdout || r.RequestID != 5 {
				t.Errorf("n=%d: record %v id %d, want STDOUT id 5", tt.n, r.Type, r.RequestID)
			}
			sizes = append(sizes, len(r.Content))
			joined = append(joined, r.Content...)
		}
		if !slices.Equal(sizes, tt.sizes) {
			t.Errorf("n=%d: record sizes %v, want %v", tt.n, sizes, tt.sizes)
		}
		if !bytes.Equal(joined, p) {
			t.Errorf("n=%d: records do not rejoin into the input", tt.n)
		}
	}
}

func TestBeginRequestRoundTrip(t *testing.T) {
	tests := []struct {
		b        BeginRequest
		keepConn bool
	}{
		{BeginRequest{Role: RoleResponder}, false},
		{BeginRequest{Role: RoleResponder, Flags: FlagKeepConn}, true},
		{BeginRequest{Role: RoleAuthorizer, Flags: 0xFE}, false},
		{BeginRequest{Role: RoleFilter, Flags: 0xFF}, true},
		{BeginRequest{Role: 0xABCD}, false},
	}
	for _, tt := range tests {
		body := AppendBeginRequest(nil, tt.b)
		if len(body) != 8 {
			t.Fatalf("%+v: body is %d bytes, want 8", tt.b, len(body))
		}
		if !bytes.Equal(body[3:], make([]byte, 5)) {
			t.Errorf("%+v: reserved bytes % x, want zeros", tt.b, body[3:])
		}
		got, err := ParseBeginRequest(body)
		if err != nil || got != tt.b {
			t.Errorf("ParseBeginRequest(AppendBeginRequest(%+v)) = %+v, %v", tt.b, got, err)
		}
		if got.KeepConn() != tt.keepConn {
			t.Errorf("%+v: KeepConn() = %v, want %v", tt.b, got.KeepConn(), tt.keepConn)
		}
	}
	// The role is big-endian on the wire.
	if got, _ := ParseBeginRequest([]byte{0, 1, 1, 0, 0, 0, 0, 0}); got != (BeginRequest{RoleResponder, FlagKeepConn}) {
		t.Errorf("nginx's BEGIN_REQUEST body decoded as %+v", got)
	}
}

func TestEndRequestRoundTrip(t *testing.T) {
	tests := []EndRequest{
		{},
		{AppStatus: 1, ProtocolStatus: CantMpxConn},
		{AppStatus: 0xDEADBEEF, ProtocolStatus: Overloaded},
		{AppStatus: 0xFFFFFFFF, ProtocolStatus: UnknownRole},
		{AppStatus: 256, ProtocolStatus: 200},
	}
	for _, e := range tests {
		body := AppendEndRequest(nil, e)
		if len(body) != 8 {
			t.Fatalf("%+v: body is %d bytes, want 8", e, len(body))
		}
		if !bytes.Equal(body[5:], make([]byte, 3)) {
			t.Errorf("%+v: reserved bytes % x, want zeros", e, body[5:])
		}
		got, err := ParseEndRequest(body)
		if err != nil || got != e {
			t.Errorf("ParseEndRequest(AppendEndRequest(%+v)) = %+v, %v", e, got, err)
		}
	}
	if got := AppendEndRequest(nil, EndRequest{AppStatus: 0x01020304, ProtocolStatus: Overloaded}); !bytes.Equal(got, []byte{1, 2, 3, 4, 2, 0, 0, 0}) {
		t.Errorf("END_REQUEST body = % x, want big-endian appStatus then protocolStatus", got)
	}
}

func TestUnknownTypeBody(t *testing.T) {
	for _, typ := range []RecType{0, TypeMaxType + 1, 0x80, 0xFF} {
		body := AppendUnknownType(nil, typ)
		want := []byte{byte(typ), 0, 0, 0, 0, 0, 0, 0}
		if !bytes.Equal(body, want) {
			t.Errorf("AppendUnknownType(%d) = % x, want % x", typ, body, want)
		}
		// It must travel as an ordinary record.
		recs, err := readAll(t, bytes.NewReader(AppendRecord(nil, TypeUnknownType, NullRequestID, body)))
		if err != io.EOF || len(recs) != 1 || recs[0].Type != TypeUnknownType || RecType(recs[0].Content[0]) != typ {
			t.Errorf("UNKNOWN_TYPE record for %d read back as %v, %v", typ, recs, err)
		}
	}
}

func TestShortBodiesAreErrShortBody(t *testing.T) {
	for n := 0; n < 8; n++ {
		body := make([]byte, n)
		if _, err := ParseBeginRequest(body); !errors.Is(err, ErrShortBody) {
			t.Errorf("ParseBeginRequest(%d bytes) err = %v, want ErrShortBody", n, err)
		}
		if _, err := ParseEndRequest(body); !errors.Is(err, ErrShortBody) {
			t.Errorf("ParseEndRequest(%d bytes) err = %v, want ErrShortBody", n, err)
		}
	}
}

func TestRecTypeString(t *testing.T) {
	tests := []struct {
		t    RecType
		want string
	}{
		{0, "type(0)"},
		{TypeBeginRequest, "BEGIN_REQUEST"},
		{TypeAbortRequest, "ABORT_REQUEST"},
		{TypeEndRequest, "END_REQUEST"},
		{TypeParams, "PARAMS"},
		{TypeStdin, "STDIN"},
		{TypeStdout, "STDOUT"},
		{TypeStderr, "STDERR"},
		{TypeData, "DATA"},
		{TypeGetValues, "GET_VALUES"},
		{TypeGetValuesResult, "GET_VALUES_RESULT"},
		{TypeUnknownType, "UNKNOWN_TYPE"},
		{12, "type(12)"},
		{255, "type(255)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("RecType(%d).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}

func TestRoleString(t *testing.T) {
	tests := []struct {
		r    Role
		want string
	}{
		{RoleResponder, "RESPONDER"},
		{RoleAuthorizer, "AUTHORIZER"},
		{RoleFilter, "FILTER"},
		{0, "role(0)"},
		{0xFFFF, "role(65535)"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Role(%d).String() = %q, want %q", uint16(tt.r), got, tt.want)
		}
	}
}

func TestIsManagement(t *testing.T) {
	tests := []struct {
		t    RecType
		want bool
	}{
		{TypeBeginRequest, false},
		{TypeAbortRequest, false},
		{TypeEndRequest, false},
		{TypeParams, false},
		{TypeStdin, false},
		{TypeStdout, false},
		{TypeStderr, false},
		{TypeData, false},
		{TypeGetValues, true},
		{TypeGetValuesResult, true},
		{TypeUnknownType, true},
		// Types beyond FCGI_MAXTYPE are answered with UNKNOWN_TYPE on id 0.
		{TypeMaxType + 1, true},
		{255, true},
	}
	for _, tt := range tests {
		if got := tt.t.IsManagement(); got != tt.want {
			t.Errorf("%v.IsManagement() = %v, want %v", tt.t, got, tt.want)
		}
	}
}

// transports are the two kinds of connection ClientConn is tested over:
// net.Pipe has no buffering at all, so every write waits for the reader and
// ordering bugs deadlock at once; a unix socketpair behaves like the sockets
// the bridge really uses, with kernel buffers and EOF/reset semantics.
var transports = []struct {
	name string
	pair func(t *testing.T) (client, app net.Conn)
}{
	{"pipe", func(t *testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
	{"unix", socketPair},
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close() // net.FileConn dups the descriptor
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// appRequest is what the fake application received for one request.
type appRequest struct {
	id     uint16
	begin  BeginRequest
	params []Pair
	stdin  []byte
}

// readRequest reads BEGIN_REQUEST and then the PARAMS stream, and the STDIN
// stream too when withStdin is set, as a FastCGI application does.
func readRequest(rd *Reader, withStdin bool) (appRequest, error) {
	var req appRequest
	rec, err := rd.Next()
	if err != nil {
		return req, err
	}
	if rec.Type != TypeBeginRequest {
		return req, errors.New("first record is " + rec.Type.String())
	}
	req.id = rec.RequestID
	if req.begin, err = ParseBeginRequest(rec.Content); err != nil {
		return req, err
	}
	var params []byte
	paramsDone, stdinDone := false, !withStdin
	for !paramsDone || !stdinDone {
		rec, err := rd.Next()
		if err != nil {
			return req, err
		}
		switch {
		case rec.RequestID != req.id:
			return req, errors.New("record for another request id")
		case rec.Type == TypeParams && !paramsDone:
			params = append(params, rec.Content...)
			paramsDone = len(rec.Content) == 0
		case rec.Type == TypeStdin && !stdinDone:
			req.stdin = append(req.stdin, rec.Content...)
			stdinDone = len(rec.Content) == 0
		default:
			return req, errors.New("unexpected " + rec.Type.String())
		}
	}
	req.params, err = ParsePairs(params)
	return req, err
}

// startApp runs app on the application end of a fresh connection and returns
// the client end. Cleanup closes both ends and then waits for app, so an app
// left blocked by the test's scenario is released rather than leaked.
func startApp(t *testing.T, pair func(*testing.T) (net.Conn, net.Conn), app func(conn net.Conn, rd *Reader)) *ClientConn {
	t.Helper()
	cc, ac := pair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		app(ac, NewReader(ac))
	}()
	t.Cleanup(func() {
		cc.Close()
		ac.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("fake application still running 5s after its connection closed")
		}
	})
	return NewClientConn(cc)
}

// send writes records built by build, ignoring errors: a fake application's
// write fails only when the test has already ended the exchange.
func send(conn net.Conn, build func(b []byte) []byte) { conn.Write(build(nil)) }

func TestWriteParamsSplitsLargeSetAndEndsWithEmptyRecord(t *testing.T) {
	pairs := []Pair{{"HTTP_COOKIE", strings.Repeat("c", 100_000)}, {"", ""}}
	for i := range 50 {
		pairs = append(pairs, Pair{"HTTP_X_" + strings.Repeat("H", i), strings.Repeat("v", 3*i)})
	}
	var enc []byte
	for _, p := range pairs {
		enc = AppendPair(enc, p.Name, p.Value)
	}
	if len(enc) <= 64<<10 || len(enc) > 2*MaxContent {
		t.Fatalf("test set encodes to %d bytes; want it between 64 KiB and two records", len(enc))
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			cc, ac := tr.pair(t)
			defer ac.Close()
			c := NewClientConn(cc)
			errc := make(chan error, 1)
			go func() {
				errc <- c.WriteParams(9, pairs)
				c.Close()
			}()
			raw, err := io.ReadAll(ac)
			if err != nil {
				t.Fatalf("reading what WriteParams sent: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("WriteParams: %v", err)
			}
			if len(raw)%8 != 0 {
				t.Errorf("%d bytes sent, not whole 8-byte-aligned records", len(raw))
			}
			recs, err := readAll(t, bytes.NewReader(raw))
			if err != io.EOF {
				t.Fatalf("reading records: %v", err)
			}
			var sizes []int
			var joined []byte
			for _, r := range recs {
				if r.Type != TypeParams || r.RequestID != 9 {
					t.Errorf("sent %v for id %d, want PARAMS for id 9", r.Type, r.RequestID)
				}
				sizes = append(sizes, len(r.Content))
				joined = append(joined, r.Content...)
			}
			if want := []int{MaxContent, len(enc) - MaxContent, 0}; !slices.Equal(sizes, want) {
				t.Errorf("record sizes %v, want %v", sizes, want)
			}
			got, err := ParsePairs(joined)
			if err != nil || !slices.Equal(got, pairs) {
				t.Errorf("joined PARAMS decode to %d pairs, %v; want the %d sent", len(got), err, len(pairs))
			}
		})
	}
}

func TestWriteStreamChunksThenEnds(t *testing.T) {
	tests := []struct {
		name  string
		body  io.Reader
		chunk int
		sizes []int
	}{
		{"8 KiB chunks as nginx sends", bytes.NewReader(make([]byte, 3*8192+100)), 8192, []int{8192, 8192, 8192, 100, 0}},
		{"exact multiple of the chunk", bytes.NewReader(make([]byte, 2*8192)), 8192, []int{8192, 8192, 0}},
		{"nil body sends only the end", nil, 8192, []int{0}},
		{"empty body sends only the end", bytes.NewReader(nil), 8192, []int{0}},
		{"chunk 0 means MaxContent", bytes.NewReader(make([]byte, 70000)), 0, []int{MaxContent, 70000 - MaxContent, 0}},
		{"negative chunk means MaxContent", bytes.NewReader(make([]byte, 70000)), -1, []int{MaxContent, 70000 - MaxContent, 0}},
		{"oversized chunk is capped at MaxContent", bytes.NewReader(make([]byte, 70000)), 1 << 20, []int{MaxContent, 70000 - MaxContent, 0}},
		{"short reads become short records", iotest.HalfReader(bytes.NewReader(make([]byte, 100))), 64, []int{32, 32, 32, 4, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, ac := net.Pipe()
			defer ac.Close()
			c := NewClientConn(cc)
			errc := make(chan error, 1)
			go func() {
				errc <- c.WriteStream(TypeStdin, 4, tt.body, tt.chunk)
				c.Close()
			}()
			recs, err := readAll(t, ac)
			if err != io.EOF {
				t.Fatalf("reading records: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("WriteStream: %v", err)
			}
			var sizes []int
			for _, r := range recs {
				if r.Type != TypeStdin || r.RequestID != 4 {
					t.Errorf("sent %v for id %d, want STDIN for id 4", r.Type, r.RequestID)
				}
				sizes = append(sizes, len(r.Content))
			}
			if !slices.Equal(sizes, tt.sizes) {
				t.Errorf("record sizes %v, want %v", sizes, tt.sizes)
			}
		})
	}
}

func TestWriteStreamWrapsBodyReadError(t *testing.T) {
	cc, ac := net.Pipe()
	defer ac.Close()
	go io.Copy(io.Discard, ac)
	c := NewClientConn(cc)
	defer c.Close()
	err := c.WriteStream(TypeStdin, 1, io.MultiReader(bytes.NewReader(make([]byte, 10)), iotest.ErrReader(errBoom)), 8192)
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "request body") {
		t.Errorf("err = %v, want the body's read error wrapped with context", err)
	}
}

// doParams is a realistic params set for Do tests.
var doParams = []Pair{
	{"SCRIPT_NAME", "/cgi-bin/t.cgi"},
	{"REQUEST_METHOD", "POST"},
	{"CONTENT_LENGTH", "20000"},
	{"QUERY_STRING", ""},
}

func TestDoReturnsEndRequestAndCopiesOutput(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 2000)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			reqc := make(chan appRequest, 1)
			c := startApp(t, tr.pair, func(conn net.Conn, rd *Reader) {
				req, err := readRequest(rd, true)
				if err != nil {
					t.Errorf("fake application: reading request: %v", err)
					return
				}
				reqc <- req
				send(conn, func(b []byte) []byte {
					b = AppendRecord(b, TypeStdout, req.id, []byte("Status: 200 OK\r\n"))
					// Records for other requests and management records
					// must not reach this request's output or end it.
					b = AppendRecord(b, TypeStdout, req.id+1, []byte("wrong stdout"))
					b = AppendRecord(b, TypeStderr, req.id+1, []byte("wrong stderr"))
					b = AppendRecord(b, TypeEndRequest, req.id+1, AppendEndRequest(nil, EndRequest{AppStatus: 99}))
					b = AppendRecord(b, TypeGetValuesResult, NullRequestID, AppendPair(nil, MaxConns, "1"))
					b = AppendRecord(b, TypeStderr, req.id, []byte("warning: "))
					b = AppendRecord(b, TypeStdout, req.id, []byte("\r\nhello"))
					b = AppendRecord(b, TypeStderr, req.id, []byte("slow disk"))
					b = AppendRecord(b, TypeStdout, req.id, nil)
					b = AppendRecord(b, TypeStderr, req.id, nil)
					return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{AppStatus: 3, ProtocolStatus: RequestComplete}))
				})
			})
			var stdout, stderr bytes.Buffer
			end, err := c.Do(testCtx(t), 1, RoleResponder, true, doParams, bytes.NewReader(body), &stdout, &stderr)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if want := (EndRequest{AppStatus: 3, ProtocolStatus: RequestComplete}); end != want {
				t.Errorf("Do returned %+v, want %+v", end, want)
			}
			if got, want := stdout.String(), "Status: 200 OK\r\n\r\nhello"; got != want {
				t.Errorf("stdout = %q, want %q", got, want)
			}
			if got, want := stderr.String(), "warning: slow disk"; got != want {
				t.Errorf("stderr = %q, want %q", got, want)
			}
			req := <-reqc
			if req.id != 1 || req.begin != (BeginRequest{RoleResponder, FlagKeepConn}) {
				t.Errorf("application saw id %d %+v, want id 1 RESPONDER with KEEP_CONN", req.id, req.begin)
			}
			if !slices.Equal(req.params, doParams) {
				t.Errorf("application saw params %q, want %q", req.params, doParams)
			}
			if !bytes.Equal(req.stdin, body) {
				t.Errorf("application saw a %d-byte body, want the %d bytes sent", len(req.stdin), len(body))
			}
		})
	}
}

func TestDoAcceptsAnswerBeforeBodyWhenPeerCloses(t *testing.T) {
	// A script may answer without reading its body (an error page for a
	// large upload); the application then closes. The response counts.
	body := make([]byte, 1<<20)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := startApp(t, tr.pair, func(conn net.Conn, rd *Reader) {
				req, err := readRequest(rd, false)
				if err != nil {
					t.Errorf("fake application: reading request: %v", err)
					return
				}
				send(conn, func(b []byte) []byte {
					b = AppendRecord(b, TypeStdout, req.id, []byte("Status: 413\r\n\r\n"))
					b = AppendRecord(b, TypeStdout, req.id, nil)
					return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{}))
				})
				conn.Close()
			})
			var stdout bytes.Buffer
			end, err := c.Do(testCtx(t), 1, RoleResponder, false, doParams, bytes.NewReader(body), &stdout, nil)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if end != (EndRequest{}) || stdout.String() != "Status: 413\r\n\r\n" {
				t.Errorf("Do = %+v with stdout %q, want the 413 response", end, stdout.String())
			}
		})
	}
}

func TestDoPeerClosesEarly(t *testing.T) {
	tests := []struct {
		name     string
		skipBody bool // the application never reads the 1 MiB body
		reply    func(b []byte, id uint16) []byte
		stdout   string
		wantErr  []error // any of these
	}{
		{
			name:    "closes before END_REQUEST",
			reply:   func(b []byte, id uint16) []byte { return AppendRecord(b, TypeStdout, id, []byte("partial")) },
			stdout:  "partial",
			wantErr: []error{ErrNoEnd},
		},
		{
			name:    "closes without answering",
			reply:   func(b []byte, id uint16) []byte { return b },
			wantErr: []error{ErrNoEnd},
		},
		{
			name: "closes after another request's END_REQUEST",
			reply: func(b []byte, id uint16) []byte {
				return AppendRecord(b, TypeEndRequest, id+1, AppendEndRequest(nil, EndRequest{}))
			},
			wantErr: []error{ErrNoEnd},
		},
		{
			// Ending inside a record is also an end before END_REQUEST.
			name: "closes inside a record",
			reply: func(b []byte, id uint16) []byte {
				return append(AppendHeader(b, TypeStdout, id, 100), "only ten b"...)
			},
			wantErr: []error{ErrNoEnd},
		},
		{
			// A crashed application leaves the body unread; a unix socket
			// then reports a reset rather than EOF: still ErrNoEnd.
			name:     "crashes without reading the body",
			skipBody: true,
			reply:    func(b []byte, id uint16) []byte { return b },
			wantErr:  []error{ErrNoEnd},
		},
		{
			name: "END_REQUEST with a short body",
			reply: func(b []byte, id uint16) []byte {
				return AppendRecord(b, TypeEndRequest, id, []byte{0, 0, 0})
			},
			wantErr: []error{ErrShortBody},
		},
	}
	for _, tr := range transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				c := startApp(t, tr.pair, func(conn net.Conn, rd *Reader) {
					req, err := readRequest(rd, !tt.skipBody)
					if err != nil {
						t.Errorf("fake application: reading request: %v", err)
						return
					}
					send(conn, func(b []byte) []byte { return tt.reply(b, req.id) })
					conn.Close()
				})
				var stdout bytes.Buffer
				body := []byte("body")
				if tt.skipBody {
					body = make([]byte, 1<<20)
				}
				_, err := c.Do(testCtx(t), 1, RoleResponder, false, doParams, bytes.NewReader(body), &stdout, io.Discard)
				t.Logf("Do err: %v", err)
				if !isAny(err, tt.wantErr) {
					t.Errorf("Do err = %v, want one of %v", err, tt.wantErr)
				}
				if stdout.String() != tt.stdout {
					t.Errorf("stdout = %q, want %q", stdout.String(), tt.stdout)
				}
			})
		}
	}
}

func isAny(err error, targets []error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func TestDoReturnsStdoutWriteError(t *testing.T) {
	c := startApp(t, transports[0].pair, func(conn net.Conn, rd *Reader) {
		req, err := readRequest(rd, true)
		if err != nil {
			return
		}
		send(conn, func(b []byte) []byte {
			b = AppendRecord(b, TypeStdout, req.id, []byte("x"))
			return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{}))
		})
	})
	_, err := c.Do(testCtx(t), 1, RoleResponder, false, nil, nil, errWriter{}, nil)
	if !errors.Is(err, errBoom) {
		t.Errorf("Do err = %v, want the stdout writer's error", err)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errBoom }

func TestDoReturnsContextErrorWhenCancelledMidRequest(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			started := make(chan struct{})
			c := startApp(t, tr.pair, func(conn net.Conn, rd *Reader) {
				req, err := readRequest(rd, true)
				if err != nil {
					t.Errorf("fake application: reading request: %v", err)
					return
				}
				send(conn, func(b []byte) []byte { return AppendRecord(b, TypeStdout, req.id, []byte("working")) })
				close(started)
				// A hung script: read until the client gives up.
				io.Copy(io.Discard, conn)
			})
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			go func() {
				<-started
				cancel()
			}()
			errc := make(chan error, 1)
			go func() {
				_, err := c.Do(ctx, 1, RoleResponder, false, doParams, nil, io.Discard, io.Discard)
				errc <- err
			}()
			select {
			case err := <-errc:
				if err != context.Canceled {
					t.Errorf("Do err = %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Do still running 5s after its context was cancelled")
			}
		})
	}
}

func TestDoReturnsDeadlineExceededWhenAppNeverAnswers(t *testing.T) {
	c := startApp(t, socketPair, func(conn net.Conn, rd *Reader) { io.Copy(io.Discard, conn) })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Do(ctx, 1, RoleResponder, false, doParams, nil, io.Discard, io.Discard)
	if err != context.DeadlineExceeded {
		t.Errorf("Do err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Do took %v to notice a 100ms deadline", d)
	}
}

func TestDoReturnsAtEndRequestWhenAppStopsReadingBody(t *testing.T) {
	// The application answers early and keeps the connection open without
	// reading the rest of the body. Do has its END_REQUEST and should return
	// it, not wait for a body write that can never finish.
	body := make([]byte, 4<<20)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			release := make(chan struct{})
			c := startApp(t, tr.pair, func(conn net.Conn, rd *Reader) {
				req, err := readRequest(rd, false)
				if err != nil {
					return
				}
				send(conn, func(b []byte) []byte {
					b = AppendRecord(b, TypeStdout, req.id, nil)
					return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{AppStatus: 5}))
				})
				// Hold the connection open, unread, until the test ends.
				<-release
			})
			t.Cleanup(func() { close(release) })
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			end, err := c.Do(ctx, 1, RoleResponder, true, doParams, bytes.NewReader(body), io.Discard, io.Discard)
			if err != nil || end.AppStatus != 5 {
				t.Errorf("Do = %+v, %v; want appStatus 5 and no error", end, err)
			}
		})
	}
}

// testCtx bounds an exchange so that a regression which deadlocks the
// client and the fake application fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestDoFailsPromptlyWhenAppBreaksProtocolWithoutReading pins that Do's
// error path does not wait on the body sender: an application that sends
// garbage and then holds the connection open without reading the rest of a
// large body once left Do blocked for good.
func TestDoFailsPromptlyWhenAppBreaksProtocolWithoutReading(t *testing.T) {
	body := make([]byte, 8<<20)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			release := make(chan struct{})
			c := startApp(t, tr.pair, func(conn net.Conn, rd *Reader) {
				if _, err := rd.Next(); err != nil {
					return
				}
				conn.Write([]byte("HTTP/1.1 200 OK\r\n\r\nnot FastCGI"))
				<-release
			})
			t.Cleanup(func() { close(release) })
			errc := make(chan error, 1)
			go func() {
				_, err := c.Do(testCtx(t), 1, RoleResponder, false, doParams, bufio.NewReader(bytes.NewReader(body)), io.Discard, io.Discard)
				errc <- err
			}()
			select {
			case err := <-errc:
				if err == nil || !errors.Is(err, ErrNoEnd) && !errors.Is(err, ErrVersion) {
					t.Errorf("Do err = %v, want a protocol error", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Do still waiting on its body sender 3s after the response failed")
			}
			if c.Usable() {
				t.Error("the connection is still reported usable after a failed exchange")
			}
		})
	}
}

// TestDoReportsACutConnection pins that a connection whose body had to be
// cut short after the response ended is reported unusable: a pool must not
// send the next request on it.
func TestDoReportsACutConnection(t *testing.T) {
	body := make([]byte, 4<<20)
	release := make(chan struct{})
	c := startApp(t, socketPair, func(conn net.Conn, rd *Reader) {
		req, err := readRequest(rd, false)
		if err != nil {
			return
		}
		send(conn, func(b []byte) []byte {
			b = AppendRecord(b, TypeStdout, req.id, nil)
			return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{}))
		})
		<-release
	})
	t.Cleanup(func() { close(release) })
	if _, err := c.Do(testCtx(t), 1, RoleResponder, true, doParams, bufio.NewReader(bytes.NewReader(body)), io.Discard, io.Discard); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if c.Usable() {
		t.Error("a connection whose body was cut short is reported usable")
	}
}

// TestDoSendsASmallBodyInOneWrite pins the fast path of persistent
// children: a request without a large body is one write, so the common
// request costs one system call to send.
func TestDoSendsASmallBodyInOneWrite(t *testing.T) {
	client, app := socketPair(t)
	cw := &countingConn{Conn: client}
	c := NewClientConn(cw)
	go func() {
		rd := NewReader(bufio.NewReader(app))
		req, err := readRequest(rd, true)
		if err != nil {
			return
		}
		send(app, func(b []byte) []byte {
			b = AppendRecord(b, TypeStdout, req.id, []byte("Status: 200\r\n\r\n"+string(req.stdin)))
			return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{}))
		})
	}()
	var out bytes.Buffer
	if _, err := c.Do(testCtx(t), 1, RoleResponder, false, doParams, bytes.NewReader([]byte("small body")), &out, nil); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if out.String() != "Status: 200\r\n\r\nsmall body" {
		t.Fatalf("stdout %q", out.String())
	}
	if n := cw.writes.Load(); n != 1 {
		t.Errorf("%d writes for a small request, want 1", n)
	}
	if !c.Usable() {
		t.Error("connection unusable after a clean exchange")
	}
}

type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestDoEnvSendsTheEnvironmentAsParams pins DoEnv's encoding, including
// params that need more than one record, and none at all.
func TestDoEnvSendsTheEnvironmentAsParams(t *testing.T) {
	big := strings.Repeat("v", 70000)
	for _, env := range [][]string{
		{"A=1", "EMPTY=", "WITH=EQUALS=IN"},
		{"BIG=" + big, "AFTER=x"},
		nil,
	} {
		reqc := make(chan appRequest, 1)
		c := startApp(t, socketPair, func(conn net.Conn, rd *Reader) {
			req, err := readRequest(rd, true)
			if err != nil {
				t.Errorf("reading request: %v", err)
				return
			}
			reqc <- req
			send(conn, func(b []byte) []byte {
				return AppendRecord(b, TypeEndRequest, req.id, AppendEndRequest(nil, EndRequest{}))
			})
		})
		if _, err := c.DoEnv(testCtx(t), 1, RoleResponder, false, env, nil, io.Discard, io.Discard); err != nil {
			t.Fatalf("DoEnv: %v", err)
		}
		req := <-reqc
		var want []Pair
		for _, kv := range env {
			n, v, _ := strings.Cut(kv, "=")
			want = append(want, Pair{n, v})
		}
		if !slices.Equal(req.params, want) {
			t.Fatalf("application saw %d params, want %d (%v)", len(req.params), len(want), env[:min(len(env), 1)])
		}
		c.Release()
	}
}
