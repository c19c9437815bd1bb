// This file holds Config, what the command line says, and its resolution
// into a plan: identities looked up, paths made absolute and checked, the
// children's environment built. Validate refuses what can never work (exit
// 2); resolve refuses what does not work on this system (exit 1).

package spawn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cgibridge/cgibridge/bridge/listen"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
)

// Config is `cgibridge spawn` as its flags give it. The one-letter flags
// are spawn-fcgi's, with the same meaning.
type Config struct {
	Socket string // -s: unix socket path
	// SocketOutsideChroot (-S) takes -s as a path outside the -c root;
	// by default, as in spawn-fcgi, it is a path inside it.
	SocketOutsideChroot bool
	Addr                string   // -a: TCP address; 127.0.0.1 when empty
	Port                int      // -p: TCP port; 0 for a unix socket
	AllowFrom           []string // web servers that may connect over non-loopback TCP

	Children    int    // -F: copies of the program
	User, Group string // -u, -g: who the children run as
	AllowRoot   bool   // let the children run as root
	SocketUser  string // -U: socket owner (default: -u's user)
	SocketGroup string // -G: socket group (default: the children's group, with -u or -g)
	SocketMode  string // -M: octal; "" means 0660
	Backlog     int    // -b: listen backlog
	PIDFile     string // -P
	Foreground  bool   // -n: do not detach
	Dir         string // -d: the children's working directory
	Chroot      string // -c: the children's root directory
	PHPChildren int    // -C: PHP_FCGI_CHILDREN for the children; < 0 leaves it alone

	Watch           bool          // replace the children when the program's file changes
	KillGrace       time.Duration // SIGTERM to SIGKILL
	DrainTimeout    time.Duration // how long a replaced child may take to finish its request
	RestartDelay    time.Duration // first restart delay of a dying child, doubled each quick death
	RestartDelayMax time.Duration // the doubling stops here

	LogFile   string // where the log goes; "" is stderr in the foreground, syslog detached
	LogFormat string // text or json
	LogLevel  string // trace, debug, info, warn, error

	Program []string // PROGRAM and its arguments, passed as they are
}

// Defaults for the durations a Config leaves zero.
const (
	DefaultKillGrace       = 3 * time.Second
	DefaultDrainTimeout    = 10 * time.Second
	DefaultRestartDelay    = 100 * time.Millisecond
	DefaultRestartDelayMax = 30 * time.Second
	DefaultBacklog         = 1024 // spawn-fcgi's
	maxChildren            = 1024
)

