// Package spawn is `cgibridge spawn`, the spawn-fcgi + multiwatch
// replacement: it binds one listening socket, starts N copies of a program
// that speaks FastCGI with that socket on fd 0 (FCGI_LISTENSOCK_FILENO, as
// spawn-fcgi does), and supervises them: a child that dies is restarted with
// exponential backoff, never given up; SIGTERM and SIGINT stop the children
// and exit 0; SIGHUP (and, with --watch, a change of the program's file)
// replaces the children one at a time, a new one started before an old one
// goes, so the socket always has a child accepting. Without -n it detaches
// the way spawn-fcgi does and returns once the children are up.
//
// The web server talks to the children directly: nothing of the bridge's
// request path is involved. This file holds Run, the story from the command
// line to a running supervisor; the other files hold its parts.
package spawn

import "os"

// UsageError is a command line that cannot work whatever the system: its
// exit code is 2, a run-time failure's is 1.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is 2, as for any usage error (kong.ExitCoder).
func (e *UsageError) ExitCode() int { return 2 }

// Run does what cfg asks: it checks it, resolves it against the system, and
// either detaches (returning once the supervisor in the background reports
// its children up) or supervises in the foreground until SIGTERM or SIGINT.
func Run(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return &UsageError{Err: err}
	}
	// The parent of a detach resolves too, so that an unknown user or a
	// missing program is reported where it was typed, with exit code 1.
	p, err := resolve(cfg, os.Getenv)
	if err != nil {
		return err
	}
	ready, detached, err := takeReadyPipe()
	if err != nil {
		return err
	}
	if !cfg.Foreground && !detached {
		return detach(p)
	}
	log, closeLog, err := newLogger(p, ready, detached)
	if err != nil {
		ready.fail(err)
		return err
	}
	defer closeLog()
	err = supervise(p, log, ready)
	if err != nil {
		// In the foreground the caller prints it; in the background the
		// parent that waits for the start prints it, and the log keeps it.
		if detached {
			log.Error("spawn failed", "error", err)
		}
		ready.fail(err)
	}
	return err
}
