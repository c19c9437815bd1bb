// This file holds TCP listening: the loopback-unless-allowlisted bind rule, the
// allow-from list parser, and the Accept filter that drops unlisted peers.
package listen

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// ParseAllowFrom parses allow-from entries. Each entry may itself be a comma-separated
// list, as in FCGI_WEB_SERVER_ADDRS ("10.0.0.5,192.168.0.0/24,::1"); single addresses
// and CIDR prefixes are accepted, IPv4-mapped IPv6 forms are turned into IPv4.
// Empty items are skipped. An error names the first bad entry.
func ParseAllowFrom(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, entry := range list {
		for _, item := range strings.Split(entry, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			p, err := parseAllowItem(item)
			if err != nil {
				return nil, fmt.Errorf("allow-from entry %q: %w; want an IP address or CIDR prefix such as 10.0.0.5, 192.168.0.0/24 or 2001:db8::/32", item, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func parseAllowItem(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		// A zone names an interface, not an address range; peers are matched
		// without zones, so accepting one would silently match everything on
		// that address on any interface.
		return netip.Prefix{}, fmt.Errorf("IPv6 zones are not supported")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR prefix")
	}
	if a := p.Addr(); a.Is4In6() {
		// Peers are unmapped before matching, so a mapped prefix must become
		// the IPv4 prefix it denotes or it would never match.
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix shorter than /96 spans IPv6 and IPv4")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// peerAddr extracts the IP of a connection's remote address, unmapped and without
// zone; ok is false for anything that is not an IP address.
func peerAddr(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		if v == nil {
			return netip.Addr{}, false
		}
		ip = v.AddrPort().Addr()
	case nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// allowedPeer reports whether a TCP peer may talk to the bridge: loopback always,
// anything else only when inside one of the allowed prefixes. Unknown address
// kinds are refused.
func allowedPeer(a net.Addr, allow []netip.Prefix) bool {
	ip, ok := peerAddr(a)
	if !ok {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// filterListener is a TCP listener whose Accept drops peers allowedPeer refuses.
type filterListener struct {
	net.Listener
	spec  string
	log   hclog.Logger
	allow atomic.Pointer[[]netip.Prefix]
}

func newFilterListener(ln net.Listener, spec string, allow []netip.Prefix, log hclog.Logger) *filterListener {
	f := &filterListener{Listener: ln, spec: spec, log: log}
	f.setAllow(allow)
	return f
}

func (f *filterListener) setAllow(allow []netip.Prefix) {
	cp := append([]netip.Prefix(nil), allow...)
	f.allow.Store(&cp)
}

// Accept returns the next connection from an allowed peer. A refused peer is
// closed and logged, never reported as an error: a serve loop treating errors
// as fatal must not be stoppable by a port scan.
func (f *filterListener) Accept() (net.Conn, error) {
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if allowedPeer(c.RemoteAddr(), *f.allow.Load()) {
			return c, nil
		}
		f.log.Warn("refused connection from a peer not in allow-from", "listen", f.spec, "peer", addrString(c.RemoteAddr()))
		c.Close()
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}

// isLoopbackHost reports whether a listen host surely binds loopback only, judged
// before binding so a public port is never opened by mistake. Hostnames other than
// "localhost" are judged after binding, from the bound address.
func isLoopbackHost(host string) (loopback, known bool) {
	if strings.EqualFold(host, "localhost") {
		return true, true
	}
	if host == "" {
		return false, true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false, false
	}
	return a.Unmap().IsLoopback(), true
}

// needAllowFrom is the error for a public TCP address without an allowlist.
func needAllowFrom(spec, addr string) error {
	return fmt.Errorf("listen %s: %s is not a loopback address, so any host could run CGI programs; "+
		"pass --allow-from with the web server's addresses (or set FCGI_WEB_SERVER_ADDRS), or listen on 127.0.0.1", spec, addr)
}

func openTCP(spec, hostport string, o Options, log hclog.Logger) (*Listener, error) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	loopback, known := isLoopbackHost(host)
	if known && !loopback && len(o.AllowFrom) == 0 {
		return nil, needAllowFrom(spec, hostport)
	}
	ln, err := net.Listen("tcp", hostport)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	if err := checkBound(spec, ln, o.AllowFrom); err != nil {
		ln.Close()
		return nil, err
	}
	log.Debug("listening", "spec", spec, "addr", ln.Addr().String())
	return &Listener{Listener: newFilterListener(ln, spec, o.AllowFrom, log), Spec: spec}, nil
}

// checkBound applies the bind rule to the address a TCP listener actually has:
// the last word for hostnames and for sockets bound by someone else (fd:N).
func checkBound(spec string, ln net.Listener, allow []netip.Prefix) error {
	if len(allow) > 0 {
		return nil
	}
	ip, ok := peerAddr(ln.Addr())
	if ok && ip.IsLoopback() {
		return nil
	}
	return needAllowFrom(spec, ln.Addr().String())
}
