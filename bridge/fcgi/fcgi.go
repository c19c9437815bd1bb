// Package fcgi holds the FastCGI 1.0 wire format: record headers, the
// fixed-size bodies, name-value pairs, and a reader and writer for records.
// It is used in both directions — by the bridge's server side and by the
// client side that talks to warm FastCGI children and drives the tests — and
// knows nothing of CGI. Names follow the FastCGI 1.0 specification.
package fcgi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version1 is the only protocol version (FCGI_VERSION_1).
const Version1 = 1

// HeaderLen is the size of a record header (FCGI_HEADER_LEN).
const HeaderLen = 8

// MaxContent is the largest content a single record can carry.
const MaxContent = 65535

// NullRequestID is the request id of management records (FCGI_NULL_REQUEST_ID).
const NullRequestID = 0

// ListenSockFileno is the descriptor on which a FastCGI application started by
// a web server finds its listening socket (FCGI_LISTENSOCK_FILENO).
const ListenSockFileno = 0

// RecType is a record type.
type RecType uint8

// Record types (FCGI_BEGIN_REQUEST …).
const (
	TypeBeginRequest    RecType = 1
	TypeAbortRequest    RecType = 2
	TypeEndRequest      RecType = 3
	TypeParams          RecType = 4
	TypeStdin           RecType = 5
	TypeStdout          RecType = 6
	TypeStderr          RecType = 7
	TypeData            RecType = 8
	TypeGetValues       RecType = 9
	TypeGetValuesResult RecType = 10
	TypeUnknownType     RecType = 11
	// TypeMaxType is FCGI_MAXTYPE: types above it are unknown to version 1.
	TypeMaxType = TypeUnknownType
)

var typeNames = [...]string{
	TypeBeginRequest:    "BEGIN_REQUEST",
	TypeAbortRequest:    "ABORT_REQUEST",
	TypeEndRequest:      "END_REQUEST",
	TypeParams:          "PARAMS",
	TypeStdin:           "STDIN",
	TypeStdout:          "STDOUT",
	TypeStderr:          "STDERR",
	TypeData:            "DATA",
	TypeGetValues:       "GET_VALUES",
	TypeGetValuesResult: "GET_VALUES_RESULT",
	TypeUnknownType:     "UNKNOWN_TYPE",
}

func (t RecType) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// IsManagement reports whether t is a management record type, sent with
// request id 0. Unknown types sent with id 0 are management records too.
func (t RecType) IsManagement() bool {
	return t == 0 || t == TypeGetValues || t == TypeGetValuesResult || t == TypeUnknownType || t > TypeMaxType
}

// Role is the role of a request, from FCGI_BEGIN_REQUEST.
type Role uint16

// Roles.
const (
	RoleResponder  Role = 1
	RoleAuthorizer Role = 2
	RoleFilter     Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleResponder:
		return "RESPONDER"
	case RoleAuthorizer:
		return "AUTHORIZER"
	case RoleFilter:
		return "FILTER"
	}
	return fmt.Sprintf("role(%d)", uint16(r))
}

// FlagKeepConn is FCGI_KEEP_CONN: the application keeps the connection open
// after the request ends.
const FlagKeepConn = 1

// ProtocolStatus is the protocolStatus of FCGI_END_REQUEST.
type ProtocolStatus uint8

// Protocol statuses.
const (
	RequestComplete ProtocolStatus = 0 // FCGI_REQUEST_COMPLETE
	CantMpxConn     ProtocolStatus = 1 // FCGI_CANT_MPX_CONN
	Overloaded      ProtocolStatus = 2 // FCGI_OVERLOADED
	UnknownRole     ProtocolStatus = 3 // FCGI_UNKNOWN_ROLE
)

// Variable names of FCGI_GET_VALUES.
const (
	MaxConns  = "FCGI_MAX_CONNS"
	MaxReqs   = "FCGI_MAX_REQS"
	MpxsConns = "FCGI_MPXS_CONNS"
)

// Errors reported by the record reader and the body decoders. They mean the
// peer is not speaking FastCGI 1.0; a server closes such a connection.
var (
	ErrVersion   = errors.New("fcgi: unsupported protocol version")
	ErrShortBody = errors.New("fcgi: record body too short")
	ErrPairs     = errors.New("fcgi: malformed name-value pairs")
)

// Header is a record header.
type Header struct {
	Version       uint8
	Type          RecType
	RequestID     uint16
	ContentLength uint16
	PaddingLength uint8
}

// ParseHeader decodes an 8-byte record header.
func ParseHeader(b []byte) Header {
	_ = b[7]
	return Header{
		Version:       b[0],
		Type:          RecType(b[1]),
		RequestID:     binary.BigEndian.Uint16(b[2:4]),
		ContentLength: binary.BigEndian.Uint16(b[4:6]),
		PaddingLength: b[6],
	}
}

// padding returns how many bytes pad n content bytes to a multiple of 8, as
// the specification recommends for what a sender emits.
func padding(n int) int { return -n & 7 }

