// Tests for the allow-from parser and the TCP peer filter, driven with fake
// addresses because real non-loopback peers are not available to tests.
package listen

import (
	"bytes"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestParseAllowFrom(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []netip.Prefix
		wantErr string // substring; "" means success
	}{
		{"nothing", nil, nil, ""},
		{"single v4 address", []string{"10.0.0.5"}, prefixes("10.0.0.5/32"), ""},
		{"single v6 address", []string{"2001:db8::7"}, prefixes("2001:db8::7/128"), ""},
		{"FCGI_WEB_SERVER_ADDRS list", []string{"10.0.0.5,192.168.0.0/24,::1"}, prefixes("10.0.0.5/32", "192.168.0.0/24", "::1/128"), ""},
		{"repeated flags and spaces", []string{" 10.0.0.5 , ", "2001:db8::/32"}, prefixes("10.0.0.5/32", "2001:db8::/32"), ""},
		{"host bits are masked", []string{"192.168.0.77/24"}, prefixes("192.168.0.0/24"), ""},
		{"mapped address becomes v4", []string{"::ffff:10.0.0.5"}, prefixes("10.0.0.5/32"), ""},
		{"mapped prefix becomes v4", []string{"::ffff:10.0.0.0/104"}, prefixes("10.0.0.0/8"), ""},
		{"everything v4", []string{"0.0.0.0/0"}, prefixes("0.0.0.0/0"), ""},
		{"octet out of range", []string{"10.0.0.256"}, nil, `"10.0.0.256": not an IP address`},
		{"host name", []string{"web.example"}, nil, `"web.example": not an IP address`},
		{"prefix too long", []string{"10.0.0.0/33"}, nil, `"10.0.0.0/33": not a CIDR prefix`},
		{"zone", []string{"fe80::1%eth0"}, nil, `"fe80::1%eth0": IPv6 zones`},
		{"short mapped prefix", []string{"::ffff:0:0/80"}, nil, `"::ffff:0:0/80": IPv4-mapped prefix shorter`},
		{"bad entry after good ones", []string{"10.0.0.5", "::1,garbage"}, nil, `"garbage"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAllowFrom(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %s", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("got %v alongside an error", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseAllowFrom(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzParseAllowFrom checks that every accepted list yields canonical prefixes that
// survive a round trip, and that every refusal names an entry.
func FuzzParseAllowFrom(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseAllowFrom([]string{s})
		if err != nil {
			if !strings.Contains(err.Error(), "allow-from entry ") {
				t.Fatalf("error %q does not name the entry", err)
			}
			return
		}
		for _, p := range got {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("non-canonical prefix %v from %q", p, s)
			}
			again, err := ParseAllowFrom([]string{p.String()})
			if err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("round trip of %v gave %v, %v", p, again, err)
			}
		}
	})
}

// FuzzParseSpec checks that parseSpec never panics, that refusals name the spec
// and the accepted forms, and that accepted specs are stable when written back.
func FuzzParseSpec(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := parseSpec(spec)
		if err != nil {
			if !strings.Contains(err.Error(), specForms) {
				t.Fatalf("error %q does not list the accepted forms", err)
			}
			return
		}
		var canon string
		switch got.kind {
		case kindUnix:
			if !strings.HasPrefix(got.addr, "/") {
				t.Fatalf("unix path %q not absolute", got.addr)
			}
			canon = "unix:" + got.addr
		case kindTCP:
			if _, _, err := net.SplitHostPort(got.addr); err != nil {
				t.Fatalf("tcp address %q does not split: %v", got.addr, err)
			}
			canon = "tcp:" + got.addr
		case kindFD:
			if got.fd < 0 {
				t.Fatalf("negative fd %d", got.fd)
			}
			canon = "fd:" + itoa(got.fd)
		default:
			t.Fatalf("unknown kind %q", got.kind)
		}
		again, err := parseSpec(canon)
		if err != nil || again != got {
			t.Fatalf("%q parsed to %+v, its canonical form %q to %+v, %v", spec, got, canon, again, err)
		}
	})
}

// fakeAddr is a net.Addr that is not a *net.TCPAddr, to exercise the generic path.
type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

func tcpAddr(s string) *net.TCPAddr {
	ap := netip.MustParseAddrPort(s)
	return &net.TCPAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port()), Zone: ap.Addr().Zone()}
}

func TestAllowedPeer(t *testing.T) {
	tests := []struct {
		name  string
		peer  net.Addr
		allow []netip.Prefix
		want  bool
	}{
		{"v4 loopback always", tcpAddr("127.0.0.1:4000"), nil, true},
		{"whole 127/8 is loopback", tcpAddr("127.8.9.10:4000"), nil, true},
		{"v6 loopback always", tcpAddr("[::1]:4000"), nil, true},
		{"mapped v4 loopback", &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}, nil, true},
		{"public peer without list", tcpAddr("10.0.0.5:4000"), nil, false},
		{"listed address", tcpAddr("10.0.0.5:4000"), prefixes("10.0.0.5/32"), true},
		{"neighbour of listed address", tcpAddr("10.0.0.6:4000"), prefixes("10.0.0.5/32"), false},
		{"mapped peer in v4 prefix", &net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, prefixes("10.0.0.0/8"), true},
		{"16-byte v4 peer outside prefix", &net.TCPAddr{IP: net.ParseIP("::ffff:11.1.2.3"), Port: 1}, prefixes("10.0.0.0/8"), false},
		{"v6 peer in prefix", tcpAddr("[2001:db8::1]:4000"), prefixes("2001:db8::/32"), true},
		{"v6 peer outside prefix", tcpAddr("[2001:db9::1]:4000"), prefixes("2001:db8::/32"), false},
		{"zoned link-local peer", tcpAddr("[fe80::1%eth0]:4000"), prefixes("fe80::/10"), true},
		{"v4 list does not admit v6", tcpAddr("[2001:db8::1]:4000"), prefixes("0.0.0.0/0"), false},
		{"generic addr in list", fakeAddr("192.0.2.9:80"), prefixes("192.0.2.0/24"), true},
		{"generic addr unparsable", fakeAddr("somewhere"), prefixes("0.0.0.0/0"), false},
		{"unix peer refused", &net.UnixAddr{Name: "@", Net: "unix"}, prefixes("0.0.0.0/0"), false},
		{"nil addr refused", nil, prefixes("0.0.0.0/0"), false},
		{"nil *TCPAddr refused", (*net.TCPAddr)(nil), prefixes("0.0.0.0/0"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := allowedPeer(tt.peer, tt.allow); got != tt.want {
				t.Errorf("allowedPeer(%v, %v) = %v, want %v", tt.peer, tt.allow, got, tt.want)
			}
		})
	}
}

type fakeConn struct {
	net.Conn
	peer   net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.peer }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

type fakeListener struct {
	net.Listener
	conns []*fakeConn
}

func (l *fakeListener) Accept() (net.Conn, error) {
	if len(l.conns) == 0 {
		return nil, net.ErrClosed
	}
	c := l.conns[0]
	l.conns = l.conns[1:]
	return c, nil
}

func TestFilterDropsUnlistedPeersAndKeepsAccepting(t *testing.T) {
	refused1 := &fakeConn{peer: tcpAddr("10.9.9.9:1111")}
	refused2 := &fakeConn{peer: tcpAddr("[2001:db8::66]:2222")}
	allowed := &fakeConn{peer: tcpAddr("10.0.0.5:3333")}
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	f := newFilterListener(&fakeListener{conns: []*fakeConn{refused1, refused2, allowed}}, "tcp:0.0.0.0:9000", prefixes("10.0.0.5/32"), log)

	c, err := f.Accept()
	if err != nil {
		t.Fatalf("Accept returned an error for refused peers: %v", err)
	}
	if c != allowed {
		t.Fatalf("Accept returned %v, want the allowed peer", c.RemoteAddr())
	}
	if !refused1.closed || !refused2.closed || allowed.closed {
		t.Errorf("closed: refused %v %v, allowed %v", refused1.closed, refused2.closed, allowed.closed)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one log line per refused peer, got %q", buf.String())
	}
	for i, peer := range []string{"10.9.9.9:1111", "[2001:db8::66]:2222"} {
		if !strings.Contains(lines[i], "[WARN]") || !strings.Contains(lines[i], peer) {
			t.Errorf("log line %q should be a warning naming %s", lines[i], peer)
		}
	}
	if _, err := f.Accept(); err != net.ErrClosed {
		t.Errorf("listener error not passed through: %v", err)
	}
}

func TestSetAllowFromChangesInheritedFilter(t *testing.T) {
	peer := &fakeConn{peer: tcpAddr("10.9.9.9:1111")}
	inner := &fakeListener{conns: []*fakeConn{peer}}
	l := &Listener{Listener: newFilterListener(inner, "fd:0", nil, hclog.NewNullLogger()), Spec: "fd:0"}
	l.SetAllowFrom(prefixes("10.9.9.0/24"))
	c, err := l.Accept()
	if err != nil || c != peer {
		t.Fatalf("Accept after SetAllowFrom = %v, %v; want the newly allowed peer", c, err)
	}
}
