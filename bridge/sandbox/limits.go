// This file holds per-program resource limits and their encoding on the exec shim's
// command line, the one place the bridge and the shim must agree.

package sandbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits are per-program resource limits, each set as both soft and hard limit before
// the program's first instruction; zero fields mean "inherit the bridge's".
type Limits struct {
	CPUSeconds   uint64 // RLIMIT_CPU: SIGXCPU, i.e. death, after this much CPU time
	AddressSpace uint64 // RLIMIT_AS in bytes: allocations beyond it fail
	OpenFiles    uint64 // RLIMIT_NOFILE: highest file descriptor number + 1
	Processes    uint64 // RLIMIT_NPROC: processes of the real uid; does not bind root
	FileSize     uint64 // RLIMIT_FSIZE in bytes: SIGXFSZ on writing past it
}

// IsZero reports whether no limit is set, so the shim can be skipped.
func (l Limits) IsZero() bool { return l == Limits{} }

// ShimArg is the hidden argv[1] that makes the cgibridge binary act as the exec shim.
const ShimArg = "__cgibridge-exec"

// noLimits encodes Limits{} on the shim's command line; an empty argument would be
// easy to lose in logs and shell quoting.
const noLimits = "none"

// limitKeys names each limit on the command line, in encoding order, with its rlimit.
var limitKeys = []struct {
	key      string
	resource int
	field    func(*Limits) *uint64
}{
	{"cpu", unix.RLIMIT_CPU, func(l *Limits) *uint64 { return &l.CPUSeconds }},
	{"as", unix.RLIMIT_AS, func(l *Limits) *uint64 { return &l.AddressSpace }},
	{"nofile", unix.RLIMIT_NOFILE, func(l *Limits) *uint64 { return &l.OpenFiles }},
	{"nproc", unix.RLIMIT_NPROC, func(l *Limits) *uint64 { return &l.Processes }},
	{"fsize", unix.RLIMIT_FSIZE, func(l *Limits) *uint64 { return &l.FileSize }},
}

// String encodes the limits as the shim reads them, e.g. "cpu=10,as=268435456", or
// "none" when no limit is set.
func (l Limits) String() string {
	var parts []string
	for _, k := range limitKeys {
		if v := *k.field(&l); v != 0 {
			parts = append(parts, k.key+"="+strconv.FormatUint(v, 10))
		}
	}
	if len(parts) == 0 {
		return noLimits
	}
	return strings.Join(parts, ",")
}

// ParseLimits reads the encoding String produces. It is strict (no unknown keys,
// duplicates, zero values or spaces) because only the bridge writes it, so anything
// else is a bug worth failing loudly on.
func ParseLimits(s string) (Limits, error) {
	var l Limits
	if s == noLimits {
		return l, nil
	}
	if s == "" {
		return l, errors.New("parse limits: empty")
	}
	seen := make(map[string]bool)
	for part := range strings.SplitSeq(s, ",") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return Limits{}, fmt.Errorf("parse limits: %q is not key=value", part)
		}
		var dst *uint64
		for _, k := range limitKeys {
			if k.key == key {
				dst = k.field(&l)
			}
		}
		if dst == nil {
			return Limits{}, fmt.Errorf("parse limits: unknown limit %q", key)
		}
		if seen[key] {
			return Limits{}, fmt.Errorf("parse limits: %q given twice", key)
		}
		seen[key] = true
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return Limits{}, fmt.Errorf("parse limits: %s: %w", key, err)
		}
		if n == 0 {
			return Limits{}, fmt.Errorf("parse limits: %s=0: zero means unset and is never encoded", key)
		}
		*dst = n
	}
	return l, nil
}

// Wrap returns the argv that runs the program at path, with argv as its
// argv, under the shim with the limits: {self, ShimArg, l.String(), path,
// "--", argv...}. path is absolute, or a bare name looked up in the PATH of
// the environment the shim is given; argv[0] is what the program sees as
// its name, which may differ from path.
func Wrap(self string, l Limits, path string, argv []string) []string {
	out := make([]string, 0, len(argv)+5)
	out = append(out, self, ShimArg, l.String(), path, "--")
	return append(out, argv...)
}

// unwrap is Wrap's inverse: it splits a full shim command line into limits,
// the path to execute and its argv.
func unwrap(args []string) (Limits, string, []string, error) {
	if len(args) < 6 || args[1] != ShimArg || args[4] != "--" {
		return Limits{}, "", nil, fmt.Errorf("bad invocation: want SELF %s LIMITS PATH -- ARGV0 [ARGS...], got %d arguments", ShimArg, len(args))
	}
	if args[3] == "" || args[5] == "" {
		return Limits{}, "", nil, errors.New("bad invocation: empty program name")
	}
	l, err := ParseLimits(args[2])
	if err != nil {
		return Limits{}, "", nil, fmt.Errorf("bad invocation: %w", err)
	}
	return l, args[3], args[5:], nil
}
