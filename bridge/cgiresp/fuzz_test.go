// fuzz_test.go holds FuzzReadHead; its seeds live in testdata/fuzz/FuzzReadHead/.

package cgiresp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// FuzzReadHead checks that ReadHead never panics, that it reports only its
// documented errors, that the result does not depend on the reader's buffer
// size, that exactly the header block is consumed, and that AppendHeader's
// output parses back to the same response.
func FuzzReadHead(f *testing.F) {
	// A small limit so the fuzzer reaches the too-large path quickly.
	opt := Options{MaxHeaderBytes: 1024}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		h, err := ReadHead(br, opt)
		big, bigErr := ReadHead(bufio.NewReaderSize(bytes.NewReader(data), 8192), opt)
		if err != nil {
			var he *HeaderError
			switch {
			case errors.Is(err, ErrNoOutput):
				if len(data) != 0 {
					t.Fatalf("ErrNoOutput for %d bytes of output", len(data))
				}
			case !errors.As(err, &he):
				t.Fatalf("undocumented error %T: %v", err, err)
			}
			if bigErr == nil || bigErr.Error() != err.Error() {
				t.Fatalf("error depends on buffer size: %v vs %v", err, bigErr)
			}
			return
		}
		if bigErr != nil || !sameHead(h, big) || h.Size != big.Size {
			t.Fatalf("result depends on buffer size: %+v vs %+v, %v", h, big, bigErr)
		}
		if h.Status < 100 || h.Status > 599 || h.Size > opt.MaxHeaderBytes || h.Size > len(data) {
			t.Fatalf("out of range: status %d, size %d of %d", h.Status, h.Size, len(data))
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data[h.Size:]) {
			t.Fatalf("body left in reader = %q, want %q", rest, data[h.Size:])
		}

		out := h.AppendHeader(nil)
		again, err := ReadHead(bufio.NewReader(bytes.NewReader(out)), Options{MaxHeaderBytes: len(out)})
		if err != nil {
			t.Fatalf("AppendHeader output %q does not parse: %v", out, err)
		}
		if !sameHead(h, again) || again.Size != len(out) {
			t.Fatalf("round trip changed the response:\n in %+v\nout %+v", h, again)
		}
	})
}

// sameHead compares what a front end sees of a response; Size is left out as
// it describes the input, not the response.
func sameHead(a, b *Head) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.Kind == b.Kind &&
		a.Location == b.Location && slices.Equal(a.Fields, b.Fields)
}
