// This file takes over listening sockets passed as descriptors: fd:N, systemd socket
// activation, fd 0 from spawn-fcgi and friends, and keeps inherited descriptors
// away from the programs the bridge starts.
package listen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// sdListenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const sdListenFDsStart = 3

// envWebServerAddrs is libfcgi's allowlist variable, honoured for inherited TCP
// sockets since spawn-fcgi and mod_fcgid users already set it.
const envWebServerAddrs = "FCGI_WEB_SERVER_ADDRS"

// checkListening reports why fd cannot be used as a listening stream socket, or nil.
func checkListening(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("descriptor %d is not a socket: %w", fd, err)
	}
	if typ != unix.SOCK_STREAM {
		return fmt.Errorf("descriptor %d is not a stream socket", fd)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fmt.Errorf("descriptor %d: query SO_ACCEPTCONN: %w", fd, err)
	}
	if acc == 0 {
		return fmt.Errorf("descriptor %d is a socket but not listening", fd)
	}
	return nil
}

// takeListener turns descriptor fd into a net.Listener and gives up fd itself.
// Descriptors 0-2 are pointed at /dev/null instead of closed, so that stdio stays
// valid and a later open cannot land on them; os.Stdin and friends keep fds 0-2
// and must not be closed behind their backs.
func takeListener(fd int, name string) (net.Listener, error) {
	if err := checkListening(fd); err != nil {
		return nil, err
	}
	// Work on a private duplicate so the only *os.File (and its finalizer) ever
	// made for this socket owns a descriptor nothing else refers to.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, sdListenFDsStart)
	if err != nil {
		return nil, fmt.Errorf("duplicate descriptor %d: %w", fd, err)
	}
	f := os.NewFile(uintptr(dup), name)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("use descriptor %d as a listener: %w", fd, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		// Whoever bound the file owns it.
		ul.SetUnlinkOnClose(false)
	}
	if err := releaseFD(fd); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// releaseFD closes fd, or for 0-2 re-opens /dev/null onto it.
func releaseFD(fd int) error {
	if fd > 2 {
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("close descriptor %d: %w", fd, err)
		}
		return nil
	}
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null for descriptor %d: %w", fd, err)
	}
	defer unix.Close(null)
	// dup3 replaces fd atomically: there is no moment at which it is free.
	if err := unix.Dup3(null, fd, 0); err != nil {
		return fmt.Errorf("re-open /dev/null onto descriptor %d: %w", fd, err)
	}
	return nil
}

// wrapInherited builds a Listener for a socket the bridge did not create: its file
// (if any) is never removed, and TCP peers are filtered.
func wrapInherited(ln net.Listener, spec string, allow []netip.Prefix, log hclog.Logger) *Listener {
	if _, ok := ln.(*net.TCPListener); ok {
		return &Listener{Listener: newFilterListener(ln, spec, allow, log), Spec: spec}
	}
	return &Listener{Listener: ln, Spec: spec}
}

func openFD(spec string, fd int, o Options, log hclog.Logger) (*Listener, error) {
	ln, err := takeListener(fd, spec)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	if _, ok := ln.(*net.TCPListener); ok {
		if err := checkBound(spec, ln, o.AllowFrom); err != nil {
			ln.Close()
			return nil, err
		}
	}
	log.Debug("listening", "spec", spec, "addr", ln.Addr().String())
	return wrapInherited(ln, spec, o.AllowFrom, log), nil
}

// Inherited returns the sockets handed over at start when no --listen was given:
// systemd socket activation (LISTEN_PID equal to our pid, LISTEN_FDS descriptors from
// 3, names from LISTEN_FDNAMES), else fd 0 when it is a listening socket (how
// spawn-fcgi, lighttpd bin-path and mod_fcgid start FastCGI apps), after which
// /dev/null is re-opened onto fd 0. LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are
// always unset. It returns an empty slice and no error when nothing was inherited.
//
// Inherited TCP sockets accept loopback peers and those listed in
// FCGI_WEB_SERVER_ADDRS; Listener.SetAllowFrom replaces that list. A nil log
// discards messages.
func Inherited(log hclog.Logger) ([]*Listener, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	pid, nfds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	// Unset even when the values were meant for another process: they must not
	// reach CGI programs or anything else the bridge starts.
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(k)
	}

	var allow []netip.Prefix
	allowLoaded := false
	loadAllow := func() ([]netip.Prefix, error) {
		if !allowLoaded {
			v := os.Getenv(envWebServerAddrs)
			p, err := ParseAllowFrom([]string{v})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", envWebServerAddrs, err)
			}
			allow, allowLoaded = p, true
		}
		return allow, nil
	}
	adopt := func(ln net.Listener, spec string) (*Listener, error) {
		if _, ok := ln.(*net.TCPListener); !ok {
			return wrapInherited(ln, spec, nil, log), nil
		}
		a, err := loadAllow()
		if err != nil {
			ln.Close()
			return nil, err
		}
		if ip, ok := peerAddr(ln.Addr()); len(a) == 0 && (!ok || !ip.IsLoopback()) {
			log.Warn("inherited TCP socket is not on loopback and no allowlist is set; only loopback peers will be accepted",
				"listen", spec, "addr", ln.Addr().String(), "hint", "set --allow-from or "+envWebServerAddrs)
		}
		return wrapInherited(ln, spec, a, log), nil
	}

	if pid != "" && pid == strconv.Itoa(os.Getpid()) {
		n, err := strconv.Atoi(nfds)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("systemd socket activation: LISTEN_FDS=%q is not a count", nfds)
		}
		var fdNames []string
		if names != "" {
			fdNames = strings.Split(names, ":")
		}
		if len(fdNames) != n {
			// systemd always sends one name per descriptor; a mismatch means
			// the names cannot be trusted to line up.
			fdNames = nil
		}
		var out []*Listener
		closeAll := func() {
			for _, l := range out {
				l.Close()
			}
		}
		for i := range n {
			fd := sdListenFDsStart + i
			name := "fd" + strconv.Itoa(fd)
			if fdNames != nil && fdNames[i] != "" {
				name = fdNames[i]
			}
			spec := "systemd:" + name
			ln, err := takeListener(fd, spec)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("systemd socket activation, %s: %w (the .socket unit needs ListenStream= and Accept=no)", spec, err)
			}
			l, err := adopt(ln, spec)
			if err != nil {
				closeAll()
				return nil, err
			}
			log.Debug("listening", "spec", spec, "addr", ln.Addr().String())
			out = append(out, l)
		}
		if len(out) > 0 {
			return out, nil
		}
	}

	if checkListening(0) != nil {
		return []*Listener{}, nil
	}
	ln, err := takeListener(0, "fd:0")
	if err != nil {
		return nil, fmt.Errorf("inherited socket on fd 0: %w", err)
	}
	l, err := adopt(ln, "fd:0")
	if err != nil {
		return nil, err
	}
	log.Debug("listening", "spec", "fd:0", "addr", ln.Addr().String())
	return []*Listener{l}, nil
}

// CloseOnExecInherited marks every open descriptor from 3 up close-on-exec, so
// descriptors the bridge inherited never reach programs it starts. Call it at
// start-up; descriptors Go opens itself are already close-on-exec.
func CloseOnExecInherited() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open descriptors: %w", err)
	}
	var errs []error
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if errors.Is(err, unix.EBADF) {
			// The directory listing's own descriptor, closed by now.
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("descriptor %d: get flags: %w", fd, err))
			continue
		}
		if flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC); err != nil {
			errs = append(errs, fmt.Errorf("descriptor %d: set close-on-exec: %w", fd, err))
		}
	}
	return errors.Join(errs...)
}
