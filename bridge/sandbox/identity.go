// Package sandbox runs CGI programs with less power than the bridge: it resolves the
// identities they run as, drops the bridge's own privileges, applies per-program
// resource limits through a re-exec shim, and optionally gives each program a cgroup.
// It knows nothing of FastCGI.
//
// This file holds identities: looking them up and dropping the bridge to one.
package sandbox

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Identity is a Unix user a program (or the bridge) runs as.
type Identity struct {
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups; empty means none
	Name   string   // user name for logs; the numeric form when there is no passwd entry
}

// String renders the identity for log lines, e.g. "nobody(65534:65534)".
func (id *Identity) String() string {
	if id == nil {
		return "<self>"
	}
	return fmt.Sprintf("%s(%d:%d)", id.Name, id.UID, id.GID)
}

// LookupIdentity resolves --user and --group, each a name or a number. An empty group
// means the user's primary group; supplementary groups are the user's memberships from
// the group database. A numeric user without a passwd entry is accepted only together
// with an explicit group, because there is no primary group to fall back on.
func LookupIdentity(userSpec, groupSpec string) (*Identity, error) {
	if userSpec == "" {
		return nil, errors.New("look up identity: empty user name")
	}
	u, err := lookupUser(userSpec)
	if err != nil {
		return nil, err
	}
	id := &Identity{Name: userSpec}
	var primary string
	if u != nil {
		uid, err := parseID(u.Uid)
		if err != nil {
			return nil, fmt.Errorf("user %q: uid %q: %w", userSpec, u.Uid, err)
		}
		id.UID, id.Name, primary = uid, u.Username, u.Gid
		gids, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("user %q: list supplementary groups: %w", userSpec, err)
		}
		for _, g := range gids {
			gid, err := parseID(g)
			if err != nil {
				return nil, fmt.Errorf("user %q: group id %q: %w", userSpec, g, err)
			}
			id.Groups = append(id.Groups, gid)
		}
		slices.Sort(id.Groups)
		id.Groups = slices.Compact(id.Groups)
	} else {
		// lookupUser only returns (nil, nil) for a bare number with no passwd entry.
		id.UID, _ = parseID(userSpec)
	}

	switch {
	case groupSpec != "":
		gid, err := lookupGroup(groupSpec)
		if err != nil {
			return nil, err
		}
		id.GID = gid
	case primary != "":
		gid, err := parseID(primary)
		if err != nil {
			return nil, fmt.Errorf("user %q: primary gid %q: %w", userSpec, primary, err)
		}
		id.GID = gid
	default:
		return nil, fmt.Errorf("user %q has no passwd entry, so it has no primary group: give a group too", userSpec)
	}
	return id, nil
}

// lookupUser tries spec as a name, then as a uid (like chown does). It returns (nil, nil)
// for a number that has no passwd entry.
func lookupUser(spec string) (*user.User, error) {
	u, err := user.Lookup(spec)
	if err == nil {
		return u, nil
	}
	if _, perr := parseID(spec); perr != nil {
		return nil, fmt.Errorf("unknown user %q: %w", spec, err)
	}
	u, err = user.LookupId(spec)
	if err == nil {
		return u, nil
	}
	var unknown user.UnknownUserIdError
	if errors.As(err, &unknown) {
		return nil, nil
	}
	return nil, fmt.Errorf("look up uid %s: %w", spec, err)
}

// lookupGroup resolves a group name or number; a number needs no group entry.
func lookupGroup(spec string) (uint32, error) {
	g, err := user.LookupGroup(spec)
	if err == nil {
		gid, perr := parseID(g.Gid)
		if perr != nil {
			return 0, fmt.Errorf("group %q: gid %q: %w", spec, g.Gid, perr)
		}
		return gid, nil
	}
	if gid, perr := parseID(spec); perr == nil {
		return gid, nil
	}
	return 0, fmt.Errorf("unknown group %q: %w", spec, err)
}

// parseID parses a decimal uid or gid. (uint32)(-1) is refused: the kernel reads it as
// "leave unchanged" in setresuid and friends.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("not a numeric id: %w", err)
	}
	if n == 1<<32-1 {
		return 0, errors.New("id 4294967295 is reserved")
	}
	return uint32(n), nil
}

// Credential returns the credential for os/exec's SysProcAttr; nil for a nil identity,
// which means "run as the bridge". The supplementary groups are always set, so a child
// of a root bridge does not keep root's groups.
func (id *Identity) Credential() *syscall.Credential {
	if id == nil {
		return nil
	}
	return &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: slices.Clone(id.Groups)}
}

// DropPrivileges switches the whole process, every thread, to id: supplementary groups,
// then gid, then uid (real, effective and saved), in that order because each later step
// removes the right to do the earlier ones. It then checks that root cannot be regained:
// setuid(0) and setgid(0) must fail and no capability may remain. Dropping to uid 0 is
// refused since it would drop nothing. After an error the process state is unknown and
// the caller should exit.
func DropPrivileges(id *Identity) error {
	if id == nil {
		return errors.New("drop privileges: no identity given")
	}
	if id.UID == 0 {
		return errors.New("drop privileges: target user is root, which would drop nothing")
	}
	groups := make([]int, len(id.Groups))
	for i, g := range id.Groups {
		groups[i] = int(g)
	}
	// The syscall package (not x/sys/unix, whose Setgroups is per-thread) applies these
	// to all threads on Linux, so no goroutine keeps running as root.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("drop privileges to %s: setgroups: %w", id, err)
	}
	if err := syscall.Setresgid(int(id.GID), int(id.GID), int(id.GID)); err != nil {
		return fmt.Errorf("drop privileges to %s: setresgid: %w", id, err)
	}
	if err := syscall.Setresuid(int(id.UID), int(id.UID), int(id.UID)); err != nil {
		return fmt.Errorf("drop privileges to %s: setresuid: %w", id, err)
	}
	return verifyDropped(id)
}

// verifyDropped checks the process is id and cannot get root back.
func verifyDropped(id *Identity) error {
	if uid, euid := syscall.Getuid(), syscall.Geteuid(); uid != int(id.UID) || euid != int(id.UID) {
		return fmt.Errorf("drop privileges to %s: uid is %d, euid %d after setresuid", id, uid, euid)
	}
	if gid, egid := syscall.Getgid(), syscall.Getegid(); gid != int(id.GID) || egid != int(id.GID) {
		return fmt.Errorf("drop privileges to %s: gid is %d, egid %d after setresgid", id, gid, egid)
	}
	if err := syscall.Setuid(0); err == nil {
		return fmt.Errorf("drop privileges to %s: setuid(0) still succeeds", id)
	}
	if id.GID != 0 {
		if err := syscall.Setgid(0); err == nil {
			return fmt.Errorf("drop privileges to %s: setgid(0) still succeeds", id)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop privileges to %s: read capabilities: %w", id, err)
	}
	if data[0].Effective|data[1].Effective|data[0].Permitted|data[1].Permitted != 0 {
		return fmt.Errorf("drop privileges to %s: capabilities remain (effective %#x %#x)",
			id, data[1].Effective, data[0].Effective)
	}
	return nil
}
