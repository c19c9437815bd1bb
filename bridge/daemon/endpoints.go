// This file holds the HTTP endpoints beside the FastCGI listeners: the
// development front end (--http), the status page (--status) and the hidden
// pprof profiles (--pprof). Each binds loopback unless --public-endpoints
// says otherwise (pprof: always), and serves only once the bridge has
// dropped its privileges.

package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// endpoint is one HTTP endpoint: bound at start-up, served from Run.
type endpoint struct {
	what string
	ln   net.Listener
	srv  *http.Server
}

// bindEndpoint listens on addr for what, refusing a non-loopback address
// unless public.
func bindEndpoint(flag, what, addr string, public bool, h http.Handler) (*endpoint, error) {
	if err := checkLoopback(addr, public); err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	return &endpoint{what: what, ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// checkLoopback refuses an address that is not on loopback (an empty host
// means every address).
func checkLoopback(addr string, public bool) error {
	if public {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New("not a loopback address: it would bypass --allow-from and serve anyone who can reach it; use 127.0.0.1 (or pass --public-endpoints if you really mean it)")
	}
	return nil
}

func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