// AppendHeader appends a version-1 header for a record of typ carrying n
// content bytes with the recommended padding; the caller appends the content
// and Padding(n) zero bytes.
func AppendHeader(dst []byte, typ RecType, id uint16, n int) []byte {
	return append(dst, Version1, byte(typ), byte(id>>8), byte(id), byte(n>>8), byte(n), byte(padding(n)), 0)
}

// zeros is the padding source.
var zeros [8]byte

// Padding returns the zero bytes that follow n content bytes.
func Padding(n int) []byte { return zeros[:padding(n)] }

// AppendRecord appends one complete record (header, content, padding).
// content must not exceed MaxContent.
func AppendRecord(dst []byte, typ RecType, id uint16, content []byte) []byte {
	dst = AppendHeader(dst, typ, id, len(content))
	dst = append(dst, content...)
	return append(dst, Padding(len(content))...)
}

// AppendStream appends p as records of typ, each at most MaxContent bytes.
// An empty p appends nothing: the end of a stream is an explicit empty record
// (AppendRecord with no content).
func AppendStream(dst []byte, typ RecType, id uint16, p []byte) []byte {
	for len(p) > 0 {
		n := min(len(p), MaxContent)
		dst = AppendRecord(dst, typ, id, p[:n])
		p = p[n:]
	}
	return dst
}

// Record is one record read from a stream. Content aliases the reader's
// buffer and is valid only until the next call to Next.
type Record struct {
	Type      RecType
	RequestID uint16
	Content   []byte
}

// Reader reads records from a byte stream.
type Reader struct {
	r   io.Reader
	buf []byte
}

// NewReader returns a Reader reading from r. For efficiency r should be
// buffered. Its buffer grows to the largest record seen (at most 64 KiB),
// so a connection that only carries small records stays small.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 1024)}
}

// Reset makes the Reader read from r, keeping its buffer.
func (rd *Reader) Reset(r io.Reader) { rd.r = r }

// Next reads the next record, skipping its padding. It returns io.EOF only
// when the stream ends cleanly between records, io.ErrUnexpectedEOF when it
// ends inside one, and ErrVersion for a header that is not version 1.
func (rd *Reader) Next() (Record, error) {
	hb := rd.buf[:HeaderLen]
	if _, err := io.ReadFull(rd.r, hb); err != nil {
		return Record{}, err
	}
	h := ParseHeader(hb)
	if h.Version != Version1 {
		return Record{}, fmt.Errorf("%w %d (header % x)", ErrVersion, h.Version, hb)
	}
	n := int(h.ContentLength) + int(h.PaddingLength)
	if HeaderLen+n > len(rd.buf) {
		grown := make([]byte, max(HeaderLen+n, 2*len(rd.buf)))
		copy(grown, rd.buf[:HeaderLen])
		rd.buf = grown
	}
	body := rd.buf[HeaderLen : HeaderLen+n]
	if _, err := io.ReadFull(rd.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Record{}, err
	}
	return Record{Type: h.Type, RequestID: h.RequestID, Content: body[:h.ContentLength]}, nil
}

// BeginRequest is the body of FCGI_BEGIN_REQUEST.
type BeginRequest struct {
	Role  Role
	Flags uint8
}

// KeepConn reports whether FCGI_KEEP_CONN is set.
func (b BeginRequest) KeepConn() bool { return b.Flags&FlagKeepConn != 0 }

// ParseBeginRequest decodes the body of FCGI_BEGIN_REQUEST.
func ParseBeginRequest(content []byte) (BeginRequest, error) {
	if len(content) < 8 {
		return BeginRequest{}, fmt.Errorf("%w: BEGIN_REQUEST has %d bytes, want 8", ErrShortBody, len(content))
	}
	return BeginRequest{Role: Role(binary.BigEndian.Uint16(content)), Flags: content[2]}, nil
}

// AppendBeginRequest appends the 8-byte body of FCGI_BEGIN_REQUEST.
func AppendBeginRequest(dst []byte, b BeginRequest) []byte {
	return append(dst, byte(b.Role>>8), byte(b.Role), b.Flags, 0, 0, 0, 0, 0)
}

// EndRequest is the body of FCGI_END_REQUEST.
type EndRequest struct {
	AppStatus      uint32
	ProtocolStatus ProtocolStatus
}

// ParseEndRequest decodes the body of FCGI_END_REQUEST.
func ParseEndRequest(content []byte) (EndRequest, error) {
	if len(content) < 8 {
		return EndRequest{}, fmt.Errorf("%w: END_REQUEST has %d bytes, want 8", ErrShortBody, len(content))
	}
	return EndRequest{AppStatus: binary.BigEndian.Uint32(content), ProtocolStatus: ProtocolStatus(content[4])}, nil
}

// AppendEndRequest appends the 8-byte body of FCGI_END_REQUEST.
func AppendEndRequest(dst []byte, e EndRequest) []byte {
	dst = binary.BigEndian.AppendUint32(dst, e.AppStatus)
	return append(dst, byte(e.ProtocolStatus), 0, 0, 0)
}

// AppendUnknownType appends the 8-byte body of FCGI_UNKNOWN_TYPE.
func AppendUnknownType(dst []byte, t RecType) []byte {
	return append(dst, byte(t), 0, 0, 0, 0, 0, 0, 0)
}
