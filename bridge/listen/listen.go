// Package listen opens the bridge's listening sockets from --listen specs or from
// descriptors handed over at start (systemd socket activation, fd 0), and sends
// sd_notify messages. It knows nothing of FastCGI.
package listen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Options controls how sockets are created and who may connect.
type Options struct {
	// SocketMode is the permission of a unix socket file the bridge creates; 0 means 0660.
	SocketMode os.FileMode
	// SocketOwner is the user name or numeric uid given the socket file; "" leaves it.
	SocketOwner string
	// SocketGroup is the group name or numeric gid given the socket file; "" leaves it.
	SocketGroup string
	// AllowFrom lists the web-server addresses allowed to connect over non-loopback TCP.
	AllowFrom []netip.Prefix
	// DirOwner and DirGroup own a socket directory the bridge makes
	// because it is missing: the user the bridge drops to, so that it can
	// remove its socket at exit. "" falls back to SocketOwner/SocketGroup.
	DirOwner, DirGroup string
}

// DefaultSocketMode is the unix socket permission used when Options.SocketMode is 0:
// the web server's user must share the bridge's group, nobody else may connect.
const DefaultSocketMode os.FileMode = 0o660

// Listener is one open listening socket.
type Listener struct {
	// Listener accepts connections; on TCP it silently drops peers that are neither
	// loopback nor in the allowlist (see Open).
	net.Listener
	// Spec is what the user wrote, or "fd:0" / "systemd:NAME" for inherited sockets.
	Spec string
	// Unix is the socket file's path when the bridge created it, else "".
	Unix string

	// created identifies the socket file the bridge bound, so Close never removes a
	// file that someone else put at the same path afterwards.
	created   fileID
	closeOnce sync.Once
	closeErr  error
}

// Close stops listening. A unix socket file is removed only when the bridge created
// it and the path still names that same file; inherited sockets' files are left alone.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		if l.Unix != "" {
			if err := removeIfSame(l.Unix, l.created); err != nil {
				errs = append(errs, err)
			}
		}
		if err := l.Listener.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close listener %s: %w", l.Spec, err))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// SetAllowFrom replaces the peer allowlist of a TCP listener, for sockets obtained
// from Inherited, which cannot see the command line's --allow-from. It has no effect
// on unix sockets and is safe to call while Accept runs.
func (l *Listener) SetAllowFrom(allow []netip.Prefix) {
	if f, ok := l.Listener.(*filterListener); ok {
		f.setAllow(allow)
	}
}

// Open parses and opens one --listen spec: "unix:/path", "tcp:HOST:PORT", "HOST:PORT",
// "[::1]:PORT" or "fd:N". A nil log discards messages.
func Open(spec string, o Options, log hclog.Logger) (*Listener, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t, err := parseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case kindUnix:
		return openUnix(spec, t.addr, o, log)
	case kindTCP:
		return openTCP(spec, t.addr, o, log)
	default:
		return openFD(spec, t.fd, o, log)
	}
}

const (
	kindUnix = "unix"
	kindTCP  = "tcp"
	kindFD   = "fd"
)

// target is a parsed --listen spec.
type target struct {
	kind string // kindUnix, kindTCP or kindFD
	addr string // socket path or HOST:PORT
	fd   int
}

const specForms = "unix:/path, tcp:HOST:PORT, HOST:PORT, [IPv6]:PORT or fd:N"

// parseSpec splits a --listen spec into its kind and address without touching the
// system, so every malformed spec is refused before any socket is opened.
func parseSpec(spec string) (target, error) {
	bad := func(why string) (target, error) {
		return target{}, fmt.Errorf("listen spec %q: %s; want %s", spec, why, specForms)
	}
	switch {
	case spec == "":
		return bad("empty")
	case strings.HasPrefix(spec, "unix:"):
		path := strings.TrimPrefix(spec, "unix:")
		switch {
		case path == "":
			return bad("no socket path")
		case !strings.HasPrefix(path, "/"):
			// An absolute path keeps Close's check valid whatever the working
			// directory, and keeps "unix:9000" from meaning a file named 9000.
			return bad("socket path must be absolute")
		case strings.HasPrefix(path, "@"):
			// Abstract sockets have no file permissions: anyone in the network
			// namespace could connect, which breaks the safe default.
			return bad("abstract unix sockets are not supported (no permission checks)")
		case strings.ContainsRune(path, 0):
			return bad("socket path contains NUL")
		}
		return target{kind: kindUnix, addr: path}, nil
	case strings.HasPrefix(spec, "fd:"):
		n, err := strconv.Atoi(strings.TrimPrefix(spec, "fd:"))
		if err != nil || n < 0 {
			return bad("descriptor is not a non-negative number")
		}
		return target{kind: kindFD, fd: n}, nil
	}
	hostport := strings.TrimPrefix(spec, "tcp:")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return bad("not HOST:PORT")
	}
	if strings.ContainsAny(host, "/ ") {
		return bad("host contains '/' or a space")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port == "" {
		return bad("port is not a number from 0 to 65535")
	}
	return target{kind: kindTCP, addr: net.JoinHostPort(host, strconv.FormatUint(p, 10))}, nil
}
