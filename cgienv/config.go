// This file holds Config, the start-up options that decide what may run and how,
// and their validation into the form Resolve and Environ use per request.

package cgienv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Config is built once at start-up (and on reload) from the CLI flags.
//
// Call Validate once before serving and again after any change to a field; a
// reload should build and validate a new Config rather than edit one in use.
// Resolve and Environ accept an unvalidated Config but then redo the checks (and
// the symlink resolution) on every call.
type Config struct {
	Root           string              // absolute cgi-bin root; "" = no root (then only Allow paths run)
	Allow          []string            // absolute files or dirs outside Root that may run
	Interpreters   map[string][]string // ".py" -> {"python3"}; keys lower-case with dot
	PassEnv        []string            // bridge env names passed through; "LC_*" style prefix patterns allowed
	SetEnv         []string            // "NAME=VALUE", applied last
	ServerSoftware string              // e.g. "cgibridge/0.1.0"
	// PackagedLinks follows a symlink in the root to a program outside
	// it when only root could have made the link and the program: see
	// packagedLink. Debian's /usr/lib/cgi-bin is such links.
	PackagedLinks bool

	v *compiled // set by Validate
}

// DefaultInterpreters returns a fresh map of the interpreters used for files by
// extension when the user configures none.
func DefaultInterpreters() map[string][]string {
	return map[string][]string{
		".py":  {"python3"},
		".pl":  {"perl"},
		".sh":  {"sh"},
		".php": {"php-cgi"},
		".rb":  {"ruby"},
	}
}

// DefaultPassEnv returns a fresh list of the bridge's own environment variables a
// script inherits by default: enough to speak the locale. PATH is not among
// them: the bridge's PATH is its starter's (root's pyenv shims, a developer's
// ~/bin), so programs get a system default unless --pass-env PATH says so.
func DefaultPassEnv() []string {
	return []string{"LANG", "LC_*", "TZ"}
}

// base is one place programs may run from: the root or an Allow entry.
type base struct {
	lex   string // cleaned path as a front end would name it
	real  string // the same with symlinks resolved
	file  bool   // an Allow entry naming one program rather than a directory
	depth int    // number of path elements in lex
}

// compiled is the validated, normalised form of a Config.
type compiled struct {
	packagedLinks bool
	root          string // cleaned Root, "" if none
	bases         []base // candidates for the lexical match, lexical and resolved spellings
	interps       map[string][]string
	env           envOptions
}

// envOptions is the part of a Config that Environ needs.
type envOptions struct {
	pass []string    // exact names, or prefixes ending in "*"
	set  [][2]string // name, value
}

// Validate cleans Root and Allow, checks that they are absolute and exist,
// resolves their symlinks once, and checks the interpreter, pass-env and set-env
// entries. The error names the bad option and what was expected.
func (c *Config) Validate() error {
	v, err := c.compile()
	if err != nil {
		return err
	}
	c.Root = v.root
	allow := make([]string, len(c.Allow))
	for i, a := range c.Allow {
		allow[i] = filepath.Clean(a)
	}
	c.Allow = allow
	c.v = v
	return nil
}

// compiled returns the form Validate stored, or builds one for this call only, so
// that a Config is never written to concurrently by request handlers.
func (c *Config) compiled() (*compiled, error) {
	if c.v != nil {
		return c.v, nil
	}
	return c.compile()
}

func (c *Config) compile() (*compiled, error) {
	v := &compiled{packagedLinks: c.PackagedLinks}
	if c.Root != "" {
		root, err := cleanAbs(c.Root)
		if err != nil {
			return nil, fmt.Errorf("--root %q: %w", c.Root, err)
		}
		b, err := newBase(root)
		if err != nil {
			return nil, fmt.Errorf("--root %q: %w", c.Root, err)
		}
		if b.file {
			return nil, fmt.Errorf("--root %q: not a directory", c.Root)
		}
		v.root = root
		v.addBase(b)
	}
	for _, a := range c.Allow {
		p, err := cleanAbs(a)
		if err != nil {
			return nil, fmt.Errorf("--allow %q: %w", a, err)
		}
		b, err := newBase(p)
		if err != nil {
			return nil, fmt.Errorf("--allow %q: %w", a, err)
		}
		v.addBase(b)
	}
	if len(v.bases) == 0 {
		return nil, errors.New("neither --root nor --allow is set: no program could ever run")
	}
	interps, err := compileInterpreters(c.Interpreters)
	if err != nil {
		return nil, err
	}
	v.interps = interps
	if v.env, err = c.compileEnv(); err != nil {
		return nil, err
	}
	return v, nil
}

