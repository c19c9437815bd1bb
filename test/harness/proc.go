// This file holds the /proc readers that leak tests use: whether a process is gone,
// its descendants, and how many descriptors it holds open.
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// procStat is the part of /proc/PID/stat the harness needs.
type procStat struct {
	PID   int
	Comm  string
	State byte // R, S, D, Z, T, ...
	PPID  int
}

// parseStat parses the contents of /proc/PID/stat. The command name sits in
// parentheses and may itself contain spaces and ')', so the fields after it are
// found from the last ')'.
func parseStat(data []byte) (procStat, error) {
	var st procStat
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 1 || closing < open {
		return st, errors.New("parse stat: no (comm)")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil || pid <= 0 {
		return st, fmt.Errorf("parse stat: bad pid %q", data[:open])
	}
	// After ") " come state and ppid, then fields the harness does not use.
	rest := bytes.Fields(data[closing+1:])
	if len(rest) < 2 || len(rest[0]) != 1 {
		return st, errors.New("parse stat: missing state or ppid")
	}
	ppid, err := strconv.Atoi(string(rest[1]))
	if err != nil || ppid < 0 {
		return st, fmt.Errorf("parse stat: bad ppid %q", rest[1])
	}
	st.PID, st.Comm, st.State, st.PPID = pid, string(data[open+1:closing]), rest[0][0], ppid
	return st, nil
}

// readStat reads and parses /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// WaitGone polls until process pid has exited or d has passed. A zombie counts as
// exited (it runs no code and holds no descriptors); Children still lists zombies,
// so a parent that fails to reap shows up there.
func WaitGone(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		st, err := readStat(pid)
		// A process that exits between the open and the read of its stat
		// file makes the read fail with ESRCH: gone too.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || (err == nil && st.State == 'Z') {
			return nil
		}
		if err != nil {
			return fmt.Errorf("wait for pid %d to exit: %w", pid, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d (%s) still running (state %c) after %v", pid, st.Comm, st.State, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Children returns the pids of all descendants of pid (children, grandchildren, ...),
// zombies included, in ascending order. Descendants that daemonized away (re-parented
// to init or a subreaper) are not found: they are no longer in pid's tree.
func Children(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	byParent := make(map[int][]int)
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process directory
		}
		st, err := readStat(p)
		if err != nil {
			continue // exited while we were looking
		}
		byParent[st.PPID] = append(byParent[st.PPID], p)
	}
	var found []int
	queue := []int{pid}
	for len(queue) > 0 {
		kids := byParent[queue[0]]
		queue = queue[1:]
		found = append(found, kids...)
		queue = append(queue, kids...)
	}
	slices.Sort(found)
	return found, nil
}

// OpenFDs returns how many file descriptors process pid has open.
func OpenFDs(pid int) (int, error) {
	entries, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return 0, fmt.Errorf("count open fds of pid %d: %w", pid, err)
	}
	return len(entries), nil
}

// closeInheritedOnExec marks every descriptor of this process from 3 up
// close-on-exec. Go opens its own descriptors that way, but ones inherited from
// whatever ran `go test` (a shell, a CI runner) are not, and would otherwise reach
// cgibridge and nginx and skew the descriptor counts leak tests compare.
func closeInheritedOnExec() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list own fds: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		// The directory's own descriptor is closed by now: EBADF is expected.
		syscall.CloseOnExec(fd)
	}
	return nil
}
