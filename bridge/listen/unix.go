// This file creates unix socket files: stale-socket replacement, permissions and
// ownership, and removal of only the file the bridge itself bound.
package listen

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// fileID names one file independent of its path.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no device and inode", path)
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// removeIfSame removes path only while it still is the file id names: a newer
// server may have replaced a socket this one believed was its own.
func removeIfSame(path string, id fileID) error {
	cur, err := statID(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove socket %s: %w", path, err)
	}
	if cur != id {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove socket %s: %w", path, err)
	}
	return nil
}

// staleDialTimeout bounds the probe of an existing socket file: a live server
// answers a local connect at once, so a slow answer means a wedged one.
const staleDialTimeout = time.Second

func openUnix(spec, path string, o Options, log hclog.Logger) (*Listener, error) {
	mode := o.SocketMode.Perm()
	if o.SocketMode == 0 {
		mode = DefaultSocketMode
	}
	uid, gid, err := resolveOwner(o.SocketOwner, o.SocketGroup)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// As systemd's RuntimeDirectory= would: the socket's own directory,
		// owned by the socket's owner (the user the bridge drops to), so
		// that the bridge can still remove the socket at exit.
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("listen %s: directory %s for the socket does not exist and cannot be made (%v): create it, or with systemd set RuntimeDirectory=", spec, dir, errnoOf(err))
		}
		duid, dgid := uid, gid
		if o.DirOwner != "" || o.DirGroup != "" {
			if duid, dgid, err = resolveOwner(o.DirOwner, o.DirGroup); err != nil {
				os.Remove(dir)
				return nil, fmt.Errorf("listen %s: %w", spec, err)
			}
		}
		if duid != -1 || dgid != -1 {
			if err := os.Lchown(dir, duid, dgid); err != nil {
				os.Remove(dir)
				return nil, fmt.Errorf("listen %s: set the owner of the socket's directory %s: %w", spec, dir, err)
			}
		}
		log.Info("made the socket's directory", "dir", dir)
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: directory %s for the socket: %w", spec, dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("listen %s: %s is not a directory", spec, dir)
	}
	if err := clearStale(path, log); err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}

	ln, err := bindUnix(path, mode)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	// The net package would unlink the path on Close whoever owns it by then;
	// Listener.Close does that itself, after checking the inode.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", spec, err)
	}
	id, err := statID(path)
	if err != nil {
		return fail(fmt.Errorf("stat new socket: %w", err))
	}
	// Ownership first, then the final mode: until the chown the file is
	// owner-only, so no group ever holds more access than intended.
	if uid != -1 || gid != -1 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return fail(fmt.Errorf("set socket owner: %w", err))
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fail(fmt.Errorf("set socket mode %04o: %w", mode, err))
	}
	log.Debug("listening", "spec", spec, "path", path, "mode", fmt.Sprintf("%04o", mode))
	return &Listener{Listener: ln, Spec: spec, Unix: path, created: id}, nil
}

// bindUnix binds path under a umask that leaves only the owner bits of mode, so
// the file is never, even for a moment, more open than asked. The umask is
// process-wide: this relies on Open being called at start-up before other
// goroutines create files.
func bindUnix(path string, mode os.FileMode) (*net.UnixListener, error) {
	old := unix.Umask(int(0o777 &^ (mode & 0o700)))
	defer unix.Umask(old)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	return ln, nil
}

// clearStale makes way for a new socket at path: a socket nobody answers on is a
// leftover of a crashed server and is removed; a live socket or any other kind of
// file is refused rather than destroyed.
func clearStale(path string, log hclog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check existing %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s); refusing to replace it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another server is listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	log.Info("removed stale socket", "path", path)
	return nil
}

// resolveOwner turns --socket-owner and --socket-group into ids; -1 means leave.
func resolveOwner(owner, group string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = lookupID(owner, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		}); err != nil {
			return -1, -1, fmt.Errorf("socket owner %q: %w", owner, err)
		}
	}
	if group != "" {
		if gid, err = lookupID(group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}); err != nil {
			return -1, -1, fmt.Errorf("socket group %q: %w", group, err)
		}
	}
	return uid, gid, nil
}

// lookupID accepts a numeric id as is (it need not exist in the user database, as
// with chown(1)) and resolves anything else by name.
func lookupID(name string, byName func(string) (string, error)) (int, error) {
	if n, err := strconv.ParseUint(name, 10, 31); err == nil {
		return int(n), nil
	}
	s, err := byName(name)
	if err != nil {
		return -1, err
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return -1, fmt.Errorf("id %q is not numeric: %w", s, err)
	}
	return int(n), nil
}

// errnoOf is the bare cause of a path error.
func errnoOf(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
