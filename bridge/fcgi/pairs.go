// This file holds FastCGI name-value pairs, the encoding of FCGI_PARAMS and
// FCGI_GET_VALUES bodies: each length is one byte when below 128, else four
// bytes with the top bit set.

package fcgi

import (
	"encoding/binary"
	"fmt"
)

// readLen decodes one pair length at b, returning it and the bytes used.
// The four-byte form is accepted for short lengths too.
func readLen(b []byte) (n uint32, used int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0]&0x80 == 0 {
		return uint32(b[0]), 1, true
	}
	if len(b) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b) &^ (1 << 31), 4, true
}

// ForEachPair calls fn for each name-value pair in b, in order. The slices
// alias b. It stops at the first error fn returns; a truncated or oversized
// pair is ErrPairs.
func ForEachPair(b []byte, fn func(name, value []byte) error) error {
	return forEachPairAt(b, func(n0, n1, v0, v1 int) error { return fn(b[n0:n1], b[v0:v1]) })
}

// forEachPairAt is ForEachPair giving each pair's name and value as offsets
// into b.
func forEachPairAt(b []byte, fn func(n0, n1, v0, v1 int) error) error {
	for off := 0; off < len(b); {
		nlen, u1, ok1 := readLen(b[off:])
		if !ok1 {
			return fmt.Errorf("%w: truncated name length at byte %d", ErrPairs, off)
		}
		vlen, u2, ok2 := readLen(b[off+u1:])
		if !ok2 {
			return fmt.Errorf("%w: truncated value length at byte %d", ErrPairs, off+u1)
		}
		start := off + u1 + u2
		rest := uint64(len(b) - start)
		if uint64(nlen)+uint64(vlen) > rest {
			return fmt.Errorf("%w: pair at byte %d claims %d+%d bytes, %d remain", ErrPairs, off, nlen, vlen, rest)
		}
		if err := fn(start, start+int(nlen), start+int(nlen), start+int(nlen)+int(vlen)); err != nil {
			return err
		}
		off = start + int(nlen) + int(vlen)
	}
	return nil
}

// Pair is one decoded name-value pair. It is an alias of the unnamed struct
// type, so a slice of pairs can be handed to code that knows nothing of
// FastCGI (cgienv.Param is the same type) without a copy.
type Pair = struct{ Name, Value string }

// ParsePairs decodes all pairs in b. Their strings share one allocation, a
// copy of b: a request's params cost two allocations, not two per pair.
func ParsePairs(b []byte) ([]Pair, error) {
	all := string(b)
	n := 0
	if err := forEachPairAt(b, func(int, int, int, int) error { n++; return nil }); err != nil {
		return nil, err
	}
	out := make([]Pair, 0, n)
	err := forEachPairAt(b, func(n0, n1, v0, v1 int) error {
		out = append(out, Pair{all[n0:n1], all[v0:v1]})
		return nil
	})
	return out, err
}

func appendLen(dst []byte, n int) []byte {
	if n < 128 {
		return append(dst, byte(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n)|1<<31)
}

// AppendPair appends one name-value pair in the shortest length form.
func AppendPair(dst []byte, name, value string) []byte {
	dst = appendLen(dst, len(name))
	dst = appendLen(dst, len(value))
	dst = append(dst, name...)
	return append(dst, value...)
}
