// This file holds Environ: the child's environment, built from the params, the
// resolved script and an allowlist of the bridge's own variables, never inherited.

package cgienv

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// defaultPath is what a script gets when neither the bridge's pass-through
// environment nor the front end supplies PATH: a script calling "sed" must work.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// Environ builds the child's environment. bodyLen is the real spooled body length.
// osEnviron is the bridge's own environment (os.Environ()), filtered by PassEnv.
//
// The result is "NAME=VALUE" strings sorted by name. Precedence, lowest first:
// the bridge's passed-through variables, the params, the variables the bridge
// always sets (GATEWAY_INTERFACE, SCRIPT_NAME, CONTENT_LENGTH...), SetEnv. A param
// with an empty name, '=' or NUL in its name, or NUL in its value is an *Error
// with status 400: such a pair cannot be represented in an environment block.
func Environ(c *Config, params []Param, s *Script, bodyLen int64, osEnviron []string) ([]string, error) {
	if c == nil || s == nil {
		return nil, errors.New("cgienv: Environ called without a Config or a Script")
	}
	opts, err := c.envOptions()
	if err != nil {
		return nil, fmt.Errorf("cgienv: invalid config: %w", err)
	}
	fromParams, err := paramEnv(params)
	if err != nil {
		return nil, err
	}

	env := envMaps.Get().(map[string]string)
	defer func() {
		clear(env)
		envMaps.Put(env)
	}()
	opts.passThrough(env, osEnviron)
	defer func() {
		clear(fromParams)
		envMaps.Put(fromParams)
	}()
	for name, value := range fromParams {
		env[name] = value
	}

	env["GATEWAY_INTERFACE"] = "CGI/1.1"
	if c.ServerSoftware != "" {
		env["SERVER_SOFTWARE"] = c.ServerSoftware
	}
	// RFC 3875 4.1.7: QUERY_STRING must be defined, as "" when there is no query.
	if _, ok := env["QUERY_STRING"]; !ok {
		env["QUERY_STRING"] = ""
	}
	env["SCRIPT_NAME"] = s.ScriptName
	env["SCRIPT_FILENAME"] = s.Filename
	setOrUnset(env, "PATH_INFO", s.PathInfo)
	setOrUnset(env, "PATH_TRANSLATED", s.PathTranslated)
	// The body was spooled, so its real length is known and beats whatever the
	// front end claimed (stale with chunked uploads, empty without buffering).
	if bodyLen > 0 || fromParams["CONTENT_LENGTH"] != "" {
		env["CONTENT_LENGTH"] = strconv.FormatInt(max(bodyLen, 0), 10)
	} else {
		delete(env, "CONTENT_LENGTH")
	}
	// php-cgi refuses to run without REDIRECT_STATUS (cgi.force_redirect).
	if s.Interpreted && len(s.Argv) > 0 && strings.HasPrefix(filepath.Base(s.Argv[0]), "php") {
		if _, ok := env["REDIRECT_STATUS"]; !ok {
			env["REDIRECT_STATUS"] = "200"
		}
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = defaultPath
	}
	for _, nv := range opts.set {
		if !neverPass(nv[0]) {
			env[nv[0]] = nv[1]
		}
	}

	return flatten(env), nil
}

// envMaps recycles the maps Environ builds the environment in: one per
// request, a measurable cost for a warm child that answers in microseconds.
var envMaps = sync.Pool{New: func() any { return make(map[string]string, 64) }}

// flatten returns env as sorted "NAME=VALUE" strings, which share one
// allocation.
func flatten(env map[string]string) []string {
	names := make([]string, 0, len(env))
	size := 0
	for name, value := range env {
		names = append(names, name)
		size += len(name) + 1 + len(value)
	}
	sort.Strings(names)
	var sb strings.Builder
	sb.Grow(size)
	for _, name := range names {
		sb.WriteString(name)
		sb.WriteByte('=')
		sb.WriteString(env[name])
	}
	all := sb.String()
	off := 0
	for i, name := range names {
		n := len(name) + 1 + len(env[name])
		names[i] = all[off : off+n]
		off += n
	}
	return names
}

// BaseEnviron is the environment a persistent program (a FastCGI child, an
// interpreter helper) starts with, before any request: the bridge's own
// variables on the pass-env list, a default PATH, then SetEnv — never the
// whole bridge environment. Sorted "NAME=VALUE" strings.
func BaseEnviron(c *Config, osEnviron []string) ([]string, error) {
	opts, err := c.envOptions()
	if err != nil {
		return nil, fmt.Errorf("cgienv: invalid config: %w", err)
	}
	env := make(map[string]string, 16)
	opts.passThrough(env, osEnviron)
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = defaultPath
	}
	for _, nv := range opts.set {
		if !neverPass(nv[0]) {
			env[nv[0]] = nv[1]
		}
	}
	return flatten(env), nil
}

