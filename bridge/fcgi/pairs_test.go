// This file tests name-value pair decoding and encoding: both length forms,
// the boundaries between them, truncation and lengths that lie.

package fcgi

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParsePairsDecodesBothLengthForms(t *testing.T) {
	long127 := strings.Repeat("n", 127)
	long128 := strings.Repeat("v", 128)
	tests := []struct {
		name string
		in   []byte
		want []Pair
	}{
		{"nothing", nil, nil},
		{"one-byte lengths", []byte("\x04\x03NAMEval"), []Pair{{"NAME", "val"}}},
		{"four-byte name length for a short name", []byte("\x80\x00\x00\x05\x01HELLOx"), []Pair{{"HELLO", "x"}}},
		{"four-byte value length for a short value", []byte("\x01\x80\x00\x00\x05xHELLO"), []Pair{{"x", "HELLO"}}},
		{"four-byte zero lengths", []byte("\x80\x00\x00\x00\x80\x00\x00\x00"), []Pair{{"", ""}}},
		{"empty name and value", []byte("\x00\x00"), []Pair{{"", ""}}},
		{"empty value as nginx sends CONTENT_LENGTH", []byte("\x0e\x00CONTENT_LENGTH"), []Pair{{"CONTENT_LENGTH", ""}}},
		{"empty name", []byte("\x00\x01v"), []Pair{{"", "v"}}},
		{"name of 127 in one byte", append([]byte{127, 0}, long127...), []Pair{{long127, ""}}},
		{"value of 128 in four bytes", append([]byte{1, 0x80, 0, 0, 128, 'k'}, long128...), []Pair{{"k", long128}}},
		{"several pairs, mixed forms", []byte("\x01\x01ab\x80\x00\x00\x02\x00cd\x00\x00"), []Pair{{"a", "b"}, {"cd", ""}, {"", ""}}},
		{"duplicate names are kept in order", []byte("\x01\x01a1\x01\x01a2"), []Pair{{"a", "1"}, {"a", "2"}}},
		{"binary bytes pass through", []byte("\x01\x02\x00\xff\x80"), []Pair{{"\x00", "\xff\x80"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePairs(tt.in)
			if err != nil {
				t.Fatalf("ParsePairs(% x): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParsePairs(% x) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParsePairsRejectsLyingLengths(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"lone one-byte name length", []byte{0x01}},
		{"name length but no value length", []byte{0x00}},
		{"four-byte name length cut after 1 byte", []byte{0x80}},
		{"four-byte name length cut after 3 bytes", []byte{0x80, 0, 0}},
		{"four-byte value length cut", []byte{0x01, 0x80, 0, 0}},
		{"name longer than the buffer", []byte("\x05\x00abcd")},
		{"value longer than the buffer", []byte("\x01\x05abcde")},
		{"name fits but value does not", []byte("\x02\x02abc")},
		{"declared 2^31-1 name", []byte("\xff\xff\xff\xff\x00abc")},
		{"declared 2^31-1 name and value", []byte("\xff\xff\xff\xff\xff\xff\xff\xffabc")},
		{"declared 2^31-2 name and 2 value", []byte("\xff\xff\xff\xfe\x02abc")},
		{"declared 2^30 value", []byte("\x00\xc0\x00\x00\x00")},
		{"good pair then a lying one", []byte("\x01\x01ab\x01\x7fcd")},
		{"good pair then a stray byte", []byte("\x01\x01ab\x00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls int
			err := ForEachPair(tt.in, func(name, value []byte) error {
				calls++
				return nil
			})
			if !errors.Is(err, ErrPairs) {
				t.Errorf("ForEachPair(% x) err = %v, want ErrPairs", tt.in, err)
			}
			if _, err := ParsePairs(tt.in); !errors.Is(err, ErrPairs) {
				t.Errorf("ParsePairs(% x) err = %v, want ErrPairs", tt.in, err)
			}
			if calls > 1 {
				t.Errorf("fn called %d times; only the leading good pair may be delivered", calls)
			}
		})
	}
}

// Every proper prefix of a valid encoding that does not end on a pair
// boundary is truncated and must be ErrPairs; a prefix that ends on a
// boundary is valid and yields the pairs before it.
func TestParsePairsTruncatedAtEveryOffset(t *testing.T) {
	pairs := []Pair{
		{"SCRIPT_NAME", "/cgi-bin/x.cgi"},
		{"", ""},
		{strings.Repeat("N", 128), "v"},
		{"QUERY_STRING", strings.Repeat("q", 300)},
		{"A", ""},
	}
	var enc []byte
	boundary := map[int]int{0: 0} // offset → number of pairs before it
	for i, p := range pairs {
		enc = AppendPair(enc, p.Name, p.Value)
		boundary[len(enc)] = i + 1
	}
	for off := 0; off <= len(enc); off++ {
		got, err := ParsePairs(enc[:off])
		if k, ok := boundary[off]; ok {
			if err != nil || !slices.Equal(got, pairs[:k]) {
				t.Errorf("prefix of %d bytes (a pair boundary) = %d pairs, %v; want the first %d pairs", off, len(got), err, k)
			}
			continue
		}
		if !errors.Is(err, ErrPairs) {
			t.Errorf("prefix of %d bytes: err = %v, want ErrPairs", off, err)
		}
	}
}

func TestForEachPairStopsAtCallbackError(t *testing.T) {
	enc := AppendPair(AppendPair(AppendPair(nil, "a", "1"), "b", "2"), "c", "3")
	var seen []string
	err := ForEachPair(enc, func(name, value []byte) error {
		seen = append(seen, string(name))
		if string(name) == "b" {
			return errBoom
		}
		return nil
	})
	if err != errBoom {
		t.Errorf("err = %v, want the callback's error unchanged", err)
	}
	if strings.Join(seen, ",") != "a,b" {
		t.Errorf("callback saw %v, want a,b", seen)
	}
}

func TestAppendPairUsesShortestForm(t *testing.T) {
	tests := []struct {
		nameLen, valueLen int
		header            []byte
	}{
		{0, 0, []byte{0, 0}},
		{1, 127, []byte{1, 127}},
		{127, 128, []byte{127, 0x80, 0, 0, 128}},
		{128, 0, []byte{0x80, 0, 0, 128, 0}},
		{255, 256, []byte{0x80, 0, 0, 255, 0x80, 0, 1, 0}},
		{70000, 5, []byte{0x80, 0x01, 0x11, 0x70, 5}},
	}
	for _, tt := range tests {
		name := strings.Repeat("n", tt.nameLen)
		value := strings.Repeat("v", tt.valueLen)
		b := AppendPair([]byte("pre"), name, value)
		if !bytes.HasPrefix(b, []byte("pre")) {
			t.Fatalf("AppendPair did not append to dst")
		}
		b = b[len("pre"):]
		if !bytes.HasPrefix(b, tt.header) {
			t.Errorf("lengths %d,%d encoded as % x, want % x", tt.nameLen, tt.valueLen, b[:min(len(b), len(tt.header))], tt.header)
		}
		if want := len(tt.header) + tt.nameLen + tt.valueLen; len(b) != want {
			t.Errorf("lengths %d,%d: %d bytes, want %d", tt.nameLen, tt.valueLen, len(b), want)
		}
		got, err := ParsePairs(b)
		if err != nil || !slices.Equal(got, []Pair{{name, value}}) {
			t.Errorf("lengths %d,%d do not decode back: %d pairs, %v", tt.nameLen, tt.valueLen, len(got), err)
		}
	}
}
