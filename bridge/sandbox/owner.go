// This file holds owner mode: running a script as the user who owns it, after the
// checks Apache's suexec makes that the owner, and only the owner, controls it.

package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrRefused marks an error from OwnerIdentity that refuses a script on the grounds of
// ownership or permissions (an HTTP 403), as opposed to a failed lookup.
var ErrRefused = errors.New("refused")

// OwnerIdentity returns the identity of the owner of the script at path, for owner
// mode (opt-in, like Apache suexec). path must already be symlink-resolved and lie
// under root. It refuses, with an error wrapping ErrRefused, unless all of these hold:
//
//   - path is a regular file (not a symlink, directory or device);
//   - its owner is not root, unless allowRoot; and its owner's uid is at least minUID
//     (a root owner allowed by allowRoot passes this check);
//   - it is not writable by its group or by others;
//   - it is neither setuid nor setgid;
//   - path lies under root;
//   - every directory from root down to the file's own directory is a real directory
//     owned by the file's owner or by root and not writable by group or others.
//
// The owner must have a passwd entry: its primary and supplementary groups come from
// there. Errors from stat wrap the fs error, so fs.ErrNotExist can be told apart.
func OwnerIdentity(root, path string, minUID uint32, allowRoot bool) (*Identity, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("owner mode: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, refuse(path, "is not a regular file (%s)", fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("owner mode: %s: no owner information", path)
	}
	uid := st.Uid
	switch {
	case uid == 0 && !allowRoot:
		return nil, refuse(path, "is owned by root")
	case uid != 0 && uid < minUID:
		return nil, refuse(path, "is owned by uid %d, below the minimum uid %d", uid, minUID)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return nil, refuse(path, "is writable by group or others (mode %04o)", perm)
	}
	if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		return nil, refuse(path, "is setuid or setgid")
	}
	if err := checkDirs(root, filepath.Dir(path), uid); err != nil {
		return nil, err
	}
	uidStr := strconv.FormatUint(uint64(uid), 10)
	if _, err := user.LookupId(uidStr); err != nil {
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			return nil, refuse(path, "is owned by uid %d, which has no passwd entry", uid)
		}
		return nil, fmt.Errorf("owner mode: owner of %s: %w", path, err)
	}
	id, err := LookupIdentity(uidStr, "")
	if err != nil {
		return nil, fmt.Errorf("owner mode: owner of %s: %w", path, err)
	}
	return id, nil
}

// checkDirs walks from root down to dir, checking each directory as OwnerIdentity
// documents. Walking down (not up) means a refusal names the highest offending directory.
func checkDirs(root, dir string, uid uint32) error {
	root, dir = filepath.Clean(root), filepath.Clean(dir)
	if !filepath.IsAbs(root) || !filepath.IsAbs(dir) {
		return fmt.Errorf("owner mode: root %q and script directory %q must be absolute", root, dir)
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return refuse(dir, "is outside the root %s", root)
	}
	cur := root
	steps := []string{cur}
	if rel != "." {
		for _, part := range strings.Split(rel, "/") {
			cur = filepath.Join(cur, part)
			steps = append(steps, cur)
		}
	}
	for _, d := range steps {
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("owner mode: %w", err)
		}
		if !fi.IsDir() {
			return refuse(d, "is not a directory (%s)", fi.Mode().Type())
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("owner mode: %s: no owner information", d)
		}
		if st.Uid != uid && st.Uid != 0 {
			return refuse(d, "directory is owned by uid %d, neither the script's owner %d nor root", st.Uid, uid)
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			return refuse(d, "directory is writable by group or others (mode %04o)", perm)
		}
	}
	return nil
}

// refuse builds an owner-mode refusal that wraps ErrRefused.
func refuse(path, format string, args ...any) error {
	return fmt.Errorf("owner mode: %w: %s %s", ErrRefused, path, fmt.Sprintf(format, args...))
}
