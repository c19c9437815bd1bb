// This file sends sd_notify messages to the service manager.
package listen

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Notify sends an sd_notify message such as "READY=1", "STOPPING=1" or
// "STATUS=..." to $NOTIFY_SOCKET, a socket path or an abstract "@name". It returns
// nil without doing anything when NOTIFY_SOCKET is unset, and unsets nothing, so
// it can be called for every state change.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if state == "" {
		return fmt.Errorf("sd_notify: empty state")
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET=%q: only a socket path or @abstract name is supported", addr)
	}
	// The net package maps a leading "@" to the abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q to %s: %w", state, addr, err)
	}
	return nil
}
