// Tests for sd_notify delivery to path and abstract sockets.
package listen

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNotifyDeliversState(t *testing.T) {
	tests := []struct {
		name string
		addr string
	}{
		{"socket path", sockPath(t)},
		{"abstract name", "@cgibridge-listen-test-" + strconv.Itoa(os.Getpid())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tt.addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			t.Setenv("NOTIFY_SOCKET", tt.addr)
			for _, state := range []string{"READY=1", "STATUS=serving 2 sockets"} {
				if err := Notify(state); err != nil {
					t.Fatalf("Notify(%q): %v", state, err)
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 256)
				n, err := conn.Read(buf)
				if err != nil || string(buf[:n]) != state {
					t.Fatalf("received %q, %v; want %q", buf[:n], err, state)
				}
			}
			if os.Getenv("NOTIFY_SOCKET") != tt.addr {
				t.Errorf("Notify unset NOTIFY_SOCKET")
			}
		})
	}
}

func TestNotifyWithoutSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	if err := Notify("READY=1"); err != nil {
		t.Fatalf("Notify with NOTIFY_SOCKET unset: %v", err)
	}
}

func TestNotifyErrors(t *testing.T) {
	tests := []struct {
		name, addr, state, want string
	}{
		{"missing socket", "/nonexistent/cgibridge-notify", "READY=1", "no such file"},
		{"unsupported address", "vsock:2:1234", "READY=1", "only a socket path"},
		{"empty state", "/nonexistent/cgibridge-notify", "", "empty state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tt.addr)
			err := Notify(tt.state)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
