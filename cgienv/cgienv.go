// Package cgienv turns the FastCGI params of one request into the program to run,
// its argv, its working directory and its environment, following RFC 3875 and the
// habits of the front ends (nginx above all).
//
// It is pure: no logging, no globals, and it touches the file system only to stat,
// resolve symlinks and read the first two bytes of a script. The bridge calls
// Resolve and then Environ for every request.
package cgienv

import "fmt"

// Param is one FastCGI name-value pair, in the order the front end sent it.
//
// It is an alias of the unnamed struct type, as fcgi.Pair is: the params a
// FastCGI server decoded pass to this package as they are, with no copy.
type Param = struct{ Name, Value string }

// Error is a refusal with the HTTP status to answer: 400, 403 or 404.
type Error struct {
	Status int    // HTTP status: 400 bad params, 403 refused, 404 no such script
	Reason string // short constant text, fit for the client and a log line
	Path   string // the path (or param name) the refusal is about; may be empty
	// Detail, for the log only, says more than a client may know: where a
	// symlink leads, what would allow it, why a 404 is not simply missing.
	Detail string
}

// LogReason is Reason with the Detail the log adds.
func (e *Error) LogReason() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + " (" + e.Detail + ")"
}

// Error formats the refusal as "STATUS reason: path".
func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%d %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Reason, e.Path)
}

func badRequest(reason, path string) *Error { return &Error{Status: 400, Reason: reason, Path: path} }
func forbidden(reason, path string) *Error  { return &Error{Status: 403, Reason: reason, Path: path} }
func notFound(reason, path string) *Error   { return &Error{Status: 404, Reason: reason, Path: path} }