// passThrough copies the variables of osEnviron that the pass-env list lets
// through into env.
func (o envOptions) passThrough(env map[string]string, osEnviron []string) {
	for _, kv := range osEnviron {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !validName(name) || strings.ContainsRune(value, 0) || neverPass(name) || !o.passes(name) {
			continue
		}
		if _, seen := env[name]; !seen { // the first wins, as in getenv(3)
			env[name] = value
		}
	}
}

// paramEnv checks every param and returns the ones a script may see, duplicates
// merged. Repeated headers arrive as repeated params from nginx 1.22: cookies join
// with "; " (RFC 6265), other headers with ", " (RFC 9110); anything else is a
// setting, where the last one wins. An empty meta-variable counts as absent
// (nginx sends CONTENT_TYPE="", HTTPS="" and the like on every request, and
// RFC 3875 reads a zero-length meta-variable as unset); any other param is a
// setting of the web server's configuration and passes even when empty —
// git-http-backend only asks whether GIT_HTTP_EXPORT_ALL is set, and nginx
// configurations set it to "".
func paramEnv(params []Param) (map[string]string, error) {
	env := envMaps.Get().(map[string]string)
	for _, p := range params {
		switch {
		case p.Name == "":
			return nil, badRequest("empty param name", "")
		case !validName(p.Name):
			return nil, badRequest("param name holds '=' or NUL", strconv.Quote(p.Name))
		case strings.ContainsRune(p.Value, 0):
			return nil, badRequest("param value holds NUL", strconv.Quote(p.Name))
		}
		if (p.Value == "" && isMetaVariable(p.Name)) || dropParam(p.Name) {
			continue
		}
		prev, dup := env[p.Name]
		switch {
		case !dup:
			env[p.Name] = p.Value
		case p.Name == "HTTP_COOKIE":
			env[p.Name] = prev + "; " + p.Value
		case strings.HasPrefix(p.Name, "HTTP_"):
			env[p.Name] = prev + ", " + p.Value
		default:
			env[p.Name] = p.Value
		}
	}
	return env, nil
}

// metaVariables are RFC 3875's meta-variables and the ones web servers add
// alongside them (nginx's fastcgi_params, Apache's mod_proxy_fcgi).
var metaVariables = map[string]bool{
	"AUTH_TYPE": true, "CONTENT_LENGTH": true, "CONTENT_TYPE": true, "GATEWAY_INTERFACE": true,
	"PATH_INFO": true, "PATH_TRANSLATED": true, "QUERY_STRING": true, "REMOTE_ADDR": true,
	"REMOTE_HOST": true, "REMOTE_IDENT": true, "REMOTE_USER": true, "REQUEST_METHOD": true,
	"SCRIPT_NAME": true, "SERVER_NAME": true, "SERVER_PORT": true, "SERVER_PROTOCOL": true,
	"SERVER_SOFTWARE": true, "SCRIPT_FILENAME": true, "DOCUMENT_ROOT": true, "DOCUMENT_URI": true,
	"REQUEST_URI": true, "REQUEST_SCHEME": true, "HTTPS": true, "REMOTE_PORT": true,
	"SERVER_ADDR": true, "REDIRECT_STATUS": true,
}

func isMetaVariable(name string) bool {
	return metaVariables[name] || strings.HasPrefix(name, "HTTP_")
}

func setOrUnset(env map[string]string, name, value string) {
	if value == "" {
		delete(env, name)
		return
	}
	env[name] = value
}

// validName reports whether name can appear in an environment block.
func validName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "=\x00")
}

// neverPass reports names that never reach a script from any source: HTTP_PROXY
// because a client's "Proxy:" header becomes it (httpoxy), LISTEN_* and
// NOTIFY_SOCKET because they belong to the bridge's own service manager. The
// comparison ignores case since some programs read the lower-case spellings.
func neverPass(name string) bool {
	return strings.EqualFold(name, "HTTP_PROXY") || strings.EqualFold(name, "NOTIFY_SOCKET") || hasPrefixFold(name, "LISTEN_")
}

// hasPrefixFold is strings.HasPrefix ignoring case, without allocating.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// dropParam reports params the front end may send that a script must not get:
// the never-pass names, LD_* (the dynamic loader would obey them), and
// HTTP_TRANSFER_ENCODING (the body was spooled and is no longer chunked).
func dropParam(name string) bool {
	return neverPass(name) || hasPrefixFold(name, "LD_") || strings.EqualFold(name, "HTTP_TRANSFER_ENCODING")
}

// passes reports whether the bridge's own variable name is on the pass-env list.
func (o envOptions) passes(name string) bool {
	for _, p := range o.pass {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}
