// This file holds the tests of requests as real front ends send them: nginx's
// request id 1 with KEEP_CONN off and on, record padding in both directions,
// params split across records, management records and roles.

package conformance

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

func TestKeepConnOffClosesAfterEndRequest(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48000 bytes: six 8 KiB records
	send(t, c, 1, false, mode("echo"), body)
	resp := readResponse(t, c, 1)
	if got, want := string(resp.stdout), okHeader+string(body); got != want {
		t.Fatalf("got %d bytes of STDOUT, want %d", len(got), len(want))
	}
	if resp.end != (fcgi.EndRequest{}) {
		t.Fatalf("END_REQUEST %+v, want app status 0, protocol status REQUEST_COMPLETE", resp.end)
	}
	// With KEEP_CONN off nginx waits for EOF; nothing may follow the end.
	expectClosed(t, c, 2*time.Second)
}

func TestKeepConnOnServesSequentialRequestsWithID1(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	for i, body := range []string{"first", "", strings.Repeat("third", 5000)} {
		send(t, c, 1, true, mode("echo"), []byte(body))
		resp := readResponse(t, c, 1)
		if got, want := string(resp.stdout), okHeader+body; got != want {
			t.Fatalf("request %d: got %d bytes, want %d", i, len(got), len(want))
		}
		if resp.end != (fcgi.EndRequest{}) {
			t.Fatalf("request %d: END_REQUEST %+v", i, resp.end)
		}
	}
	// Still open, and nothing was sent after the last END_REQUEST.
	assertQuiet(t, c)
}

func TestServerRecordsArePaddedToEight(t *testing.T) {
	ts := start(t, &bridge.Server{})
	nc, err := net.Dial("unix", ts.sock)
	must(t, err)
	defer nc.Close()
	c := fcgi.NewClientConn(nc)
	// Odd sizes everywhere: a 13-byte body, and GET_VALUES whose reply
	// length is not a multiple of 8.
	must(t, c.WriteRecord(fcgi.TypeGetValues, 0, fcgi.AppendPair(nil, fcgi.MpxsConns, "")))
	send(t, c, 1, false, mode("echo"), []byte("thirteen byte"))
	nc.SetReadDeadline(time.Now().Add(ioTimeout))
	var types []fcgi.RecType
	for {
		hb := make([]byte, fcgi.HeaderLen)
		if _, err := io.ReadFull(nc, hb); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		h := fcgi.ParseHeader(hb)
		if total := int(h.ContentLength) + int(h.PaddingLength); total%8 != 0 {
			t.Errorf("%v record: content %d + padding %d is not a multiple of 8", h.Type, h.ContentLength, h.PaddingLength)
		}
		if _, err := io.CopyN(io.Discard, nc, int64(h.ContentLength)+int64(h.PaddingLength)); err != nil {
			t.Fatal(err)
		}
		types = append(types, h.Type)
	}
	if len(types) < 4 || types[0] != fcgi.TypeGetValuesResult || types[len(types)-1] != fcgi.TypeEndRequest {
		t.Fatalf("record types %v: want GET_VALUES_RESULT, STDOUT…, END_REQUEST", types)
	}
}

func TestOddClientPaddingAccepted(t *testing.T) {
	for _, pad := range []int{0, 3, 7, 255} {
		ts := start(t, &bridge.Server{})
		c := ts.dial(t)
		var b []byte
		b = append(b, rawRecord(1, fcgi.TypeBeginRequest, 1, fcgi.AppendBeginRequest(nil, fcgi.BeginRequest{Role: fcgi.RoleResponder}), pad)...)
		b = append(b, rawRecord(1, fcgi.TypeParams, 1, encodeParams(mode("echo")), pad)...)
		b = append(b, rawRecord(1, fcgi.TypeParams, 1, nil, pad)...)
		b = append(b, rawRecord(1, fcgi.TypeStdin, 1, []byte("odd"), pad)...)
		b = append(b, rawRecord(1, fcgi.TypeStdin, 1, []byte("ly padded"), 255-pad)...)
		b = append(b, rawRecord(1, fcgi.TypeStdin, 1, nil, pad)...)
		must(t, c.WriteRaw(b))
		resp := readResponse(t, c, 1)
		if got, want := string(resp.stdout), okHeader+"oddly padded"; got != want {
			t.Fatalf("padding %d: got %q, want %q", pad, got, want)
		}
	}
}

