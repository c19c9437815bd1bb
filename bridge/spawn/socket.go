// This file opens the one listening socket all children share.
//
// The supervisor keeps the socket open for its whole life. That is what
// lets it start replacement children on it, and it means a connection that
// waits in the backlog while a child is being replaced or restarted is
// served by the next child instead of refused. The other side of that
// choice: while every child is down (a program that crashes at once, in
// its restart backoff), connections are accepted by the kernel and wait
// rather than fail at once. When the supervisor itself is gone, even by
// kill -9, its copy goes with it and its children die with it (parent-death
// signal), so no process holds the socket any more: it refuses connections,
// and the next start sees it is stale and replaces it.

package spawn

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// socket is the shared listening socket.
type socket struct {
	file  *os.File // blocking; what every child gets on fd 0
	ino   uint64   // its inode, to tell it from a child's connections
	desc  string   // for the log: unix:/path or tcp:HOST:PORT
	close func() error

	// What connections accepted from it have in /proc/net (see
	// accepted): the socket file's path, or the TCP port.
	unixPath string
	tcpPort  int
}

// openSocket binds the socket the plan names with its backlog. A unix
// socket goes through bridge/listen: a stale socket file is removed, a live
// one is refused, the file has its mode from the start and is removed on
// close only if it is still the one bound here.
func openSocket(p *plan, log hclog.Logger) (*socket, error) {
	var ln net.Listener
	var closeLn func() error
	switch {
	case p.unixPath != "":
		l, err := listen.Open("unix:"+p.unixPath, p.listenOpts, log)
		if err != nil {
			return nil, err
		}
		ln, closeLn = l.Listener, l.Close
	default:
		l, err := net.Listen("tcp", p.tcpAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", p.tcpAddr, err)
		}
		if !loopbackOnly(l.Addr(), p.listenOpts.AllowFrom) {
			l.Close()
			return nil, fmt.Errorf("listen on %s: not a loopback address, so any host could talk to the program; "+
				"list the web servers with --allow-from (or FCGI_WEB_SERVER_ADDRS), which libfcgi and php-cgi children enforce, or use -a 127.0.0.1", l.Addr())
		}
		ln, closeLn = l, l.Close
	}
	s, err := socketOf(ln, p.cfg.Backlog)
	if err != nil {
		closeLn()
		return nil, err
	}
	s.desc = "tcp:" + ln.Addr().String()
	if p.unixPath != "" {
		s.desc = "unix:" + p.unixPath
	}
	s.close = func() error {
		err := s.file.Close()
		if cerr := closeLn(); cerr != nil {
			err = cerr
		}
		return err
	}
	return s, nil
}

// socketOf takes a duplicate of ln's descriptor for the children, in
// blocking mode (libfcgi's accept loop gives up on EAGAIN), and sets the
// backlog: listen(2) again on a listening socket changes it.
func socketOf(ln net.Listener, backlog int) (*socket, error) {
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("listener %T has no descriptor", ln)
	}
	f, err := fl.File()
	if err != nil {
		return nil, fmt.Errorf("duplicate the listening socket: %w", err)
	}
	// Fd puts the descriptor in blocking mode. O_NONBLOCK belongs to the
	// open file, so the net listener's descriptor becomes blocking too;
	// nothing accepts on that one.
	fd := int(f.Fd())
	if err := syscall.Listen(fd, backlog); err != nil {
		f.Close()
		return nil, fmt.Errorf("set listen backlog %d: %w", backlog, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat the listening socket: %w", err)
	}
	s := &socket{file: f, ino: st.Ino}
	switch a := ln.Addr().(type) {
	case *net.UnixAddr:
		s.unixPath = a.Name
	case *net.TCPAddr:
		s.tcpPort = a.Port
	}
	return s, nil
}
