package spawn

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/process"
)

// listening opens a listening socket the way the supervisor does: unix
// or tcp.
func listening(t *testing.T, network string) (*socket, net.Listener) {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "s")
	if network == "tcp" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s, err := socketOf(ln, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.file.Close() })
	return s, ln
}

// accept dials sock and accepts the connection, returning the accepted end.
func accept(t *testing.T, sock *socket, ln net.Listener) *os.File {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fd, _, err := syscall.Accept(int(sock.file.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "accepted")
}

// startSleeper starts sleep with the listening socket on fd 0 and stdout
// as given (nil: /dev/null), and reaps it at the end.
func startSleeper(t *testing.T, sock *socket, stdout *os.File) *process.Child {
	t.Helper()
	c, err := process.Start(context.Background(), &process.Spec{
		Path: "/bin/sleep", Argv: []string{"sleep", "30"}, Stdin: sock.file, Stdout: stdout, CgroupFD: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if stdout != nil {
		stdout.Close() // the child has it now
	}
	t.Cleanup(func() {
		process.KillGroup(c.PID(), syscall.SIGKILL)
		c.Wait()
	})
	return c
}

func state(t *testing.T, pid int) byte {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	st, _, _, ok := parseStat(data)
	if !ok {
		t.Fatalf("cannot parse %q", data)
	}
	return st
}

// probeUntilIdle probes for up to 5s: until its exec is done a new process
// still holds what the test process had.
func probeUntilIdle(t *testing.T, pid int, sock *socket) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if idle, _ := probeIdle(pid, sock); idle {
			return true
		}
	}
	return false
}

func TestProbeFreezesAChildWithNoFastCGIConnection(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			sock, _ := listening(t, network)
			// Sockets that are no FastCGI connection: a datagram socket
			// (syslog's kind) and a connection to another server.
			dgram, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, otherLn := listening(t, network)
			out, err := net.Dial(otherLn.Addr().Network(), otherLn.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			outFile, err := out.(interface{ File() (*os.File, error) }).File()
			if err != nil {
				t.Fatal(err)
			}
			// One child holds the outgoing connection, another the
			// datagram socket.
			c := startSleeper(t, sock, outFile)
			c2 := startSleeper(t, sock, os.NewFile(uintptr(dgram), "dgram"))
			for _, pid := range []int{c.PID(), c2.PID()} {
				if !probeUntilIdle(t, pid, sock) {
					t.Fatalf("pid %d holds no FastCGI connection but is not idle", pid)
				}
				if st := state(t, pid); st != 'T' {
					t.Errorf("an idle child is left in state %c, want T (stopped, for the caller to kill)", st)
				}
			}
		})
	}
}

func TestProbeContinuesAChildHoldingAnAcceptedConnection(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			sock, ln := listening(t, network)
			c := startSleeper(t, sock, accept(t, sock, ln))
			time.Sleep(50 * time.Millisecond) // past its exec
			for range 20 {
				idle, err := probeIdle(c.PID(), sock)
				if idle || err != nil {
					t.Fatalf("a child holding an accepted connection: idle %v, err %v", idle, err)
				}
				// SIGCONT is asynchronous too: wait for it to land.
				deadline := time.Now().Add(2 * time.Second)
				for state(t, c.PID()) == 'T' {
					if time.Now().After(deadline) {
						t.Fatal("a busy child was left stopped")
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
}

func TestProbeOfAnExitedGroupIsNotIdle(t *testing.T) {
	sock, _ := listening(t, "unix")
	c := startSleeper(t, sock, nil)
	process.KillGroup(c.PID(), syscall.SIGKILL)
	c.Wait()
	if idle, _ := probeIdle(c.PID(), sock); idle {
		t.Fatal("a reaped child counts as idle")
	}
}

func TestParseStatReadsFieldsAfterAnOddCommandName(t *testing.T) {
	st, ppid, pgrp, ok := parseStat([]byte("42 (a) b (c) S 7 42 42 0 -1 4194560"))
	if !ok || st != 'S' || ppid != 7 || pgrp != 42 {
		t.Fatalf("parseStat = %c %d %d %v", st, ppid, pgrp, ok)
	}
	if _, _, _, ok := parseStat([]byte("garbage")); ok {
		t.Fatal("parsed garbage")
	}
}
