// Tests for spec parsing, TCP listening and fd:N.
package listen

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func itoa(n int) string { return strconv.Itoa(n) }

// listeningFD opens a listener and returns a bare descriptor for it, as a parent
// process would hand one over; the Go listener object is gone, the socket is not.
func listeningFD(t *testing.T, network, addr string) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	ln.Close()
	return fd
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec string
		want target
	}{
		{"unix:/run/cgibridge.sock", target{kind: kindUnix, addr: "/run/cgibridge.sock"}},
		{"tcp:127.0.0.1:9000", target{kind: kindTCP, addr: "127.0.0.1:9000"}},
		{"127.0.0.1:9000", target{kind: kindTCP, addr: "127.0.0.1:9000"}},
		{"[::1]:9000", target{kind: kindTCP, addr: "[::1]:9000"}},
		{"tcp:[::1]:9000", target{kind: kindTCP, addr: "[::1]:9000"}},
		{"localhost:09000", target{kind: kindTCP, addr: "localhost:9000"}},
		{":9000", target{kind: kindTCP, addr: ":9000"}},
		{"fd:0", target{kind: kindFD, fd: 0}},
		{"fd:7", target{kind: kindFD, fd: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := parseSpec(tt.spec)
			if err != nil || got != tt.want {
				t.Fatalf("parseSpec(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			}
		})
	}
}

func TestOpenRefusesMalformedSpecs(t *testing.T) {
	tests := []struct{ spec, why string }{
		{"", "empty"},
		{"unix:", "no socket path"},
		{"unix:relative.sock", "must be absolute"},
		{"unix:@abstract", "abstract"},
		{"fd:", "non-negative number"},
		{"fd:-1", "non-negative number"},
		{"fd:three", "non-negative number"},
		{"tcp:", "not HOST:PORT"},
		{"tcp:9000", "not HOST:PORT"},
		{"/run/x.sock", "not HOST:PORT"},
		{"http://127.0.0.1:9000", "not HOST:PORT"},
		{"127.0.0.1:http", "port is not a number"},
		{"127.0.0.1:70000", "port is not a number"},
		{"127.0.0.1:", "port is not a number"},
		{"::1:9000", "not HOST:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := Open(tt.spec, Options{}, nil)
			if err == nil {
				t.Fatalf("Open(%q) succeeded", tt.spec)
			}
			msg := err.Error()
			for _, want := range []string{strconv.Quote(tt.spec), tt.why, "unix:/path", "fd:N"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestOpenTCPLoopbackNeedsNoAllowlist(t *testing.T) {
	for _, spec := range []string{"127.0.0.1:0", "tcp:127.0.0.1:0", "127.3.4.5:0", "[::1]:0", "tcp:[::1]:0", "localhost:0"} {
		t.Run(spec, func(t *testing.T) {
			l := mustOpen(t, spec, Options{})
			if l.Unix != "" || l.Spec != spec {
				t.Errorf("Listener Unix=%q Spec=%q", l.Unix, l.Spec)
			}
			roundTrip(t, l, "tcp", l.Addr().String())
		})
	}
}

func TestOpenTCPPublicNeedsAllowlist(t *testing.T) {
	for _, spec := range []string{":0", "tcp::0", "0.0.0.0:0", "[::]:0", "[::ffff:0.0.0.0]:0"} {
		t.Run(spec, func(t *testing.T) {
			_, err := Open(spec, Options{}, nil)
			if err == nil || !strings.Contains(err.Error(), "--allow-from") || !strings.Contains(err.Error(), "FCGI_WEB_SERVER_ADDRS") {
				t.Fatalf("err = %v, want advice to pass --allow-from", err)
			}
			allow := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			l := mustOpen(t, spec, Options{AllowFrom: allow})
			// Loopback peers stay allowed on a public listener.
			port := l.Addr().(*net.TCPAddr).Port
			roundTrip(t, l, "tcp", "127.0.0.1:"+itoa(port))
		})
	}
}

func TestOpenFDTCP(t *testing.T) {
	fd := listeningFD(t, "tcp", "127.0.0.1:0")
	l, err := Open("fd:"+itoa(fd), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("original descriptor %d still open after Open (F_GETFD err %v)", fd, err)
	}
	if _, ok := l.Listener.(*filterListener); !ok {
		t.Errorf("fd:N TCP listener is %T, want peer filtering", l.Listener)
	}
	roundTrip(t, l, "tcp", l.Addr().String())
}

func TestOpenFDPublicTCPNeedsAllowlist(t *testing.T) {
	fd := listeningFD(t, "tcp", "0.0.0.0:0")
	_, err := Open("fd:"+itoa(fd), Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), "--allow-from") {
		t.Fatalf("err = %v, want advice to pass --allow-from", err)
	}
}

func TestOpenFDRefusesNonListeningDescriptors(t *testing.T) {
	devnull, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(devnull)
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(pair[0])
	defer syscall.Close(pair[1])
	dgram, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(dgram)

	tests := []struct {
		name string
		fd   int
		want string
	}{
		{"file", devnull, "not a socket"},
		{"connected socket", pair[0], "not listening"},
		{"datagram socket", dgram, "not a stream socket"},
		{"closed descriptor", 1 << 20, "not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := "fd:" + itoa(tt.fd)
			_, err := Open(spec, Options{}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), spec) {
				t.Fatalf("err = %v, want %q naming %s", err, tt.want, spec)
			}
		})
	}
}
