// This file holds the start-up reach check: before it serves, the bridge
// asks, as the users the privilege drop will leave, whether they can reach
// what they need — the programs' user the root and every --allow'ed path,
// the bridge's own user the temp dir — and refuses to start with one line
// naming the path, the user and the fix, rather than answering every
// request 403 later. The development front end (--http) started as root
// from a checkout nobody can enter chooses instead: the root's owner when
// that is not root, else a copy of the root kept in sync.

package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cgibridge/cgibridge/bridge/devfront"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// needs lists what each user must reach: the programs' user (progs) the
// root and the --allow'ed paths; the bridge after its drop (self) the temp
// dir, and the root too, since it walks the path to each program.
func needs(opts *Options) (progs, self []sandbox.Need) {
	// Search is what reaching a program takes; reading a directory is only
	// for the --http index page, which the bridge lists itself.
	if opts.CGI.Env.Root != "" {
		progs = append(progs, sandbox.Need{Path: opts.CGI.Env.Root, Mode: unix.X_OK, What: "--root"})
	}
	for _, a := range opts.CGI.Env.Allow {
		mode := uint32(unix.R_OK)
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			mode = unix.X_OK
		}
		progs = append(progs, sandbox.Need{Path: a, Mode: mode, What: "--allow"})
	}
	tmp := opts.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	self = append(self, sandbox.Need{Path: tmp, Mode: unix.R_OK | unix.W_OK | unix.X_OK, What: "--temp-dir"})
	if opts.CGI.Env.Root != "" {
		mode := uint32(unix.X_OK)
		if opts.HTTP != "" {
			mode |= unix.R_OK
		}
		self = append(self, sandbox.Need{Path: opts.CGI.Env.Root, Mode: mode, What: "--root"})
	}
	return progs, self
}

// checkReach runs the check. A root bridge checks as the users it will
// become; any bridge checks the temp dir as itself.
func checkReach(opts *Options, log hclog.Logger) error {
	progs, self := needs(opts)
	if opts.CGI.OwnerMode || os.Geteuid() != 0 {
		// Each program runs as its owner (checked per request), or
		// as the bridge, which started with access or not at all.
		progs = nil
	}
	if err := sandbox.CheckAccess(opts.CGI.Identity, progs); err != nil {
		if errors.Is(err, sandbox.ErrCheckFailed) {
			log.Warn("the start-up access check could not run; going on without it", "error", err)
			return nil
		}
		return withFix(err, opts)
	}
	selfID := opts.DropTo
	if os.Geteuid() != 0 {
		selfID = nil // after the drop (a reload), the bridge is that user
	}
	if err := sandbox.CheckAccess(selfID, self); err != nil {
		if errors.Is(err, sandbox.ErrCheckFailed) {
			log.Warn("the start-up access check could not run; going on without it", "error", err)
			return nil
		}
		return withFix(err, opts)
	}
	return nil
}

// withFix adds to an access error what would fix it.
func withFix(err error, opts *Options) error {
	var ae *sandbox.AccessError
	if !errors.As(err, &ae) {
		return err
	}
	var fixes []string
	switch {
	case ae.Missing == "exist":
		return err
	case ae.Need.What == "--temp-dir":
		fixes = append(fixes, "choose a --temp-dir user "+ae.User.Name+" can write")
	default:
		if u := os.Getenv("SUDO_USER"); u != "" && u != "root" {
			fixes = append(fixes, "--user "+u)
		} else if owner := ownerName(ae.Need.Path); owner != "" {
			fixes = append(fixes, "--user "+owner)
		} else {
			fixes = append(fixes, "--user NAME for a user who can read it")
		}
		if ae.Missing == "search" {
			fixes = append(fixes, "chmod o+x "+ae.Blocked)
		} else {
			fixes = append(fixes, "a directory user "+ae.User.Name+" can read")
		}
		if !opts.CGI.AllowRoot {
			fixes = append(fixes, "--allow-root (programs then run as root)")
		}
	}
	return fmt.Errorf("%w; fix: %s", err, strings.Join(fixes, ", or "))
}

// ownerName is the name of path's owner when that is not root.
func ownerName(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return ""
	}
	id, err := sandbox.LookupIdentity(strconv.FormatUint(uint64(st.Uid), 10), "")
	if err != nil {
		return ""
	}
	return id.Name
}

// devChoice is what the development front end chose when nobody could not
// reach the root: an identity, or a mirror of the root.
type devChoice struct {
	id     *sandbox.Identity
	mirror *devfront.Mirror
}

// reach checks opts at start, and for a development bridge (--http, no
// --listen) whose default user cannot reach the root, chooses: the root's
// owner when that is not root and can, else a copy of the root that nobody
// can read, kept in sync by the bridge, which then keeps root. The choice
// is applied to opts (a reload applies it again with devChoice.apply); the
// caller owns a new mirror.
func (d *Daemon) reach(opts *Options) (*devChoice, error) {
	err := checkReach(opts, d.log)
	var ae *sandbox.AccessError
	if err == nil || !errors.As(err, &ae) || ae.Need.What != "--root" ||
		opts.HTTP == "" || len(opts.Listen) > 0 || !opts.DefaultIdentity || ae.Missing == "exist" {
		return nil, err
	}
	root := opts.CGI.Env.Root
	if owner := ownerName(root); owner != "" {
		id, lerr := sandbox.LookupIdentity(owner, "")
		if lerr == nil {
			c := &devChoice{id: id}
			if c.apply(opts) == nil && checkReach(opts, d.log) == nil {
				d.log.Info("--http started as root: user nobody cannot reach --root, so the programs run as its owner", "user", id.String(), "blocked", ae.Blocked)
				return c, nil
			}
		}
	}
	if opts.PublicEndpoints {
		// The copy needs the bridge to keep root: not while it serves
		// beyond loopback.
		return nil, fmt.Errorf("%w (with --public-endpoints the --http front end does not serve a copy: pass --user)", err)
	}
	m, merr := devfront.NewMirror(root, int(opts.CGI.Identity.GID), d.log.Named("copy"))
	if merr != nil {
		return nil, fmt.Errorf("%w (and a copy for --http failed: %v)", err, merr)
	}
	c := &devChoice{mirror: m}
	if err := c.apply(opts); err != nil {
		m.Close()
		return nil, err
	}
	if err := checkReach(opts, d.log); err != nil {
		m.Close()
		return nil, err
	}
	d.log.Info("--http started as root: user nobody cannot reach --root, so it serves a copy kept in sync with it; the programs run as nobody, the bridge keeps root to read the original (--user NAME to run them as a user who can read it)",
		"blocked", ae.Blocked, "copy", m.Dir())
	return c, nil
}

// apply puts the choice into opts (and re-validates the CGI config, whose
// root may have changed).
func (c *devChoice) apply(opts *Options) error {
	if c == nil || !opts.DefaultIdentity {
		return nil
	}
	if c.id != nil {
		opts.CGI.Identity = c.id
		if opts.DropTo != nil {
			opts.DropTo = c.id
		}
	}
	if c.mirror != nil && filepath.Clean(opts.CGI.Env.Root) == filepath.Clean(c.mirror.Source()) {
		opts.CGI.Env.Root = c.mirror.Dir()
		opts.DropTo = nil
		return opts.CGI.Validate()
	}
	return nil
}

// close removes a mirror.
func (c *devChoice) close() {
	if c != nil && c.mirror != nil {
		c.mirror.Close()
	}
}
