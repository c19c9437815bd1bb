// This file holds Describe: for the development front end's index page,
// how a program under the root would run, or why it would be refused —
// the same resolution a request gets, with nothing started.

package cgi

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cgibridge/cgibridge/cgienv"
)

// Describe says how the program name (relative to the root) would run:
// which runner, which interpreter; or, when a request for it would be
// refused or would fail to start, why. Neither answer contains an absolute
// path of the root.
func (h *Handler) Describe(name string) (how, refused string) {
	cfg := h.cfg.Load()
	root := cfg.Env.Root
	if root == "" {
		return "", "no --root"
	}
	params := []cgienv.Param{
		{Name: "SCRIPT_FILENAME", Value: filepath.Join(root, name)},
		{Name: "SCRIPT_NAME", Value: "/" + name},
		{Name: "REQUEST_METHOD", Value: "GET"},
	}
	script, err := cgienv.Resolve(&cfg.Env, params)
	if err != nil {
		var ce *cgienv.Error
		if !errors.As(err, &ce) {
			return "", "cannot resolve it (the log says why)"
		}
		why := ce.Reason
		if strings.EqualFold(filepath.Ext(name), ".c") {
			why += "; it is C source: build a program from it, e.g. cc -O2 -o " + strings.TrimSuffix(name, filepath.Ext(name)) + ".cgi " + name + " (needs gcc)"
		}
		return "", why
	}
	env, err := cgienv.Environ(&cfg.Env, params, script, 0, h.environ)
	if err != nil {
		return "", err.Error()
	}
	job := h.job(cfg, script, env, cfg.Identity)
	runner := "exec mode"
	switch h.disp.RouteFor(job) {
	case "fastcgi":
		runner = "warm, by a FastCGI pool"
	case "warm":
		runner = "warm, by an interpreter helper when it can be (else exec mode)"
	}
	if script.Interpreted {
		interp := script.Argv[0]
		if !filepath.IsAbs(job.Program) {
			return "", "needs " + filepath.Base(interp) + ", which is not installed (not in the programs' PATH: --pass-env PATH, or --interpreter with a full path)"
		}
		return runner + ", through " + strings.Join(script.Argv[:len(script.Argv)-1], " ") + " (by its extension)", ""
	}
	line, isELF := head(script.Path)
	switch {
	case isELF:
		return runner + ", a compiled program", ""
	case strings.HasPrefix(line, "#!"):
		fields := strings.Fields(strings.TrimPrefix(line, "#!"))
		if len(fields) == 0 {
			return "", "its #! line names no interpreter"
		}
		// Named by base name only: a #! line may hold a path of the
		// machine's (a virtualenv in a home directory).
		interp := filepath.Base(fields[0])
		if _, err := os.Stat(fields[0]); err != nil {
			return "", "needs " + interp + " (named on its #! line), which is not installed"
		}
		if interp == "env" {
			for _, f := range fields[1:] {
				if strings.HasPrefix(f, "-") || strings.Contains(f, "=") {
					continue // env's options and assignments
				}
				if !filepath.IsAbs(h.lookPath(f, cfg)) {
					return "", "needs " + filepath.Base(f) + " (named on its #! line), which is not in the programs' PATH (--pass-env PATH, or --interpreter)"
				}
				interp = filepath.Base(f)
				break
			}
		}
		return runner + ", by its #! line (" + interp + ")", ""
	}
	return "", "executable but neither a compiled program nor a script with a #! line: it cannot start"
}

// head returns the first line of the file (at most 256 bytes) and whether
// it is an ELF binary.
func head(path string) (string, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	buf := make([]byte, 256)
	n, _ := io.ReadFull(f, buf)
	buf = buf[:n]
	if bytes.HasPrefix(buf, []byte(elf.ELFMAG)) {
		return "", true
	}
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	return strings.TrimSpace(string(line)), false
}
