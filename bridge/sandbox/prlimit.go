// This file holds the cheaper way to apply Limits: util-linux's prlimit(1),
// a small C program present on every Debian system (util-linux is
// Essential), which sets the limits on itself and executes the program. It
// costs one exec of a small binary (under a millisecond here) where the Go
// shim costs a second Go runtime start-up (several milliseconds).

package sandbox

import (
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// FindPrlimit returns the path of prlimit(1), or "" when it is missing.
func FindPrlimit() string {
	for _, p := range []string{"/usr/bin/prlimit", "/bin/prlimit"} {
		if unix.Access(p, unix.X_OK) == nil {
			return p
		}
	}
	if p, err := exec.LookPath("prlimit"); err == nil {
		return p
	}
	return ""
}

// prlimitFlags maps each limit to prlimit's option.
var prlimitFlags = map[string]string{
	"cpu": "--cpu", "as": "--as", "nofile": "--nofile", "nproc": "--nproc", "fsize": "--fsize",
}

// WrapPrlimit returns the argv that runs argv under prlimit with the limits,
// with the same semantics as the Go shim: soft = hard, except CPU time whose
// hard limit is one second higher (SIGXCPU before SIGKILL), and no limit
// above the bridge's own hard limit (an unprivileged prlimit could not
// raise it, and would fail instead of running the program).
func WrapPrlimit(prlimit string, l Limits, argv []string) []string {
	out := make([]string, 0, len(argv)+8)
	out = append(out, prlimit)
	for _, k := range limitKeys {
		want := *k.field(&l)
		if want == 0 {
			continue
		}
		var cur unix.Rlimit
		hardMax := uint64(unix.RLIM_INFINITY)
		if unix.Getrlimit(k.resource, &cur) == nil {
			hardMax = cur.Max
		}
		soft := min(want, hardMax)
		hard := soft
		if k.resource == unix.RLIMIT_CPU && soft < hardMax {
			hard = soft + 1
		}
		out = append(out, prlimitFlags[k.key]+"="+strconv.FormatUint(soft, 10)+":"+strconv.FormatUint(hard, 10))
	}
	out = append(out, "--")
	return append(out, argv...)
}
