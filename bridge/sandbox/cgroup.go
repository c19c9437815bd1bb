// This file holds the optional cgroup v2 support: one child cgroup per program under a
// parent the bridge owns, so that memory and process counts are capped for the whole
// process tree and every leftover descendant can be killed at once.

package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupParent is a cgroup v2 directory under which NewChild makes one cgroup per program.
type CgroupParent struct {
	path        string   // absolute file system path of the parent cgroup
	controllers []string // controllers enabled for children (cgroup.subtree_control)
	seq         atomic.Uint64
}

// DefaultCgroupDir is the parent OpenCgroupParent uses for an empty dir: a child of the
// bridge's own cgroup.
const DefaultCgroupDir = "cgibridge-scripts"

// OpenCgroupParent creates (or reuses) the parent cgroup dir and enables the memory and
// pids controllers for its children where its own parent offers them. dir is either
// relative, meaning under the bridge's own cgroup (empty means DefaultCgroupDir), or
// absolute: a cgroup path as /proc/self/cgroup shows it, or a file system path under
// the cgroup v2 mount. No process is moved. The error says why when cgroup v2 is
// absent or not writable; the caller then logs it and carries on without cgroups.
func OpenCgroupParent(dir string) (*CgroupParent, error) {
	mount, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		dir = DefaultCgroupDir
	}
	var rel string
	switch {
	case dir == mount || strings.HasPrefix(dir, mount+"/"):
		rel = filepath.Clean("/" + strings.TrimPrefix(dir, mount))
	case filepath.IsAbs(dir):
		rel = filepath.Clean(dir)
	default:
		own, err := ownCgroup()
		if err != nil {
			return nil, err
		}
		rel = filepath.Join(own, dir)
	}
	// Clean turns any climb above the hierarchy's root into "/" itself, which the bridge
	// must not take over: its processes live there on some systems.
	if rel == "/" {
		return nil, fmt.Errorf("cgroup parent %q: resolves to %q, not a cgroup below the root of %s", dir, rel, mount)
	}
	path := filepath.Join(mount, rel)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup parent %s: cgroup v2 is not writable here: %w", path, err)
	}
	p := &CgroupParent{path: path}
	offered, err := readFields(filepath.Join(path, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup parent %s: not a cgroup v2 directory: %w", path, err)
	}
	for _, c := range []string{"memory", "pids"} {
		if slices.Contains(offered, c) {
			// Best effort: this fails with EBUSY if processes live in the parent itself.
			_ = writeFile(filepath.Join(path, "cgroup.subtree_control"), "+"+c)
		}
	}
	if p.controllers, err = readFields(filepath.Join(path, "cgroup.subtree_control")); err != nil {
		return nil, fmt.Errorf("cgroup parent %s: %w", path, err)
	}
	return p, nil
}

// Path is the parent's file system path, for log lines.
func (p *CgroupParent) Path() string { return p.path }

// Has reports whether children get the named controller ("memory", "pids"), so the
// caller can warn at start-up that a configured limit cannot be enforced.
func (p *CgroupParent) Has(controller string) bool {
	return slices.Contains(p.controllers, controller)
}

// Remove deletes the parent cgroup; it fails while any child cgroup remains.
func (p *CgroupParent) Remove() error {
	if err := unix.Rmdir(p.path); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", p.path, err)
	}
	return nil
}

