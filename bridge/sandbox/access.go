// This file holds the start-up access check: before it serves, a root bridge
// asks, as the user its programs (or it itself, after the drop) will run as,
// whether the paths they need are reachable. The question is put to the
// kernel by a child process running as that user, so ACLs, groups and
// mount options all count, not a guess from mode bits. The child is
// /bin/sh's test(1), not the bridge's own binary: that may itself sit where
// the user cannot reach it (go run builds into a 0700 directory).

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Need is one path and what a user must be able to do with it.
type Need struct {
	Path string
	// Mode is what the path itself needs: unix.R_OK, W_OK, X_OK or'ed.
	// Every directory above it always needs search (X_OK).
	Mode uint32
	What string // what the path is for, for the error: "--root", "--temp-dir"
}

// AccessError says which path a user cannot reach, and where on the way.
type AccessError struct {
	Need    Need
	User    *Identity
	Blocked string // the path where the walk stopped: Need.Path or a directory above it
	Missing string // what was refused there: "search", "read", "write"; or "exist"
	// Resolved is Need.Path with its symlinks resolved: the path walked.
	Resolved string
}

// ErrCheckFailed wraps a failure to run the check at all (no /bin/sh, a
// hung file system): the caller may go on without it.
var ErrCheckFailed = errors.New("cannot check access")

// checkTimeout bounds the check: a hung network file system must not
// hang the start.
const checkTimeout = 10 * time.Second

func (e *AccessError) Error() string {
	who := e.User.Name
	if e.Missing == "exist" {
		return fmt.Sprintf("%s %s: %s does not exist", e.Need.What, e.Need.Path, e.Blocked)
	}
	if e.Blocked != e.Need.Path && e.Blocked != e.Resolved {
		where := "a directory on the way to it" // through a symlink
		if strings.HasPrefix(filepath.Clean(e.Need.Path), strings.TrimSuffix(e.Blocked, "/")+"/") {
			where = "a directory above it"
		}
		return fmt.Sprintf("%s %s: user %s cannot %s %s, %s", e.Need.What, e.Need.Path, who, e.Missing, e.Blocked, where)
	}
	return fmt.Sprintf("%s %s: user %s cannot %s it", e.Need.What, e.Need.Path, who, e.Missing)
}

// checkScript walks each MODE:PATH argument from / with test(1): search
// on every directory above PATH, then MODE (letters r, w, x) on PATH. At
// the first refusal it prints INDEX TAB BLOCKED TAB MISSING and exits 1.
const checkScript = `i=0
for spec; do
  mode=${spec%%:*} p=${spec#*:} dir=/ rest=${spec#*:/}
  while [ -n "$rest" ]; do
    [ -x "$dir" ] || { printf '%s\t%s\tsearch\n' "$i" "$dir"; exit 1; }
    case $rest in
      */*) elem=${rest%%/*} rest=${rest#*/} ;;
      *) elem=$rest rest= ;;
    esac
    [ -z "$elem" ] || dir=${dir%/}/$elem
  done
  [ -e "$p" ] || { printf '%s\t%s\texist\n' "$i" "$p"; exit 1; }
  case $mode in *r*) [ -r "$p" ] || { printf '%s\t%s\tread\n' "$i" "$p"; exit 1; } ;; esac
  case $mode in *w*) [ -w "$p" ] || { printf '%s\t%s\twrite\n' "$i" "$p"; exit 1; } ;; esac
  case $mode in *x*) [ -x "$p" ] || { printf '%s\t%s\tsearch\n' "$i" "$p"; exit 1; } ;; esac
  i=$((i+1))
done`

// CheckAccess runs the check as id and reports the first need id cannot
// meet, as an *AccessError; nil when all are met. A nil id checks as the
// bridge.
func CheckAccess(id *Identity, needs []Need) error {
	if len(needs) == 0 {
		return nil
	}
	args := []string{"-c", checkScript, "cgibridge-check"}
	resolved := make([]string, len(needs))
	for i, n := range needs {
		if !filepath.IsAbs(n.Path) || strings.ContainsAny(n.Path, "\x00\n\t") {
			return fmt.Errorf("%s %q: not an absolute path without NUL, tab or newline", n.What, n.Path)
		}
		// Walked resolved, so that a refusal names the directory that
		// blocks, not a link on the way to it.
		resolved[i] = filepath.Clean(n.Path)
		if r, err := filepath.EvalSymlinks(n.Path); err == nil && !strings.ContainsAny(r, "\n\t") {
			resolved[i] = r
		}
		mode := ""
		for _, m := range []struct {
			bit uint32
			c   string
		}{{unix.R_OK, "r"}, {unix.W_OK, "w"}, {unix.X_OK, "x"}} {
			if n.Mode&m.bit != 0 {
				mode += m.c
			}
		}
		args = append(args, mode+":"+resolved[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: id.Credential(), Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || ctx.Err() != nil {
		return fmt.Errorf("%w as %s: %v", ErrCheckFailed, id, err)
	}
	f := strings.SplitN(strings.TrimSpace(out.String()), "\t", 3)
	var i int
	if len(f) != 3 {
		return fmt.Errorf("%w as %s: bad answer %q", ErrCheckFailed, id, out.String())
	}
	if _, err := fmt.Sscan(f[0], &i); err != nil || i < 0 || i >= len(needs) {
		return fmt.Errorf("%w as %s: bad answer %q", ErrCheckFailed, id, out.String())
	}
	user := id
	if user == nil {
		user = &Identity{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()), Name: fmt.Sprint(os.Geteuid())}
	}
	blocked, missing := f[1], f[2]
	if missing == "search" && blocked == resolved[i] {
		if fi, err := os.Stat(blocked); err == nil && !fi.IsDir() {
			missing = "execute"
		}
	}
	return &AccessError{Need: needs[i], User: user, Blocked: blocked, Missing: missing, Resolved: resolved[i]}
}
