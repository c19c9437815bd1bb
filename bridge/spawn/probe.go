// This file tells whether a child is between requests, so that a rolling
// restart can end it without failing the request it serves.
//
// Children accept from one shared socket, and nothing in FastCGI lets the
// supervisor ask one of them to stop accepting: libfcgi programs die on
// SIGTERM at once, mid-request or not. So the supervisor looks: it freezes
// the child's process group with SIGSTOP, and once every process of it is
// stopped, checks whether any holds a socket other than the listening one.
// An accepted connection is a descriptor installed before accept returns,
// and a stopped process cannot accept another, so a frozen group holding
// none has no request and cannot get one: it is killed as it stands, and
// the connections waiting in the backlog go to the other children. A busy
// group is continued at once (SIGSTOP/SIGCONT restart the system calls
// they interrupt) and looked at again a moment later.
//
// Other sockets a program keeps (syslog's /dev/log, a database) are no
// FastCGI connection: the kernel's socket tables (/proc/net/unix, tcp,
// tcp6) tell the accepted ones apart, as they carry the listening socket's
// path or port.

package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopWait bounds how long a group may take to stop before it counts as
// busy (a process in an uninterruptible sleep stops only when it leaves it).
const stopWait = 200 * time.Millisecond

// probeIdle freezes process group pgid and reports whether it is idle. When
// idle is true the group is left stopped for the caller to kill; otherwise
// it has been continued. A group with no process left is not idle: its
// owner sees the exit.
func probeIdle(pgid int, sock *socket) (idle bool, err error) {
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		return false, err
	}
	idle, err = frozenIdle(pgid, sock)
	if !idle {
		syscall.Kill(-pgid, syscall.SIGCONT)
	}
	return idle, err
}

func frozenIdle(pgid int, sock *socket) (bool, error) {
	members, err := groupMembers(pgid)
	if err != nil || len(members) == 0 {
		return false, err
	}
	deadline := time.Now().Add(stopWait)
	for _, pid := range members {
		for !stopped(pid) {
			if time.Now().After(deadline) {
				return false, nil
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	var others []uint64
	for _, pid := range members {
		inos, err := socketInodes(pid, sock.ino)
		if err != nil {
			return false, err
		}
		others = append(others, inos...)
	}
	if len(others) == 0 {
		return true, nil
	}
	accepted, err := sock.accepted()
	if err != nil {
		return false, err
	}
	for _, ino := range others {
		if accepted[ino] {
			return false, nil
		}
	}
	return true, nil
}

// groupMembers lists the processes in process group pgid.
func groupMembers(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if _, _, pgrp, ok := parseStat(data); ok && pgrp == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// parseStat returns the state, ppid and process group from /proc/PID/stat.
// The command name is in parentheses and may hold anything, so the fields
// are counted from the last ')'.
func parseStat(data []byte) (state byte, ppid, pgrp int, ok bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return f[0][0], ppid, pgrp, true
}

// stopped reports whether every thread of process pid is stopped (or the
// process is gone: it holds nothing then).
func stopped(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		state, _, _, ok := parseStat(data)
		if !ok {
			return false
		}
		switch state {
		case 'T', 't', 'Z', 'X':
		default:
			return false
		}
	}
	return true
}

// socketInodes returns the inodes of the sockets process pid has open,
// but the listening socket's. A process that cannot be inspected is an
// error (it then counts as busy); one that is gone holds nothing.
func socketInodes(pid int, listenIno uint64) ([]uint64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var inos []uint64
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // gone meanwhile
		}
		n, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(n, "]"), 10, 64)
		if err == nil && ino != listenIno {
			inos = append(inos, ino)
		}
	}
	return inos, nil
}

// accepted returns the inodes of the connections accepted from the
// listening socket that exist now, from the kernel's socket tables: an
// accepted unix connection carries the path the listening socket was bound
// to, an accepted TCP connection its local port.
func (s *socket) accepted() (map[uint64]bool, error) {
	set := map[uint64]bool{}
	if s.unixPath != "" {
		data, err := os.ReadFile("/proc/net/unix")
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(data)) {
			// Num RefCount Protocol Flags Type St Inode Path
			f := strings.Fields(line)
			if len(f) >= 8 && strings.Join(f[7:], " ") == s.unixPath {
				if ino, err := strconv.ParseUint(f[6], 10, 64); err == nil && ino != s.ino {
					set[ino] = true
				}
			}
		}
		return set, nil
	}
	port := fmt.Sprintf(":%04X", s.tcpPort)
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(data)) {
			// sl local_address rem_address st ... uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || !strings.HasSuffix(f[1], port) || f[3] == tcpListen {
				continue
			}
			if ino, err := strconv.ParseUint(f[9], 10, 64); err == nil && ino != 0 {
				set[ino] = true
			}
		}
	}
	return set, nil
}

// tcpListen is TCP_LISTEN in /proc/net/tcp's st column.
const tcpListen = "0A"
