// This file holds the exec shim: the cgibridge binary re-executed between fork and the
// CGI program, to set resource limits that os/exec's SysProcAttr cannot express.

package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit statuses of the shim, as a shell reports them.
const (
	ShimExitCannotExec = 126 // found but could not be executed (or bad shim arguments)
	ShimExitNotFound   = 127 // no such program
)

// ShimStatusFD is the descriptor on which the bridge hears how the shim's exec went:
// when it is a pipe, a failure writes the errno there (4 bytes, native order; 0 when
// the limits could not be set) instead of a line on stderr, and a successful exec
// closes it (it is made close-on-exec). The bridge then reports the failure exactly
// as it would without limits: a script without #! is refused, not run by /bin/sh,
// and "permission denied" stays a 403.
const ShimStatusFD = 3

// ShimMain is the exec shim. main() calls it first thing, with os.Args, when
// os.Args[1] == ShimArg. It sets each limit as soft and hard limit with setrlimit and
// then replaces itself with the program through execve — never a shell fallback —
// passing on its own environment unchanged. A requested limit above the current hard
// limit is lowered to it, since an unprivileged process may not raise a hard limit and
// the lower value still honours the request. On failure it reports on ShimStatusFD
// when that is a pipe, else writes one line "cgibridge-exec: ..." to stderr, and exits
// 126 (cannot execute, including a script with no #! line) or 127 (not found). It
// never returns.
func ShimMain(args []string) {
	status := statusPipe()
	l, path, argv, err := unwrap(args)
	if err != nil {
		shimFail(status, ShimExitCannotExec, 0, "%v", err)
	}
	if !strings.Contains(path, "/") {
		// Like execvp: the PATH searched is the one the program will see.
		p, err := exec.LookPath(path)
		if err != nil {
			shimFail(status, ShimExitNotFound, syscall.ENOENT, "%s: not found in PATH", path)
		}
		path = p
	}
	if err := applyLimits(l); err != nil {
		shimFail(status, ShimExitCannotExec, 0, "%v", err)
	}
	env := os.Environ()
	for attempt := 0; ; attempt++ {
		err = unix.Exec(path, argv, env)
		// ETXTBSY: a just-written file may still be open for writing in a process forked
		// meanwhile (golang/go#22315); it clears within moments.
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 4 {
			break
		}
		time.Sleep(time.Duration(5<<attempt) * time.Millisecond)
	}
	code, why := execFailure(err)
	if code == ShimExitNotFound {
		if _, serr := os.Stat(path); serr == nil {
			// The file is there, so what is missing is the interpreter on its #! line.
			code, why = ShimExitCannotExec, "the interpreter named on its #! line was not found"
		}
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		errno = syscall.EINVAL
	}
	shimFail(status, code, errno, "%s: %s", path, why)
}

// statusPipe returns ShimStatusFD, made close-on-exec, when it is a pipe; else -1.
func statusPipe() int {
	var st unix.Stat_t
	if err := unix.Fstat(ShimStatusFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return -1
	}
	unix.CloseOnExec(ShimStatusFD)
	return ShimStatusFD
}

// applyLimits sets every non-zero limit as soft = hard, except CPU time:
// with soft == hard the kernel sends SIGKILL at once, so the hard CPU limit
// is one second above the soft one, which raises SIGXCPU first (a program
// may catch it to clean up, and the log names the real cause).
func applyLimits(l Limits) error {
	for _, k := range limitKeys {
		want := *k.field(&l)
		if want == 0 {
			continue
		}
		var cur unix.Rlimit
		if err := unix.Getrlimit(k.resource, &cur); err != nil {
			return fmt.Errorf("read limit %s: %w", k.key, err)
		}
		if cur.Max != unix.RLIM_INFINITY && want > cur.Max {
			want = cur.Max
		}
		// unix.Setrlimit goes through syscall.Setrlimit, which also stops Exec from
		// restoring Go's saved soft RLIMIT_NOFILE over ours.
		lim := unix.Rlimit{Cur: want, Max: want}
		if k.resource == unix.RLIMIT_CPU && (cur.Max == unix.RLIM_INFINITY || want < cur.Max) {
			lim.Max = want + 1
		}
		if err := unix.Setrlimit(k.resource, &lim); err != nil {
			return fmt.Errorf("set limit %s=%d: %w", k.key, want, err)
		}
	}
	return nil
}

// execFailure maps an execve error to the shim's exit status and a hint for the log.
func execFailure(err error) (int, string) {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
		return ShimExitNotFound, "not found"
	case errors.Is(err, syscall.ENOEXEC):
		return ShimExitCannotExec, "no #! line — add one or map the extension with --interpreter"
	case errors.Is(err, syscall.EACCES):
		return ShimExitCannotExec, "permission denied (not executable, or a directory on the way is not searchable)"
	default:
		return ShimExitCannotExec, fmt.Sprintf("exec failed: %v", err)
	}
}

// shimFail reports the failure — the errno on the status pipe, or one line on stderr,
// which the bridge relays to its log — and exits.
func shimFail(status, code int, errno syscall.Errno, format string, args ...any) {
	if status >= 0 {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(errno))
		unix.Write(status, b[:])
		os.Exit(code)
	}
	fmt.Fprintf(os.Stderr, "cgibridge-exec: "+format+"\n", args...)
	os.Exit(code)
}