// NewChild makes the child cgroup name with memory.max and pids.max set (0 = no limit)
// and returns an open directory fd for SysProcAttr{UseCgroupFD: true, CgroupFD: fd},
// plus a cleanup to call after the process is reaped: it closes the fd, kills what is
// left in the cgroup (cgroup.kill) and removes it. A limit whose controller is not
// available (see Has) is an error rather than silently not enforced.
func (p *CgroupParent) NewChild(name string, memMax, pidsMax uint64) (fd int, cleanup func() error, err error) {
	if !validCgroupName(name) {
		return -1, nil, fmt.Errorf("new cgroup %q: name must be 1-64 letters, digits, '-' or '_'", name)
	}
	if memMax > 0 && !p.Has("memory") {
		return -1, nil, fmt.Errorf("new cgroup %s: memory limit requested but the memory controller is not enabled in %s", name, p.path)
	}
	if pidsMax > 0 && !p.Has("pids") {
		return -1, nil, fmt.Errorf("new cgroup %s: process limit requested but the pids controller is not enabled in %s", name, p.path)
	}
	dir := filepath.Join(p.path, name)
	if err := unix.Mkdir(dir, 0o755); err != nil {
		return -1, nil, fmt.Errorf("new cgroup %s: %w", dir, err)
	}
	fail := func(err error) (int, func() error, error) {
		_ = unix.Rmdir(dir)
		return -1, nil, fmt.Errorf("new cgroup %s: %w", dir, err)
	}
	if memMax > 0 {
		if err := writeFile(filepath.Join(dir, "memory.max"), fmt.Sprint(memMax)); err != nil {
			return fail(err)
		}
	}
	if pidsMax > 0 {
		if err := writeFile(filepath.Join(dir, "pids.max"), fmt.Sprint(pidsMax)); err != nil {
			return fail(err)
		}
	}
	fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	var once sync.Once
	var cleanupErr error
	cleanup = func() error {
		once.Do(func() { cleanupErr = removeChild(fd, dir) })
		return cleanupErr
	}
	return fd, cleanup, nil
}

// NewUnique makes a child cgroup named kind-<bridge pid>-<n>, as NewChild
// does. The pid keeps a cgroup left behind by a crashed bridge from colliding
// with a new one; a name taken anyway (EEXIST) moves on to the next n.
func (p *CgroupParent) NewUnique(kind string, memMax, pidsMax uint64) (fd int, cleanup func() error, err error) {
	prefix := kind + "-" + strconv.Itoa(os.Getpid()) + "-"
	for range 3 {
		fd, cleanup, err = p.NewChild(prefix+strconv.FormatUint(p.seq.Add(1), 10), memMax, pidsMax)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return fd, cleanup, err
}

// removeChild closes fd, kills every process left in dir and removes it.
func removeChild(fd int, dir string) error {
	closeErr := unix.Close(fd)
	if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", dir, err)
	}
	// Killed processes leave the cgroup asynchronously; rmdir says EBUSY until then.
	delay := 100 * time.Microsecond
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			break
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
	if closeErr != nil {
		return fmt.Errorf("close cgroup fd of %s: %w", dir, closeErr)
	}
	return nil
}

// validCgroupName keeps names from escaping the parent or colliding with the
// "controller.file" names of the cgroup interface.
func validCgroupName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a
// unified system, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2: %w", err)
	}
	defer f.Close()
	mounts, err := parseCgroup2Mounts(f)
	if err != nil {
		return "", fmt.Errorf("find cgroup v2: /proc/self/mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return "", errors.New("find cgroup v2: no cgroup2 file system is mounted (cgroup v1 only?)")
	}
	if slices.Contains(mounts, "/sys/fs/cgroup") {
		return "/sys/fs/cgroup", nil
	}
	return mounts[0], nil
}

// parseCgroup2Mounts returns the mount points of cgroup2 file systems that show the
// hierarchy from its root, from the mountinfo format of proc(5).
func parseCgroup2Mounts(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, p := strings.Fields(pre), strings.Fields(post)
		// A bind mount of a subtree (root field other than "/") would place every path
		// wrongly, so only whole-hierarchy mounts count.
		if len(f) < 5 || len(p) < 1 || p[0] != "cgroup2" || f[3] != "/" {
			continue
		}
		out = append(out, unescapeMountinfo(f[4]))
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space and so on).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// ownCgroup returns the bridge's cgroup v2 path from /proc/self/cgroup.
func ownCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	defer f.Close()
	return parseOwnCgroup(f)
}

// parseOwnCgroup picks the cgroup v2 entry ("0::/path") out of the cgroup(7) format.
func parseOwnCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			if !strings.HasPrefix(p, "/") {
				return "", fmt.Errorf("find own cgroup: unexpected path %q", p)
			}
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	return "", errors.New("find own cgroup: no cgroup v2 entry in /proc/self/cgroup")
}

// readFields reads a whitespace-separated cgroup interface file.
func readFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// writeFile writes one value to a cgroup interface file, which must already exist.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}
