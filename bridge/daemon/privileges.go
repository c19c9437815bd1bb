// This file holds the privilege policy: who programs run as, whether the
// bridge itself gives up root once its sockets are bound, and who owns the
// unix sockets it creates.

package daemon

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/hashicorp/go-hclog"
)

// Privileges are the privilege flags as given.
type Privileges struct {
	User, Group string
	OwnerMode   bool
	AllowRoot   bool
	// Cgroup is the --cgroup parent, or "": making cgroups needs root.
	Cgroup string
}

// Decided is what the policy decided.
type Decided struct {
	// Identity is who programs run as (nil: as the bridge).
	Identity *sandbox.Identity
	// DropTo is who the bridge becomes after binding its sockets (nil:
	// it stays as it is).
	DropTo *sandbox.Identity
	// Default is set when Identity is nobody because nothing chose a user.
	Default bool
}

// Decide applies the policy for a bridge running with effective uid euid:
//
//   - --owner-mode needs root, and keeps it (programs run as their owners);
//   - --user runs programs as that user; a root bridge switches to it too;
//   - a root bridge without --user runs programs as nobody and becomes
//     nobody, unless --allow-root;
//   - a bridge that makes cgroups keeps root.
//
// It also makes the sockets the bridge creates belong to the user it drops
// to, as PHP-FPM does, unless --socket-owner/--socket-group say otherwise:
// that lets the bridge remove them at exit.
func Decide(p Privileges, euid int, lo *listen.Options, log hclog.Logger) (*Decided, error) {
	d := &Decided{}
	switch {
	case p.OwnerMode:
		if euid != 0 {
			return nil, errors.New("--owner-mode needs the bridge to run as root")
		}
	case p.User != "":
		id, err := sandbox.LookupIdentity(p.User, p.Group)
		if err != nil {
			return nil, fmt.Errorf("--user %s: %w", p.User, err)
		}
		if euid != 0 && id.UID != uint32(euid) {
			return nil, fmt.Errorf("--user %s: switching users needs the bridge to start as root", p.User)
		}
		d.Identity = id
	case p.Group != "":
		return nil, errors.New("--group needs --user")
	case euid == 0 && !p.AllowRoot:
		// Safe by default: a root bridge never runs programs as root
		// unless told to.
		id, err := sandbox.LookupIdentity("nobody", "")
		if err != nil {
			return nil, fmt.Errorf("started as root without --user, and user nobody cannot be used (%w): pass --user NAME", err)
		}
		log.Info("started as root without --user: programs run as nobody (--user to choose, --allow-root to run them as root)")
		d.Identity, d.Default = id, true
	}
	// The bridge itself gives up root once its sockets are bound, unless it
	// still needs it: to run programs as their owners, or to make cgroups.
	if d.Identity != nil && euid == 0 && !p.OwnerMode && p.Cgroup == "" {
		d.DropTo = d.Identity
		lo.DirOwner = strconv.FormatUint(uint64(d.Identity.UID), 10)
		lo.DirGroup = strconv.FormatUint(uint64(d.Identity.GID), 10)
		if lo.SocketOwner == "" {
			lo.SocketOwner = strconv.FormatUint(uint64(d.Identity.UID), 10)
		}
		if lo.SocketGroup == "" {
			lo.SocketGroup = strconv.FormatUint(uint64(d.Identity.GID), 10)
		}
	}
	return d, nil
}

// OpenCgroups opens the --cgroup parent and checks that the controllers the
// limits need are there.
func OpenCgroups(dir string, memoryMax, pidsMax uint64) (*sandbox.CgroupParent, error) {
	if dir == "" {
		return nil, nil
	}
	parent, err := sandbox.OpenCgroupParent(dir)
	if err != nil {
		return nil, fmt.Errorf("--cgroup %s: %w", dir, err)
	}
	if memoryMax > 0 && !parent.Has("memory") {
		return nil, fmt.Errorf("--cgroup-memory: the memory controller is not available in %s", parent.Path())
	}
	if pidsMax > 0 && !parent.Has("pids") {
		return nil, fmt.Errorf("--cgroup-pids: the pids controller is not available in %s", parent.Path())
	}
	return parent, nil
}