// Validate checks the options against each other, naming the flag at fault.
// It fills in defaults for durations left zero.
func (c *Config) Validate() error {
	switch {
	case len(c.Program) == 0 || c.Program[0] == "":
		return errors.New("no program given: cgibridge spawn [flags] -- PROGRAM [ARGS...]")
	case c.Socket == "" && c.Port == 0:
		return errors.New("no socket given: use -s PATH (unix socket) or -p PORT (TCP)")
	case c.Socket != "" && c.Port != 0:
		return errors.New("-s and -p exclude each other: a unix socket or a TCP port, not both")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("-p %d: not a TCP port (1-65535)", c.Port)
	case c.Addr != "" && c.Port == 0:
		return errors.New("-a needs -p PORT")
	case c.Port != 0 && (c.SocketUser != "" || c.SocketGroup != "" || (c.SocketMode != "" && c.SocketMode != "0660")):
		return errors.New("-U, -G and -M set a unix socket's owner, group and mode: they need -s, not -p")
	case len(c.AllowFrom) > 0 && c.Port == 0:
		return errors.New("--allow-from is for a TCP socket (-p)")
	case c.Children < 1 || c.Children > maxChildren:
		return fmt.Errorf("-F %d: the number of children must be 1 to %d", c.Children, maxChildren)
	case c.Backlog < 0:
		return fmt.Errorf("-b %d: the backlog must be positive", c.Backlog)
	case c.SocketOutsideChroot && c.Chroot == "":
		return errors.New("-S needs -c DIR")
	case c.KillGrace < 0, c.DrainTimeout < 0, c.RestartDelay < 0, c.RestartDelayMax < 0:
		return errors.New("--kill-grace, --drain-timeout, --restart-delay and --restart-delay-max must not be negative")
	}
	if c.Socket != "" && strings.HasPrefix(c.Socket, "@") {
		return fmt.Errorf("-s %s: abstract unix sockets have no permissions, so anyone could connect; give a path", c.Socket)
	}
	if _, err := socketMode(c.SocketMode); err != nil {
		return err
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	c.KillGrace = orDefault(c.KillGrace, DefaultKillGrace)
	c.DrainTimeout = orDefault(c.DrainTimeout, DefaultDrainTimeout)
	c.RestartDelay = orDefault(c.RestartDelay, DefaultRestartDelay)
	c.RestartDelayMax = orDefault(c.RestartDelayMax, DefaultRestartDelayMax)
	if c.RestartDelayMax < c.RestartDelay {
		return fmt.Errorf("--restart-delay-max %v is below --restart-delay %v", c.RestartDelayMax, c.RestartDelay)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// socketMode parses -M, always octal (spawn-fcgi's strtol base 0 read "660"
// as decimal, a classic surprise).
func socketMode(s string) (os.FileMode, error) {
	if s == "" {
		return listen.DefaultSocketMode, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("-M %q: want an octal mode such as 0660", s)
	}
	return os.FileMode(m), nil
}

// plan is a Config resolved against the system: everything the supervisor
// needs, checked.
type plan struct {
	cfg *Config

	path     string // the program as the children's exec sees it (inside the chroot)
	hostPath string // the same file as the supervisor sees it
	argv     []string
	env      []string
	dir      string // "" inherits the supervisor's
	chroot   string
	id       *sandbox.Identity // nil: the supervisor's own

	unixPath   string // the socket file as the supervisor sees it, or ""
	tcpAddr    string // HOST:PORT, or ""
	listenOpts listen.Options

	watch []string // files whose change replaces the children
}

// resolve looks everything up. getenv is os.Getenv (a parameter for tests).
func resolve(c *Config, getenv func(string) string) (*plan, error) {
	p := &plan{cfg: c, argv: c.Program}
	if c.Chroot != "" {
		root, err := absDir(c.Chroot, "-c")
		if err != nil {
			return nil, err
		}
		p.chroot = root
	}
	if err := p.resolveIdentity(); err != nil {
		return nil, err
	}
	if err := p.resolveProgram(); err != nil {
		return nil, err
	}
	if err := p.resolveDir(); err != nil {
		return nil, err
	}
	if err := p.resolveSocket(getenv); err != nil {
		return nil, err
	}
	p.env = childEnv(os.Environ(), c.PHPChildren)
	if len(c.AllowFrom) > 0 {
		// libfcgi and php-cgi enforce it themselves: the children accept
		// their connections, not the supervisor.
		p.env = setEnv(p.env, envWebServerAddrs, strings.Join(c.AllowFrom, ","))
	}
	if c.Watch {
		p.watch = []string{p.hostPath}
		// A symlink (Debian's alternatives) is followed: the file it
		// names is what changes on an upgrade.
		if real, err := filepath.EvalSymlinks(p.hostPath); err == nil && real != p.hostPath {
			p.watch = append(p.watch, real)
		}
	}
	return p, nil
}

// resolveIdentity decides who the children run as: -u/-g when given; as
// root without them, nobody (never root unless --allow-root, like the rest
// of cgibridge and like spawn-fcgi, which refuses uid 0); otherwise the
// supervisor's own user.
func (p *plan) resolveIdentity() error {
	c := p.cfg
	root := os.Geteuid() == 0
	if !root {
		if c.User != "" || c.Group != "" {
			id, err := lookupIdentity(c.User, c.Group)
			if err != nil {
				return err
			}
			if id.UID != uint32(os.Geteuid()) || id.GID != uint32(os.Getegid()) {
				return fmt.Errorf("-u/-g %s: switching the children's user needs root (cgibridge runs as uid %d)", id, os.Geteuid())
			}
		}
		if c.Chroot != "" {
			return errors.New("-c needs root")
		}
		return nil
	}
	if c.User == "" && c.Group == "" && c.AllowRoot {
		return nil
	}
	id, err := lookupIdentity(c.User, c.Group)
	if err != nil {
		return err
	}
	if (id.UID == 0 || id.GID == 0) && !c.AllowRoot {
		return fmt.Errorf("-u/-g %s: refusing to run the children as root or group root; give another user, or --allow-root", id)
	}
	p.id = id
	return nil
}

// lookupIdentity is sandbox.LookupIdentity with nobody for a missing user.
func lookupIdentity(user, group string) (*sandbox.Identity, error) {
	if user == "" {
		user = "nobody"
	}
	id, err := sandbox.LookupIdentity(user, group)
	if err != nil {
		return nil, fmt.Errorf("-u/-g: %w", err)
	}
	return id, nil
}

// resolveProgram finds PROGRAM. spawn-fcgi execs it without a PATH search;
// a bare name is looked up in PATH here, outside a chroot. Inside one the
// path must be absolute, and is checked at the chroot's side.
func (p *plan) resolveProgram() error {
	name := p.cfg.Program[0]
	if p.chroot != "" {
		if !filepath.IsAbs(name) {
			return fmt.Errorf("program %q: with -c the program must be an absolute path inside %s", name, p.chroot)
		}
		p.path = filepath.Clean(name)
		p.hostPath = filepath.Join(p.chroot, p.path)
	} else {
		path := name
		if !strings.Contains(name, "/") {
			lp, err := exec.LookPath(name)
			if err != nil {
				return fmt.Errorf("program %q: %w", name, err)
			}
			path = lp
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("program %q: %w", name, err)
		}
		p.path, p.hostPath = abs, abs
	}
	fi, err := os.Stat(p.hostPath)
	switch {
	case err != nil:
		return fmt.Errorf("program %q: %w", name, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("program %q: %s is not a regular file", name, p.hostPath)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("program %q: %s is not executable", name, p.hostPath)
	}
	return nil
}

// resolveDir sets the children's working directory: -d, else the
// supervisor's (spawn-fcgi's children inherit it), else in a chroot its
// root, as spawn-fcgi's chdir("/") after chroot.
func (p *plan) resolveDir() error {
	d := p.cfg.Dir
	switch {
	case p.chroot != "" && d == "":
		p.dir = "/"
		return nil
	case p.chroot != "":
		if !filepath.IsAbs(d) {
			return fmt.Errorf("-d %s: with -c the directory must be an absolute path inside %s", d, p.chroot)
		}
		if _, err := absDir(filepath.Join(p.chroot, d), "-d"); err != nil {
			return err
		}
		p.dir = filepath.Clean(d)
		return nil
	case d == "":
		return nil
	}
	abs, err := absDir(d, "-d")
	if err != nil {
		return err
	}
	p.dir = abs
	return nil
}

func absDir(d, flag string) (string, error) {
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flag, d, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flag, d, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s %s: not a directory", flag, d)
	}
	return abs, nil
}

// envWebServerAddrs is libfcgi's allowlist of web-server addresses.
const envWebServerAddrs = "FCGI_WEB_SERVER_ADDRS"

// resolveSocket works out where to listen and with which permissions. A
// unix socket belongs, unless -U/-G say otherwise, to the children's user
// and group when -u or -g was given, as with spawn-fcgi. A TCP address must
// be loopback unless web servers are listed (--allow-from or
// FCGI_WEB_SERVER_ADDRS), which the children then enforce.
func (p *plan) resolveSocket(getenv func(string) string) error {
	c := p.cfg
	if c.Socket != "" {
		path := c.Socket
		if p.chroot != "" && !c.SocketOutsideChroot {
			if !filepath.IsAbs(path) {
				return fmt.Errorf("-s %s: with -c the socket path must be absolute inside %s (or give -S)", path, p.chroot)
			}
			path = filepath.Join(p.chroot, path)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("-s %s: %w", c.Socket, err)
		}
		if len(abs) >= 108 {
			return fmt.Errorf("-s %s: the path is too long for a unix socket (%d bytes, at most 107)", c.Socket, len(abs))
		}
		mode, _ := socketMode(c.SocketMode)
		p.unixPath = abs
		p.listenOpts = listen.Options{SocketMode: mode, SocketOwner: c.SocketUser, SocketGroup: c.SocketGroup}
		if p.id != nil && (c.User != "" || c.Group != "") {
			if c.SocketUser == "" && c.User != "" {
				p.listenOpts.SocketOwner = strconv.FormatUint(uint64(p.id.UID), 10)
			}
			if c.SocketGroup == "" {
				p.listenOpts.SocketGroup = strconv.FormatUint(uint64(p.id.GID), 10)
			}
		}
		return nil
	}
	host := c.Addr
	if host == "" {
		host = "127.0.0.1"
	}
	if strings.ContainsAny(host, "/ ") {
		return &UsageError{Err: fmt.Errorf("-a %q: not an address", c.Addr)}
	}
	p.tcpAddr = net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(c.Port))
	allow := c.AllowFrom
	if len(allow) == 0 && getenv(envWebServerAddrs) != "" {
		allow = []string{getenv(envWebServerAddrs)}
	}
	prefixes, err := listen.ParseAllowFrom(allow)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("--allow-from: %w", err)}
	}
	p.listenOpts = listen.Options{AllowFrom: prefixes}
	return nil
}

// loopbackOnly reports whether the bound address is loopback, which needs
// no allowlist.
func loopbackOnly(a net.Addr, allow []netip.Prefix) bool {
	if len(allow) > 0 {
		return true
	}
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.AddrPort().Addr().Unmap().IsLoopback()
}

// childEnv is the children's environment: the supervisor's own, as
// spawn-fcgi passes it (a drop-in replacement must not lose the variables
// FastCGI programs read at start-up), except what speaks to the service
// manager about the supervisor (LISTEN_*, NOTIFY_SOCKET) and the detach
// handshake. -C sets PHP_FCGI_CHILDREN.
func childEnv(environ []string, phpChildren int) []string {
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "LISTEN_") || name == "NOTIFY_SOCKET" || name == envReadyFD {
			continue
		}
		env = append(env, kv)
	}
	if phpChildren >= 0 {
		env = setEnv(env, "PHP_FCGI_CHILDREN", strconv.Itoa(phpChildren))
	}
	return env
}

// setEnv sets name=value in env, replacing any earlier value.
func setEnv(env []string, name, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if n, _, _ := strings.Cut(kv, "="); n != name {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}