func TestParamsSplitAcrossRecords(t *testing.T) {
	pairs := append(mode("params"),
		fcgi.Pair{Name: "HTTP_LONG_VALUE", Value: strings.Repeat("v", 300)},
		fcgi.Pair{Name: strings.Repeat("N", 200), Value: "long name"},
		fcgi.Pair{Name: "EMPTY", Value: ""},
	)
	enc := encodeParams(pairs)
	// Offsets of interesting places in enc.
	longAt := len(encodeParams(pairs[:4])) // start of HTTP_LONG_VALUE's pair
	nameAt := len(encodeParams(pairs[:5])) // start of the 200-byte name's pair
	// A pair with a 4-byte name length and a 4-byte value length although
	// both are short: legal, and some encoders do it.
	fourByte := []byte{0x80, 0, 0, 5, 0x80, 0, 0, 3}
	fourByte = append(fourByte, "SHORTabc"...)

	tests := []struct {
		name    string
		records [][]byte
		extra   string
	}{
		{"split inside a 4-byte value length", [][]byte{enc[:longAt+3], enc[longAt+3:]}, ""},
		{"split inside a 4-byte name length", [][]byte{enc[:nameAt+2], enc[nameAt+2:]}, ""},
		{"split inside a name", [][]byte{enc[:nameAt+4+1+50], enc[nameAt+4+1+50:]}, ""},
		{"split inside a value", [][]byte{enc[:longAt+1+4+15+100], enc[longAt+1+4+15+100:]}, ""},
		{"one byte per record", splitEvery(enc, 1), ""},
		{"4-byte lengths for short name and value", [][]byte{enc, fourByte[:6], fourByte[6:]}, "SHORT=abc\n"},
	}
	ts := start(t, &bridge.Server{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dial(t)
			must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, false))
			for _, r := range tt.records {
				must(t, c.WriteRecord(fcgi.TypeParams, 1, r))
			}
			must(t, c.WriteRecord(fcgi.TypeParams, 1, nil))
			must(t, c.WriteRecord(fcgi.TypeStdin, 1, nil))
			var want strings.Builder
			want.WriteString(okHeader)
			for _, p := range pairs {
				want.WriteString(p.Name + "=" + p.Value + "\n")
			}
			want.WriteString(tt.extra)
			if got := string(readResponse(t, c, 1).stdout); got != want.String() {
				t.Fatalf("handler saw params\n%q\nwant\n%q", got, want.String())
			}
		})
	}
}

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

func TestParamsOverLimitAnswered431(t *testing.T) {
	big := []fcgi.Pair{{Name: "HTTP_COOKIE", Value: strings.Repeat("c", 3000)}}
	tests := []struct {
		name    string
		records [][]byte
	}{
		{"one record", [][]byte{encodeParams(append(mode("echo"), big...))}},
		{"many small records", splitEvery(encodeParams(append(mode("echo"), big...)), 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := start(t, &bridge.Server{MaxParamsBytes: 1024})
			c := ts.dial(t)
			must(t, c.WriteBeginRequest(1, fcgi.RoleResponder, true))
			for _, r := range tt.records {
				must(t, c.WriteRecord(fcgi.TypeParams, 1, r))
			}
			must(t, c.WriteRecord(fcgi.TypeParams, 1, nil))
			must(t, c.WriteStream(fcgi.TypeStdin, 1, strings.NewReader("body"), 8192))
			resp := readResponse(t, c, 1)
			if !bytes.HasPrefix(resp.stdout, []byte("Status: 431")) {
				t.Fatalf("STDOUT %q, want a Status: 431 response", resp.stdout)
			}
			if n, ended, ref := ts.probe.calls.Load(), ts.probe.ended.Load(), ts.probe.refused.Load(); n != 1 || ended != 1 || ref != 431 {
				t.Fatalf("handler called %d times (%d already refused, Refused()=%d); want once, seeing the 431", n, ended, ref)
			}
			// The refusal does not cost the kept connection.
			echo(t, c, true, "after 431")
		})
	}
}

// Regression test: an AUTHORIZER request whose params passed MaxParamsBytes
// was never answered, because the refusal path skipped the "authorizers get
// no STDIN" step and run() waited for a STDIN end that never comes.
func TestAuthorizerParamsOverLimitAnswered431(t *testing.T) {
	ts := start(t, &bridge.Server{MaxParamsBytes: 1024})
	c := ts.dial(t)
	must(t, c.WriteBeginRequest(1, fcgi.RoleAuthorizer, false))
	must(t, c.WriteParams(1, append(mode("authorize"), fcgi.Pair{Name: "HTTP_COOKIE", Value: strings.Repeat("c", 3000)})))
	c.Conn().SetReadDeadline(time.Now().Add(time.Second))
	rec, err := c.Next()
	if err != nil {
		t.Fatalf("no answer within 1s to an over-limit AUTHORIZER request: %v", err)
	}
	if rec.Type != fcgi.TypeStdout || !bytes.HasPrefix(rec.Content, []byte("Status: 431")) {
		t.Fatalf("first record %v %q, want STDOUT with Status: 431", rec.Type, rec.Content)
	}
}

