// This file decides which interpreter a script runs under, with which
// flags, and whether a helper can stand in for it.

package zygote

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cgibridge/cgibridge/bridge/runner"
)

// kind is the language of a helper.
type kind int

const (
	python kind = iota + 1
	perl
)

func (k kind) String() string {
	if k == perl {
		return "perl"
	}
	return "python"
}

// interp is how exec mode would run a script.
type interp struct {
	kind  kind
	path  string   // absolute interpreter
	flags []string // its arguments before the script, as exec mode passes them
}

var (
	pythonName = regexp.MustCompile(`^python[0-9.]*$`)
	perlName   = regexp.MustCompile(`^perl[0-9.]*$`)
)

// interpreterOf finds the interpreter exec mode would run job's script with:
// the extension's (--interpreter) or the script's #! line. A script that is
// not Python or Perl, or asks for flags a helper cannot honour, gets an
// error saying why: it runs in exec mode.
func interpreterOf(job *runner.Job) (interp, error) {
	var in interp
	if job.Interpreted {
		in.path = job.Program
		in.flags = job.Argv[1 : len(job.Argv)-1]
	} else {
		line, err := shebang(job.Script)
		if err != nil {
			return in, err
		}
		in.path, in.flags = splitShebang(line)
		if filepath.Base(in.path) == "env" && len(in.flags) == 1 && !strings.HasPrefix(in.flags[0], "-") {
			// #!/usr/bin/env python3: env finds it in the script's PATH.
			p, err := lookPath(in.flags[0], envValue(job.Env, "PATH"))
			if err != nil {
				return in, fmt.Errorf("#!/usr/bin/env %s: %w", in.flags[0], err)
			}
			in.path, in.flags = p, nil
		}
	}
	switch base := filepath.Base(in.path); {
	case pythonName.MatchString(base):
		in.kind = python
	case perlName.MatchString(base):
		in.kind = perl
	default:
		return in, fmt.Errorf("not a Python or Perl script (%s)", base)
	}
	if err := in.checkFlags(); err != nil {
		return in, err
	}
	return in, nil
}

// checkFlags allows the flags a helper started with the same flags honours
// as a fresh interpreter would.
func (in interp) checkFlags() error {
	for _, f := range in.flags {
		for _, one := range strings.Fields(f) {
			ok := false
			switch in.kind {
			case python:
				ok = one == "-u" || one == "-O" || one == "-OO" || one == "-B" || one == "-s" || one == "-E" || one == "-I" || one == "-S"
			case perl:
				// -w becomes $^W in each child; -T (taint mode) and the
				// rest change how the helper itself would have to run.
				if err := perlSwitch(one); err != nil {
					return err
				}
				ok = true
			}
			if !ok {
				return fmt.Errorf("interpreter flag %s is not supported warm", one)
			}
		}
	}
	return nil
}

// perlSwitch allows a cluster of perl switches made of -w only.
func perlSwitch(arg string) error {
	if len(arg) < 2 || arg[0] != '-' {
		return fmt.Errorf("interpreter flag %s is not supported warm", arg)
	}
	for _, c := range arg[1:] {
		switch c {
		case 'w':
		case 'T', 't':
			return fmt.Errorf("taint mode (-%c) is not supported warm", c)
		default:
			return fmt.Errorf("interpreter flag -%c is not supported warm", c)
		}
	}
	return nil
}

// shebang reads a script's #! line (without "#!").
func shebang(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var buf [256]byte
	n, _ := f.Read(buf[:])
	b := buf[:n]
	if !bytes.HasPrefix(b, []byte("#!")) {
		return "", errors.New("no #! line")
	}
	line, _, ok := bytes.Cut(b[2:], []byte("\n"))
	if !ok && n == len(buf) {
		return "", errors.New("#! line too long")
	}
	return strings.TrimSpace(string(bytes.TrimSuffix(line, []byte("\r")))), nil
}

// splitShebang splits a #! line as Linux does: the interpreter, then the
// rest as one argument.
func splitShebang(line string) (string, []string) {
	path, rest, _ := strings.Cut(line, " ")
	if rest = strings.TrimSpace(rest); rest != "" {
		return path, []string{rest}
	}
	return path, nil
}

func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}
