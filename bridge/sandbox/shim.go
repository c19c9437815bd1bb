// This file holds the exec shim: the cgibridge binary re-executed between fork and the
// CGI program, to set resource limits that os/exec's SysProcAttr cannot express.

package sandbox

import (
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

// ShimMain is the exec shim. main() calls it first thing, with os.Args, when
// os.Args[1] == ShimArg. It sets each limit as soft and hard limit with setrlimit and
// then replaces itself with the program, passing on its own environment unchanged. A
// requested limit above the current hard limit is lowered to it, since an unprivileged
// process may not raise a hard limit and the lower value still honours the request.
// On failure it writes one line "cgibridge-exec: ..." to stderr and exits 126
// (cannot execute, including a script with no #! line) or 127 (not found). It never
// returns.
func ShimMain(args []string) {
	l, argv, err := unwrap(args)
	if err != nil {
		shimFail(ShimExitCannotExec, "%v", err)
	}
	path := argv[0]
	if !strings.Contains(path, "/") {
		// Like execvp: the PATH searched is the one the program will see.
		p, err := exec.LookPath(path)
		if err != nil {
			shimFail(ShimExitNotFound, "%s: not found in PATH", path)
		}
		path = p
	}
	if err := applyLimits(l); err != nil {
		shimFail(ShimExitCannotExec, "%v", err)
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
	shimFail(code, "%s: %s", path, why)
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

// shimFail reports one line on stderr and exits; the bridge relays stderr to its log.
func shimFail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cgibridge-exec: "+format+"\n", args...)
	os.Exit(code)
}
