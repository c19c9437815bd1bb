// Tests for unix socket creation: mode, ownership, stale and live sockets, and
// which files Close removes.
package listen

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// sockPath returns a short socket path in a fresh temp dir (sun_path is 108 bytes).
func sockPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "s")
}

// leaveSocketFile creates a socket file at path whose server is gone, as a crash leaves it.
func leaveSocketFile(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func mustOpen(t *testing.T, spec string, o Options) *Listener {
	t.Helper()
	l, err := Open(spec, o, nil)
	if err != nil {
		t.Fatalf("Open(%q): %v", spec, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// roundTrip dials addr and checks l accepts the connection.
func roundTrip(t *testing.T, l net.Listener, network, addr string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, err = c.Write([]byte("ok"))
			c.Close()
		}
		done <- err
	}()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read from %s: %q, %v", addr, buf, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

func TestUnixSocketModeIgnoresUmask(t *testing.T) {
	tests := []struct {
		name  string
		mode  os.FileMode
		umask int
		want  os.FileMode
	}{
		{"default is 0660 under umask 022", 0, 0o022, 0o660},
		{"default is 0660 under umask 000", 0, 0o000, 0o660},
		{"custom 0600 under umask 000", 0o600, 0o000, 0o600},
		{"custom 0666 under umask 077", 0o666, 0o077, 0o666},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := unix.Umask(tt.umask)
			defer unix.Umask(old)
			path := sockPath(t)
			l := mustOpen(t, "unix:"+path, Options{SocketMode: tt.mode})
			if got := unix.Umask(tt.umask); got != tt.umask {
				t.Errorf("umask after Open = %03o, want it restored to %03o", got, tt.umask)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tt.want {
				t.Errorf("socket file mode = %v, want socket %04o", fi.Mode(), tt.want)
			}
			if l.Unix != path || l.Spec != "unix:"+path {
				t.Errorf("Listener Unix=%q Spec=%q", l.Unix, l.Spec)
			}
			roundTrip(t, l, "unix", path)
		})
	}
}

func TestUnixSocketOwnerAndGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	tests := []struct {
		name, owner, group string
		uid, gid           uint32
	}{
		{"numeric ids", "65534", "65534", 65534, 65534},
		{"names", "nobody", "nogroup", 65534, 65534},
		{"group only", "", "daemon", 0, 1},
		{"numeric id absent from passwd", "4242", "", 4242, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			mustOpen(t, "unix:"+path, Options{SocketOwner: tt.owner, SocketGroup: tt.group})
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != tt.uid || st.Gid != tt.gid {
				t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
			}
			if fi.Mode().Perm() != DefaultSocketMode {
				t.Errorf("mode after chown = %04o, want %04o", fi.Mode().Perm(), DefaultSocketMode)
			}
		})
	}
}

func TestUnixUnknownOwnerRefusedBeforeBinding(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"unknown user", Options{SocketOwner: "no-such-user-cgibridge"}, `socket owner "no-such-user-cgibridge"`},
		{"unknown group", Options{SocketGroup: "no-such-group-cgibridge"}, `socket group "no-such-group-cgibridge"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			_, err := Open("unix:"+path, tt.o, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %s", err, tt.want)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket file left behind after failure: %v", err)
			}
		})
	}
}

func TestUnixStaleSocketReplaced(t *testing.T) {
	path := sockPath(t)
	leaveSocketFile(t, path)
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	l, err := Open("unix:"+path, Options{}, log)
	if err != nil {
		t.Fatalf("Open over a stale socket: %v", err)
	}
	defer l.Close()
	roundTrip(t, l, "unix", path)
	if !strings.Contains(buf.String(), "removed stale socket") {
		t.Errorf("log %q does not report the stale socket", buf.String())
	}
}

func TestUnixLiveSocketRefused(t *testing.T) {
	path := sockPath(t)
	live, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	_, err = Open("unix:"+path, Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), "another server is listening on "+path) {
		t.Fatalf("err = %v, want refusal naming the live server", err)
	}
	// Open's probe connection waits in the backlog; take it so the round trip
	// below is served its own connection.
	live.SetDeadline(time.Now().Add(5 * time.Second))
	probe, err := live.Accept()
	if err != nil {
		t.Fatalf("no probe connection reached the live server: %v", err)
	}
	probe.Close()
	// The running server must be untouched.
	roundTrip(t, live, "unix", path)
}

func TestUnixNonSocketPathRefused(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to a stale socket", func(t *testing.T, path string) {
			target := path + "-target"
			leaveSocketFile(t, target)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			tt.make(t, path)
			before, _ := os.Lstat(path)
			_, err := Open("unix:"+path, Options{}, nil)
			if err == nil || !strings.Contains(err.Error(), "is not a socket") {
				t.Fatalf("err = %v, want 'is not a socket'", err)
			}
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) {
				t.Errorf("existing file was replaced or removed: %v", err)
			}
		})
	}
}

// A missing socket directory is made, as systemd's RuntimeDirectory= makes
// it, owned by the socket's owner; one whose parent is missing too is refused
// with the fix.
func TestUnixMissingDirectoryMadeOneLevel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	o := Options{}
	if os.Geteuid() == 0 {
		// The directory is the drop user's (DirOwner), not the socket's.
		o = Options{SocketOwner: "www-data", DirOwner: "nobody"}
	}
	l, err := Open("unix:"+dir+"/s", o, nil)
	if err != nil {
		t.Fatalf("missing socket directory not made: %v", err)
	}
	defer l.Close()
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("socket directory: %v %v", fi, err)
	}
	if os.Geteuid() == 0 {
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65534 {
			t.Errorf("socket directory owned by uid %d, want nobody's", uid)
		}
	}

	deep := filepath.Join(t.TempDir(), "missing", "too")
	_, err = Open("unix:"+deep+"/s", Options{}, nil)
	if err == nil || !strings.Contains(err.Error(), "directory "+deep) || !strings.Contains(err.Error(), "RuntimeDirectory=") {
		t.Fatalf("err = %v, want it to name directory %s and the fix", err, deep)
	}
}

func TestCloseRemovesCreatedSocket(t *testing.T) {
	path := sockPath(t)
	l, err := Open("unix:"+path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseKeepsSocketReplacedByAnotherServer(t *testing.T) {
	path := sockPath(t)
	l, err := Open("unix:"+path, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second instance found our socket, judged it stale and bound its own.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed another server's socket: %v", err)
	}
}

func TestCloseKeepsInheritedUnixSocket(t *testing.T) {
	path := sockPath(t)
	fd := listeningFD(t, "unix", path)
	l, err := Open("fd:"+itoa(fd), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Unix != "" {
		t.Errorf("Unix = %q for an inherited socket, want empty", l.Unix)
	}
	roundTrip(t, l, "unix", path)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed an inherited socket's file: %v", err)
	}
}
