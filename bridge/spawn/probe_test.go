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
	"golang.org/x/sys/unix"
)

// listening opens a unix listening socket the way the supervisor does.
func listening(t *testing.T) *socket {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s, err := socketOf(ln, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.file.Close() })
	return s
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

func TestProbeFreezesAChildHoldingOnlyTheListeningSocket(t *testing.T) {
	sock := listening(t)
	c := startSleeper(t, sock, nil)
	var idle bool
	var err error
	// Until the exec is done the process still holds what the test
	// process had: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !idle && time.Now().Before(deadline); {
		if idle, err = probeIdle(c.PID(), sock.ino); !idle {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !idle {
		t.Fatalf("a process holding only the listening socket is not idle (err %v)", err)
	}
	if st := state(t, c.PID()); st != 'T' {
		t.Errorf("an idle child is left in state %c, want T (stopped, for the caller to kill)", st)
	}
}

func TestProbeContinuesAChildHoldingAConnection(t *testing.T) {
	sock := listening(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn, peer := os.NewFile(uintptr(fds[0]), "conn"), os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	c := startSleeper(t, sock, conn)
	conn.Close()
	for range 20 {
		idle, err := probeIdle(c.PID(), sock.ino)
		if idle || err != nil {
			t.Fatalf("a child holding a connection: idle %v, err %v", idle, err)
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
}

func TestProbeOfAnExitedGroupIsNotIdle(t *testing.T) {
	sock := listening(t)
	c := startSleeper(t, sock, nil)
	process.KillGroup(c.PID(), syscall.SIGKILL)
	c.Wait()
	if idle, _ := probeIdle(c.PID(), sock.ino); idle {
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
