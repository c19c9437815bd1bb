// Package runner is the seam between the CGI handler and the ways a program
// can serve a request: a Job is a resolved request, a Runner serves it and
// returns a Result, and the Dispatcher owns the runners — which one takes a
// job, their capacity and queue, the per-request timeout, the fallback from a
// warm runner to exec mode, and their lifecycle (drain, close, reload).
//
// It knows nothing of FastCGI records or of how a runner starts its
// processes: each runner applies its own sandbox (identity, limits, cgroup).
package runner

// This file holds Job: what every runner is given.

import (
	"io"
	"time"

	"github.com/cgibridge/cgibridge/bridge/sandbox"
)

// Job is one resolved request: which file, how to run it, with what
// environment and input, and where its output goes. The CGI handler builds
// it; runners only read it.
type Job struct {
	// Script is the script's path with symlinks resolved: the file the
	// confinement checks accepted, and so the one that runs.
	Script string
	// Filename is SCRIPT_FILENAME as the program sees it (cleaned, not
	// resolved); routes match on it.
	Filename string
	// Program is the executable: Script itself, or the absolute path of the
	// interpreter that runs it.
	Program string
	// Argv is the program's argv, Argv[0] included. An interpreted script is
	// its last element.
	Argv []string
	// Interpreted reports that Program is an interpreter chosen by the
	// script's extension rather than the script itself.
	Interpreted bool
	// Env is the program's whole environment, "NAME=VALUE". For a FastCGI
	// child it is the request's params.
	Env []string
	// Dir is the working directory.
	Dir string
	// Identity is the user the program runs as; nil means as the bridge.
	Identity *sandbox.Identity
	// Body is the request body; nil when there is none (a local redirect).
	Body Body
	// Stdout receives the program's CGI response. An error from its Write
	// means the output is no longer wanted: the runner stops the program.
	Stdout io.Writer
	// Stderr receives the program's standard error as it comes.
	Stderr io.Writer
	// Timeout bounds the run from the moment the job was admitted (0: none).
	Timeout time.Duration
	// OnStart, when set, is called with the pid once the program runs.
	OnStart func(pid int)
}

// Body is a request body that has fully arrived.
type Body interface {
	// Size is the body's length in bytes.
	Size() int64
	// Stdin returns the body from its start: nil when it is empty, an
	// *os.File (rewound) when it is on disk, which a runner may pass as a
	// descriptor, or another reader.
	Stdin() (io.Reader, error)
}
