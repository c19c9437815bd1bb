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

package spawn

import (
	"bytes"
	"errors"
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
func probeIdle(pgid int, listenIno uint64) (idle bool, err error) {
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		return false, err
	}
	idle, err = frozenIdle(pgid, listenIno)
	if !idle {
		syscall.Kill(-pgid, syscall.SIGCONT)
	}
	return idle, err
}

func frozenIdle(pgid int, listenIno uint64) (bool, error) {
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
	for _, pid := range members {
		busy, err := holdsConnection(pid, listenIno)
		if err != nil || busy {
			return false, err
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

// holdsConnection reports whether process pid has a socket open other than
// the listening socket with inode listenIno. A process that cannot be
// inspected counts as busy.
func holdsConnection(pid int, listenIno uint64) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	listening := "socket:[" + strconv.FormatUint(listenIno, 10) + "]"
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if strings.HasPrefix(target, "socket:[") && target != listening {
			return true, nil
		}
	}
	return false, nil
}