// envOptions returns the validated pass-env and set-env lists.
func (c *Config) envOptions() (envOptions, error) {
	if c.v != nil {
		return c.v.env, nil
	}
	return c.compileEnv()
}

func (c *Config) compileEnv() (envOptions, error) {
	var o envOptions
	for _, p := range c.PassEnv {
		name := strings.TrimSuffix(p, "*")
		switch {
		case p == "" || p == "*":
			return o, fmt.Errorf("pass-env %q: expected a variable name or a prefix such as LC_*", p)
		case strings.ContainsAny(name, "=*\x00"):
			return o, fmt.Errorf("pass-env %q: a name may not hold '=' or NUL, and '*' only at the end", p)
		}
		o.pass = append(o.pass, p)
	}
	for _, kv := range c.SetEnv {
		name, value, ok := strings.Cut(kv, "=")
		switch {
		case !ok || name == "":
			return o, fmt.Errorf("set-env %q: expected NAME=VALUE", kv)
		case strings.ContainsRune(kv, 0):
			return o, fmt.Errorf("set-env %q: NUL is not allowed", kv)
		case neverPass(name):
			return o, fmt.Errorf("set-env %q: %s never reaches a script (httpoxy, socket activation)", kv, name)
		}
		o.set = append(o.set, [2]string{name, value})
	}
	return o, nil
}

func compileInterpreters(in map[string][]string) (map[string][]string, error) {
	out := make(map[string][]string, len(in))
	for ext, cmd := range in {
		key := strings.ToLower(ext)
		switch {
		case len(key) < 2 || key[0] != '.':
			return nil, fmt.Errorf("--interpreter %s=%s: the extension must start with a dot, e.g. .py", ext, strings.Join(cmd, " "))
		case strings.ContainsAny(key[1:], "./=\x00"):
			return nil, fmt.Errorf("--interpreter %s=%s: the extension may not hold '.', '/', '=' or NUL after its dot", ext, strings.Join(cmd, " "))
		case len(cmd) == 0 || cmd[0] == "":
			return nil, fmt.Errorf("--interpreter %s: no command given, expected e.g. %s=python3", ext, ext)
		}
		for _, arg := range cmd {
			if strings.ContainsRune(arg, 0) {
				return nil, fmt.Errorf("--interpreter %s: NUL in the command", ext)
			}
		}
		if prev, dup := out[key]; dup && strings.Join(prev, "\x00") != strings.Join(cmd, "\x00") {
			return nil, fmt.Errorf("--interpreter %s: given twice with different commands", key)
		}
		out[key] = append([]string(nil), cmd...)
	}
	return out, nil
}

// cleanAbs checks that p is an absolute path and returns it cleaned.
func cleanAbs(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", errors.New("NUL in path")
	}
	if !filepath.IsAbs(p) {
		return "", errors.New("must be an absolute path")
	}
	return filepath.Clean(p), nil
}

// newBase resolves p, which must exist and be a directory or a regular file.
func newBase(p string) (base, error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return base{}, fmt.Errorf("resolve symlinks: %w", err)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return base{}, fmt.Errorf("stat: %w", err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return base{}, errors.New("neither a directory nor a regular file")
	}
	return base{lex: p, real: resolved, file: !fi.IsDir()}, nil
}

// addBase records b under its configured spelling and, when that differs, under
// its resolved one too, since a front end may name either.
func (v *compiled) addBase(b base) {
	b.depth = len(elements(b.lex))
	v.bases = append(v.bases, b)
	if b.real != b.lex {
		b.lex = b.real
		b.depth = len(elements(b.lex))
		v.bases = append(v.bases, b)
	}
}

// contains reports whether the resolved path p may run: it lies inside a
// resolved base directory or is a resolved allowed file.
func (v *compiled) contains(p string) bool {
	for _, b := range v.bases {
		if b.file && p == b.real || !b.file && within(p, b.real) {
			return true
		}
	}
	return false
}

// insideDir reports whether the resolved directory p is inside a base directory.
func (v *compiled) insideDir(p string) bool {
	for _, b := range v.bases {
		if !b.file && within(p, b.real) {
			return true
		}
	}
	return false
}

// mayLead reports whether the resolved directory p is inside a base or on the
// way to one, so a path walk through it may still end somewhere allowed.
func (v *compiled) mayLead(p string) bool {
	for _, b := range v.bases {
		if within(p, b.real) || within(b.real, p) {
			return true
		}
	}
	return false
}

// within reports whether p is dir or below it. Both must be clean and absolute;
// the check is by whole elements, so /root2 is not within /root.
func within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir) && p[len(dir)] == '/'
}