func TestGetValuesAnswersOnlyKnownNamesAsked(t *testing.T) {
	ts := start(t, &bridge.Server{MaxConns: 7})
	c := ts.dial(t)
	var q []byte
	q = fcgi.AppendPair(q, fcgi.MaxConns, "")
	q = fcgi.AppendPair(q, "X_NO_SUCH_VARIABLE", "")
	q = fcgi.AppendPair(q, fcgi.MpxsConns, "")
	must(t, c.WriteRecord(fcgi.TypeGetValues, 0, q))
	rec := next(t, c)
	if rec.Type != fcgi.TypeGetValuesResult || rec.ID != 0 {
		t.Fatalf("got %v on id %d, want GET_VALUES_RESULT on id 0", rec.Type, rec.ID)
	}
	got, err := fcgi.ParsePairs(rec.Content)
	must(t, err)
	want := map[string]string{fcgi.MaxConns: "7", fcgi.MpxsConns: "1"}
	if len(got) != len(want) {
		t.Fatalf("reply %v, want exactly %v", got, want)
	}
	for _, p := range got {
		if v, ok := want[p.Name]; !ok || v != p.Value {
			t.Fatalf("reply %v, want exactly %v", got, want)
		}
	}
	echo(t, c, false, "still serving")
}

func TestUnknownManagementTypeAnsweredUnknownType(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	must(t, c.WriteRecord(99, 0, []byte("whatever")))
	rec := next(t, c)
	if rec.Type != fcgi.TypeUnknownType || rec.ID != 0 {
		t.Fatalf("got %v on id %d, want UNKNOWN_TYPE on id 0", rec.Type, rec.ID)
	}
	if len(rec.Content) != 8 || rec.Content[0] != 99 {
		t.Fatalf("UNKNOWN_TYPE body % x, want type byte 99 then 7 reserved bytes", rec.Content)
	}
	echo(t, c, false, "still serving")
}

func TestRecordsForUnknownIDsIgnored(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	// Id 9 was never begun; id 1 is begun only later.
	must(t, c.WriteRecord(fcgi.TypeParams, 9, encodeParams(mode("echo"))))
	must(t, c.WriteRecord(fcgi.TypeParams, 9, nil))
	must(t, c.WriteRecord(fcgi.TypeStdin, 9, []byte("stray")))
	must(t, c.WriteRecord(fcgi.TypeStdin, 9, nil))
	must(t, c.WriteRecord(fcgi.TypeData, 9, []byte("stray")))
	must(t, c.WriteRecord(fcgi.TypeAbortRequest, 9, nil))
	must(t, c.WriteRecord(fcgi.TypeStdin, 1, []byte("early")))
	echo(t, c, true, "served")
	assertQuiet(t, c)
	if n := ts.probe.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

func TestAuthorizerNeedsNoStdin(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	must(t, c.WriteBeginRequest(1, fcgi.RoleAuthorizer, true))
	must(t, c.WriteParams(1, mode("authorize")))
	resp := readResponse(t, c, 1)
	if got, want := string(resp.stdout), "Status: 200\r\nVariable-USER: alice\r\n\r\n"; got != want {
		t.Fatalf("STDOUT %q, want %q", got, want)
	}
	if resp.end != (fcgi.EndRequest{}) {
		t.Fatalf("END_REQUEST %+v", resp.end)
	}
	echo(t, c, true, "responder after authorizer")
}

func TestFilterRoleRefusedUnknownRole(t *testing.T) {
	ts := start(t, &bridge.Server{})
	c := ts.dial(t)
	must(t, c.WriteBeginRequest(1, fcgi.RoleFilter, true))
	resp := readResponse(t, c, 1)
	if !bytes.HasPrefix(resp.stdout, []byte("Status: 501")) {
		t.Fatalf("STDOUT %q, want Status: 501 before END_REQUEST", resp.stdout)
	}
	if resp.end.ProtocolStatus != fcgi.UnknownRole {
		t.Fatalf("protocol status %d, want UNKNOWN_ROLE (%d)", resp.end.ProtocolStatus, fcgi.UnknownRole)
	}
	// The rest of the FILTER request, as a front end would still send it,
	// is ignored and the connection serves the next request.
	must(t, c.WriteParams(1, mode("echo")))
	must(t, c.WriteStream(fcgi.TypeStdin, 1, strings.NewReader("in"), 0))
	must(t, c.WriteStream(fcgi.TypeData, 1, strings.NewReader("data"), 0))
	assertQuiet(t, c)
	echo(t, c, true, "next")
	if n := ts.probe.calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (only the RESPONDER)", n)
	}
}
