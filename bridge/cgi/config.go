// Package cgi is the CGI handler: for each FastCGI request it resolves the
// program (cgienv), builds its environment and a runner.Job, hands the job to
// the dispatcher, translates the program's output into the response, and is
// the one owner of the answer — every status the bridge gives a request it
// serves is decided in answer.go — and of the access log.
package cgi

// This file holds Config.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cgibridge/cgibridge/bridge/cgiresp"
	"github.com/cgibridge/cgibridge/bridge/sandbox"
	"github.com/cgibridge/cgibridge/cgienv"
)

// StderrMode says where a program's standard error goes.
type StderrMode int

// Stderr destinations.
const (
	StderrBoth StderrMode = iota // FastCGI STDERR records and the bridge's log
	StderrLog                    // the bridge's log only
	StderrFCGI                   // FastCGI STDERR records only (the web server logs them)
)

// ParseStderrMode parses "both", "log" or "fcgi".
func ParseStderrMode(s string) (StderrMode, error) {
	switch s {
	case "both", "":
		return StderrBoth, nil
	case "log":
		return StderrLog, nil
	case "fcgi":
		return StderrFCGI, nil
	}
	return 0, fmt.Errorf("--stderr %q: want log, fcgi or both", s)
}

// Config is everything a reload may change about how requests are served.
type Config struct {
	Env            cgienv.Config
	Timeout        time.Duration
	MaxHeaderBytes int
	Stderr         StderrMode
	Slow           time.Duration // log requests slower than this (0: never)

	// Identity is who programs run as (nil: as the bridge).
	Identity *sandbox.Identity
	// OwnerMode runs each program as its file's owner, after the checks of
	// sandbox.OwnerIdentity.
	OwnerMode bool
	MinUID    uint32
	// AllowRoot permits running programs as root.
	AllowRoot bool

	// searchPath is the PATH interpreters named without a path are looked
	// up in: the programs' own (--pass-env, --set-env or the default),
	// never one a request's params bring. Set by Validate.
	searchPath string
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if err := c.Env.Validate(); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return fmt.Errorf("--timeout %v: must not be negative", c.Timeout)
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = cgiresp.DefaultMaxHeaderBytes
	}
	if !c.AllowRoot && !c.OwnerMode && os.Geteuid() == 0 && (c.Identity == nil || c.Identity.UID == 0) {
		return errors.New("refusing to run programs as root: pass --user NAME (or --owner-mode), or --allow-root if you really mean it")
	}
	base, err := cgienv.BaseEnviron(&c.Env, os.Environ())
	if err != nil {
		return err
	}
	for _, kv := range base {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			c.searchPath = v
		}
	}
	return nil
}
