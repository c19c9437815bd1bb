// This file holds Resolve: from a request's params to the file to run, found by
// walking the path as fcgiwrap does and confined to the root and the allowed paths.

package cgienv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Script is a resolved request target.
type Script struct {
	Path           string   // absolute path of the file to run, symlinks resolved
	Filename       string   // SCRIPT_FILENAME shown to the program (the unresolved, cleaned path of the file)
	ScriptName     string   // SCRIPT_NAME with the path info split off
	PathInfo       string   // PATH_INFO; "" when there is none
	PathTranslated string   // PATH_TRANSLATED; "" when there is none
	Argv           []string // {interp..., Filename} or {Filename}
	Dir            string   // working directory: the script's directory
	NPH            bool     // base name starts with "nph-"
	Interpreted    bool     // Argv[0] is an interpreter from Config.Interpreters
}

// Resolve finds the program a request names and decides how to run it. A refusal
// is an *Error carrying 403 or 404; any other error means the Config is invalid.
//
// The target is SCRIPT_FILENAME, else DOCUMENT_ROOT (or Root) joined with
// SCRIPT_NAME. It is walked element by element from the root or allowed path it
// lies under; the first regular file is the script and the rest is PATH_INFO,
// because nginx sends SCRIPT_FILENAME with the path info still attached.
func Resolve(c *Config, params []Param) (*Script, error) {
	if c == nil {
		return nil, errors.New("cgienv: Resolve called without a Config")
	}
	v, err := c.compiled()
	if err != nil {
		return nil, fmt.Errorf("cgienv: invalid config: %w", err)
	}
	raw, err := v.target(params)
	if err != nil {
		return nil, err
	}
	found, err := v.walk(raw)
	if err != nil {
		return nil, err
	}
	s := &Script{
		Path:     found.path,
		Filename: found.filename,
		Dir:      filepath.Dir(found.filename),
		NPH:      strings.HasPrefix(filepath.Base(found.filename), "nph-"),
	}
	if err := v.chooseArgv(s, found.mode); err != nil {
		return nil, err
	}
	v.splitNames(s, params, found.rest)
	return s, nil
}

// lastParam returns the last non-empty value sent for name. Empty values count as
// absent: nginx sends every configured param, empty or not.
func lastParam(params []Param, name string) string {
	for i := len(params) - 1; i >= 0; i-- {
		if params[i].Name == name && params[i].Value != "" {
			return params[i].Value
		}
	}
	return ""
}

// target returns the raw path the request names, refusing one that could escape
// by '..', hide a NUL, or is relative. It is deliberately not percent-decoded:
// the front end already decoded the URI, so "%2e%2e" here is a literal name.
func (v *compiled) target(params []Param) (string, error) {
	raw := lastParam(params, "SCRIPT_FILENAME")
	if raw == "" {
		name := lastParam(params, "SCRIPT_NAME")
		if name == "" {
			return "", notFound("no SCRIPT_FILENAME or SCRIPT_NAME param", "")
		}
		docRoot := lastParam(params, "DOCUMENT_ROOT")
		if docRoot == "" {
			docRoot = v.root
		}
		if docRoot == "" {
			return "", notFound("SCRIPT_NAME without DOCUMENT_ROOT and no --root", name)
		}
		raw = strings.TrimRight(docRoot, "/") + "/" + strings.TrimLeft(name, "/")
	}
	raw = stripApacheProxyPrefix(raw)
	switch {
	case strings.ContainsRune(raw, 0):
		return "", forbidden("NUL in path", strings.ReplaceAll(raw, "\x00", `\x00`))
	case !strings.HasPrefix(raw, "/"):
		return "", forbidden("not an absolute path", raw)
	}
	for _, e := range strings.Split(raw, "/") {
		if e == ".." {
			return "", forbidden("'..' in path", raw)
		}
	}
	return raw, nil
}

