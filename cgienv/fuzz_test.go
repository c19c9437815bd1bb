// This file holds the fuzz targets for path resolution and environment building;
// their seeds live in testdata/fuzz and run with every go test.

package cgienv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzResolve feeds SCRIPT_FILENAME, SCRIPT_NAME and DOCUMENT_ROOT built from the
// input ("$R" and "$T" expand to the fixture's root and top, so the fuzzer reaches
// real files and the symlinks that point outside) and checks that whatever
// resolves lies inside the root or an allowed path.
func FuzzResolve(f *testing.F) {
	tr := newTestTree(f)
	c := tr.config(f)
	allowedDir := filepath.Join(tr.Top, "outside/allowed")
	allowedFile := filepath.Join(tr.Top, "outside/prog")
	f.Fuzz(func(t *testing.T, filename, scriptName, docRoot string) {
		params := kv("SCRIPT_FILENAME", tr.expand(filename), "SCRIPT_NAME", tr.expand(scriptName), "DOCUMENT_ROOT", tr.expand(docRoot))
		s, err := Resolve(c, params)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Status != 403 && e.Status != 404) {
				t.Fatalf("Resolve error %v is not a 403/404 *Error", err)
			}
			return
		}
		if !within(s.Path, tr.Root) && !within(s.Path, allowedDir) && s.Path != allowedFile {
			t.Fatalf("resolved %q (from %q) lies outside the root and the allowed paths", s.Path, s.Filename)
		}
		resolved, err := filepath.EvalSymlinks(s.Filename)
		if err != nil || resolved != s.Path {
			t.Fatalf("Filename %q resolves to %q (%v), Script.Path is %q", s.Filename, resolved, err, s.Path)
		}
		if fi, err := os.Stat(s.Path); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("resolved %q is not a regular file (%v)", s.Path, err)
		}
		if filepath.Clean(s.Filename) != s.Filename || len(s.Argv) == 0 || s.Argv[len(s.Argv)-1] != s.Filename {
			t.Fatalf("Filename %q not clean or not last in argv %q", s.Filename, s.Argv)
		}
		if s.PathInfo != "" && !strings.HasPrefix(s.PathInfo, "/") {
			t.Fatalf("PATH_INFO %q does not start with /", s.PathInfo)
		}
	})
}

// FuzzEnviron feeds params as "NAME:VALUE" lines and the bridge's environment as
// "NAME=VALUE" lines, and checks the result is a well-formed environment without
// the names that must never reach a script.
func FuzzEnviron(f *testing.F) {
	c := &Config{
		Root:           f.TempDir(),
		PassEnv:        append(DefaultPassEnv(), "LISTEN_*", "NOTIFY_SOCKET", "HTTP_PROXY", "http_proxy", "HOME"),
		SetEnv:         []string{"FORCED=1"},
		ServerSoftware: "cgibridge/fuzz",
	}
	if err := c.Validate(); err != nil {
		f.Fatal(err)
	}
	php := &Script{Path: "/r/p.php", Filename: "/r/p.php", ScriptName: "/p.php", PathInfo: "/i", Argv: []string{"php-cgi", "/r/p.php"}, Interpreted: true}
	f.Fuzz(func(t *testing.T, paramLines, osLines string, bodyLen int64) {
		var params []Param
		for _, line := range strings.Split(paramLines, "\n") {
			name, value, _ := strings.Cut(line, ":")
			params = append(params, Param{name, value})
		}
		env, err := Environ(c, params, php, bodyLen, strings.Split(osLines, "\n"))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("Environ error %v is not a 400 *Error", err)
			}
			return
		}
		got := envMap(t, env)
		for name := range got {
			u := strings.ToUpper(name)
			if u == "HTTP_PROXY" || u == "NOTIFY_SOCKET" || strings.HasPrefix(u, "LISTEN_") || strings.HasPrefix(u, "LD_") {
				t.Fatalf("%s reached the script: %q", name, env)
			}
		}
		if got["GATEWAY_INTERFACE"] != "CGI/1.1" || got["SCRIPT_FILENAME"] != "/r/p.php" || got["FORCED"] != "1" {
			t.Fatalf("bridge variables lost: %q", env)
		}
		if cl, ok := got["CONTENT_LENGTH"]; bodyLen > 0 && cl != strconv.FormatInt(bodyLen, 10) {
			t.Fatalf("CONTENT_LENGTH %q (present %v) for body of %d bytes", cl, ok, bodyLen)
		}
	})
}
