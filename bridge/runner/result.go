// This file holds Result, how a run ended, and the errors a runner reports.

package runner

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

var (
	// ErrUnavailable means the runner could not serve the job and nothing
	// was started: the dispatcher passes it to the next runner (exec mode).
	ErrUnavailable = errors.New("runner unavailable")
	// ErrOverloaded means no slot came free in time, or the queue was full.
	ErrOverloaded = errors.New("too many programs running")
	// ErrTimeout is the cause of a request's context when its timeout ended it.
	ErrTimeout = errors.New("request timed out")
	// ErrDraining means the runner is being drained or closed and takes no
	// new jobs.
	ErrDraining = errors.New("runner shutting down")
)

// Unavailable returns an error that says why a runner passed a job on, and
// wraps ErrUnavailable: the reason is what the access line shows (cold=).
func Unavailable(reason string) error { return &unavailableError{reason} }

type unavailableError struct{ reason string }

func (e *unavailableError) Error() string        { return e.reason }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// StartKind classifies why a program could not be started.
type StartKind int

// The kinds of start failure, each answered in its own way.
const (
	StartOther         StartKind = iota // anything else: 502
	StartNotExecutable                  // no #! line and not a binary (ENOEXEC): 502
	StartNotFound                       // the program or its #! interpreter is missing: 502
	StartPermission                     // not executable by the programs' user (EACCES): 403
	StartSandbox                        // its sandbox (cgroup, limits) could not be set up: 503
)

// StartError is a failure to start a program: nothing ran.
type StartError struct {
	Kind StartKind
	Err  error
}

func (e *StartError) Error() string { return "start program: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// StartFailure classifies an exec error.
func StartFailure(err error) *StartError {
	var se *StartError
	if errors.As(err, &se) {
		return se
	}
	k := StartOther
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		k = StartNotExecutable
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
		k = StartNotFound
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		k = StartPermission
	}
	return &StartError{Kind: k, Err: err}
}

// ChildError means a persistent child failed the request after it began:
// it died, closed its connection or broke the FastCGI protocol (502).
type ChildError struct {
	PID  int
	Exit *Exit // how the child ended, when it is known
	Err  error
}

func (e *ChildError) Error() string {
	s := fmt.Sprintf("child %d: %v", e.PID, e.Err)
	if e.Exit != nil {
		s += " (" + e.Exit.String() + ")"
	}
	return s
}
func (e *ChildError) Unwrap() error { return e.Err }

// Exit is a process's exit status.
type Exit struct {
	// Code is the exit code, or -1 when a signal ended the process.
	Code   int
	Signal syscall.Signal
}

// ExitStatus converts a wait status.
func ExitStatus(ws syscall.WaitStatus) Exit {
	if ws.Signaled() {
		return Exit{Code: -1, Signal: ws.Signal()}
	}
	return Exit{Code: ws.ExitStatus()}
}

// String is "exit 0" or "signal KILL".
func (e Exit) String() string {
	if e.Code >= 0 {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return "signal " + SignalName(e.Signal)
}

// SignalName is a signal's short name without "SIG": "KILL", "TERM".
func SignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGSEGV:
		return "SEGV"
	case syscall.SIGPIPE:
		return "PIPE"
	case syscall.SIGXCPU:
		return "XCPU"
	case syscall.SIGXFSZ:
		return "XFSZ"
	case syscall.SIGABRT:
		return "ABRT"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGBUS:
		return "BUS"
	}
	return fmt.Sprint(int(s))
}

// Result is how a job ended. Exactly one of these holds: Err is set (the
// program failed to start, or its runner failed it); Cause is set (the
// request's context ended the run: timeout, abort, shutdown); or the
// program ran to its end and Exit says how.
type Result struct {
	// Runner names the runner that served the job, after any fallback.
	Runner string
	// Started reports that the program (or a persistent child) began the
	// request: it is then not retryable elsewhere.
	Started bool
	PID     int
	// Exited reports that Exit is known.
	Exited bool
	Exit   Exit
	// AppStatus is a FastCGI child's application status, or the exit code.
	AppStatus uint32
	Err       error
	// Cause is the request context's cause when it ended the run.
	Cause error
	// Killed means SIGKILL was needed after SIGTERM.
	Killed bool
	// Lingered means descendants held the output open after the program
	// exited, and were ended.
	Lingered bool
	// Cold says why a warm runner passed the job on to exec mode ("" when
	// none did).
	Cold string
}

// TimedOut reports whether the timeout ended the run.
func (r *Result) TimedOut() bool { return errors.Is(r.Cause, ErrTimeout) }

// ExitString describes the end for log lines: "exit 0", "signal KILL",
// "not started".
func (r *Result) ExitString() string {
	switch {
	case r.Exited:
		return r.Exit.String()
	case r.Started:
		return "running"
	default:
		return "not started"
	}
}

// joinReason appends a fallback reason.
func joinReason(prev, next string) string {
	if prev == "" {
		return next
	}
	return strings.Join([]string{prev, next}, "; ")
}