// stripApacheProxyPrefix undoes Apache mod_proxy_fcgi's default
// (ProxyFCGIBackendType FPM) spelling of SCRIPT_FILENAME,
// "proxy:fcgi://HOST/PATH[?QUERY]", which PHP-FPM also strips: the path is
// what follows the authority, without a query.
func stripApacheProxyPrefix(raw string) string {
	const prefix = "proxy:fcgi://"
	if !strings.HasPrefix(raw, prefix) {
		return raw
	}
	rest := raw[len(prefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return raw
	}
	path, _, _ := strings.Cut(rest[i:], "?")
	return path
}

// element is one non-empty, non-"." name of a path and the offset just past it.
type element struct {
	name string
	end  int
}

// elements splits an absolute path into its names, keeping where each ends so the
// path info can be cut from the raw string as the front end sent it.
func elements(p string) []element {
	var out []element
	for i := 0; i < len(p); {
		for i < len(p) && p[i] == '/' {
			i++
		}
		j := i
		for j < len(p) && p[j] != '/' {
			j++
		}
		if j > i && p[i:j] != "." {
			out = append(out, element{name: p[i:j], end: j})
		}
		i = j
	}
	return out
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

func prefixPath(elems []element, n int) string {
	p := "/"
	for _, e := range elems[:n] {
		p = joinPath(p, e.name)
	}
	return p
}

// match returns the base the cleaned path lex lies under, the deepest if several.
func (v *compiled) match(lex string) (base, bool) {
	var best base
	found := false
	for _, b := range v.bases {
		if within(lex, b.lex) && (!found || b.depth > best.depth) {
			best, found = b, true
		}
	}
	return best, found
}

// walked is what the path walk found.
type walked struct {
	filename string      // cleaned, unresolved path of the script
	path     string      // the same with symlinks resolved
	mode     fs.FileMode // of the resolved file
	rest     string      // raw remainder after the script's name: the path info
}

// walk finds the first regular file along raw below its base. It tracks the
// resolved path as it goes and refuses as soon as a symlink leads somewhere no
// allowed path can be reached from, so the answers (404 or 403) reveal nothing
// about the file system outside the roots.
func (v *compiled) walk(raw string) (walked, error) {
	elems := elements(raw)
	lex := prefixPath(elems, len(elems))
	b, ok := v.match(lex)
	if !ok {
		return walked{}, forbidden("outside root", lex)
	}
	first := b.depth + 1
	dirReal := b.real
	if b.file {
		first, dirReal = b.depth, ""
	}
	p := prefixPath(elems, first-1)
	for i := first; i <= len(elems); i++ {
		name := elems[i-1].name
		p = joinPath(p, name)
		fi, err := os.Lstat(p)
		if err != nil {
			if dirReal != "" && !v.insideDir(dirReal) {
				// Only passing through on the way to an allowed path: whether
				// something is missing here is none of the client's business.
				return walked{}, forbidden("outside root", p)
			}
			return walked{}, statError(err, p)
		}
		cur := joinPath(dirReal, name)
		if fi.Mode()&fs.ModeSymlink != 0 || dirReal == "" {
			if cur, err = filepath.EvalSymlinks(p); err != nil {
				return walked{}, statError(err, p)
			}
			if fi, err = os.Stat(cur); err != nil {
				return walked{}, statError(err, p)
			}
		}
		switch {
		case fi.Mode().IsRegular():
			if !v.contains(cur) && !(v.packagedLinks && packagedLink(p, cur)) {
				e := forbidden("symlink leads outside root", p)
				e.Detail = "it leads to " + cur + "; allow that program with --allow " + cur
				if fi.Mode().Perm()&0o111 == 0 && !v.hasInterpreter(cur) {
					e.Detail = "it leads to " + cur + ", which is not a program"
				} else if !v.packagedLinks {
					e.Detail += ", or links installed by packages with --allow-packaged-links"
				} else {
					e.Detail += "; --allow-packaged-links does not cover it: the link, the file or a directory above it is not root's alone"
				}
				return walked{}, e
			}
			return walked{filename: p, path: cur, mode: fi.Mode(), rest: raw[elems[i-1].end:]}, nil
		case fi.IsDir():
			if !v.mayLead(cur) {
				return walked{}, forbidden("symlink leads outside root", p)
			}
			dirReal = cur
		default:
			return walked{}, forbidden("not a regular file", p)
		}
	}
	return walked{}, forbidden("is a directory", lex)
}

// statError maps a failed stat along the walk to a refusal. A stat that
// fails for want of search permission on a directory above p cannot tell
// whether p exists, so it is a 404 as a missing file is (403 is for a file
// that exists and may not run); the reason, kept for the log, says why.
func statError(err error, p string) *Error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return notFound("no such script", p)
	case errors.Is(err, syscall.EACCES):
		e := notFound("no such script", p)
		e.Detail = "cannot stat: permission denied: a directory above it is not searchable by the user the bridge runs as, so whether it exists is unknown"
		return e
	default:
		return forbidden("cannot stat: "+errnoText(err), p)
	}
}

// errnoText gives the bare cause of a path error, without repeating the path.
func errnoText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// chooseArgv decides between running the file itself and handing it to the
// interpreter configured for its extension. A mapped file that is executable and
// starts with "#!" keeps its own shebang, so a script that needs a particular
// interpreter version or flags still gets it.
func (v *compiled) chooseArgv(s *Script, mode fs.FileMode) error {
	executable := mode.Perm()&0o111 != 0
	ext := strings.ToLower(filepath.Ext(s.Filename))
	interp, mapped := v.interps[ext]
	switch {
	case mapped && !(executable && hasShebang(s.Path)):
		s.Argv = append(append(make([]string, 0, len(interp)+1), interp...), s.Filename)
		s.Interpreted = true
	case executable:
		s.Argv = []string{s.Filename}
	default:
		return forbidden("not executable and no interpreter for extension", s.Filename)
	}
	return nil
}

// hasInterpreter reports whether p's extension maps to an interpreter.
func (v *compiled) hasInterpreter(p string) bool {
	_, ok := v.interps[strings.ToLower(filepath.Ext(p))]
	return ok
}

// hasShebang reports whether the file starts with "#!". It opens non-blocking so
// that a file swapped for a fifo since the stat cannot hang the request.
func hasShebang(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [2]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false
	}
	return head == [2]byte{'#', '!'}
}

// splitNames fills SCRIPT_NAME, PATH_INFO and PATH_TRANSLATED. rest is the path
// info the walk found; when it found none, the front end may have split it itself
// (fastcgi_split_path_info) and sent PATH_INFO.
func (v *compiled) splitNames(s *Script, params []Param, rest string) {
	docRoot := lastParam(params, "DOCUMENT_ROOT")
	if docRoot == "" {
		docRoot = v.root
	}
	name := lastParam(params, "SCRIPT_NAME")
	info := rest
	if info != "" {
		name = strings.TrimSuffix(name, info)
	} else {
		info = lastParam(params, "PATH_INFO")
	}
	if name == "" {
		// RFC 3875 wants SCRIPT_NAME; derive it from the file's place under the
		// document root when the front end sent only SCRIPT_FILENAME.
		name = s.Filename
		if dr := strings.TrimRight(docRoot, "/"); dr != "" && within(s.Filename, dr) {
			name = s.Filename[len(dr):]
		}
	}
	s.ScriptName, s.PathInfo = name, info
	s.PathTranslated = lastParam(params, "PATH_TRANSLATED")
	if info != "" && docRoot != "" {
		// RFC 3875 4.1.6: the path info mapped onto the document root.
		s.PathTranslated = strings.TrimRight(docRoot, "/") + info
	}
}
