// This file holds the fuzz targets for the two parsers that read what a peer
// sends: the record reader and the name-value pair decoder. Their seeds live
// in testdata/fuzz/ and run in every `go test`.

package fcgi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary bytes to the Reader. Whatever it accepts must be
// within the protocol's limits and survive re-encoding unchanged; whatever it
// refuses must be refused with one of its documented errors.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data))
		var recs []Record
		consumed := 0
		var err error
		for {
			var rec Record
			rec, err = rd.Next()
			if err != nil {
				break
			}
			if len(rec.Content) > MaxContent {
				t.Fatalf("record %d carries %d bytes, over MaxContent", len(recs), len(rec.Content))
			}
			// The padding length is not in Record, so recover this record's
			// size on the wire from its header to account for every byte.
			h := ParseHeader(data[consumed:])
			if int(h.ContentLength) != len(rec.Content) || h.Type != rec.Type || h.RequestID != rec.RequestID {
				t.Fatalf("record %d = %v id %d len %d, but its header says %+v", len(recs), rec.Type, rec.RequestID, len(rec.Content), h)
			}
			if !bytes.Equal(rec.Content, data[consumed+HeaderLen:consumed+HeaderLen+len(rec.Content)]) {
				t.Fatalf("record %d content is not the bytes after its header", len(recs))
			}
			consumed += HeaderLen + int(h.ContentLength) + int(h.PaddingLength)
			rec.Content = bytes.Clone(rec.Content)
			recs = append(recs, rec)
		}
		switch {
		case err == io.EOF:
			if consumed != len(data) {
				t.Fatalf("clean EOF after %d of %d bytes", consumed, len(data))
			}
		case err == io.ErrUnexpectedEOF, errors.Is(err, ErrVersion):
			if consumed == len(data) {
				t.Fatalf("%v with no bytes left after the last record", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}

		var enc []byte
		for _, r := range recs {
			enc = AppendRecord(enc, r.Type, r.RequestID, r.Content)
		}
		if len(enc)%8 != 0 {
			t.Fatalf("re-encoded stream is %d bytes, not 8-byte aligned", len(enc))
		}
		again, err := readAll(t, bytes.NewReader(enc))
		if err != io.EOF {
			t.Fatalf("reading the re-encoded records: %v", err)
		}
		if !recordsEqual(again, recs) {
			t.Fatalf("re-encoded records read back as %v, want %v", again, recs)
		}
	})
}

// FuzzPairs feeds arbitrary bytes to the pair decoder. It must never panic;
// a refusal is ErrPairs; what it accepts must re-encode, in the shortest
// length form, to no more bytes than came in and decode to the same pairs.
func FuzzPairs(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var pairs []Pair
		err := ForEachPair(data, func(name, value []byte) error {
			pairs = append(pairs, Pair{string(name), string(value)})
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrPairs) {
				t.Fatalf("ForEachPair err = %v, want ErrPairs", err)
			}
			return
		}
		var enc []byte
		for _, p := range pairs {
			enc = AppendPair(enc, p.Name, p.Value)
		}
		if len(enc) > len(data) {
			t.Fatalf("shortest re-encoding is %d bytes, longer than the %d decoded", len(enc), len(data))
		}
		again, err := ParsePairs(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoded pairs: %v", err)
		}
		if !slices.Equal(again, pairs) {
			t.Fatalf("re-encoded pairs decode to %q, want %q", again, pairs)
		}
	})
}

// FuzzClientResponse feeds arbitrary bytes to Do as a warm child's answer:
// whatever a malicious or broken application sends, Do returns — with an
// error or a response — and never panics or hangs.
func FuzzClientResponse(f *testing.F) {
	ok := AppendRecord(nil, TypeStdout, 1, []byte("Status: 200\r\n\r\nhi"))
	ok = AppendRecord(ok, TypeStdout, 1, nil)
	ok = AppendRecord(ok, TypeEndRequest, 1, AppendEndRequest(nil, EndRequest{}))
	f.Add(ok)
	f.Add(AppendRecord(nil, TypeEndRequest, 2, AppendEndRequest(nil, EndRequest{})))
	f.Add(append(AppendHeader(nil, TypeStdout, 1, 100), "short"...))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	f.Add([]byte{})
	f.Add(AppendRecord(nil, TypeGetValuesResult, 0, AppendPair(nil, MaxConns, "1")))
	f.Fuzz(func(t *testing.T, reply []byte) {
		for _, strict := range []bool{false, true} {
			client, app := net.Pipe()
			go func() {
				defer app.Close()
				go io.Copy(io.Discard, app)
				app.Write(reply)
			}()
			c := NewClientConn(client)
			c.Strict = strict
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.Do(ctx, 1, RoleResponder, false, []Pair{{Name: "A", Value: "b"}}, nil, io.Discard, io.Discard)
			timedOut := ctx.Err() != nil
			cancel()
			client.Close()
			if timedOut {
				t.Fatalf("Do hung on %q (strict %v): %v", reply, strict, err)
			}
		}
	})
}
