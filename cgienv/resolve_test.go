// This file pins Resolve's rules: the target, the path walk, confinement,
// SCRIPT_NAME/PATH_INFO splitting and the choice of interpreter.

package cgienv

import (
	"errors"
	"reflect"
	"testing"
)

// kv builds params from name, value pairs.
func kv(pairs ...string) []Param {
	ps := make([]Param, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		ps = append(ps, Param{pairs[i], pairs[i+1]})
	}
	return ps
}

func TestResolve(t *testing.T) {
	tr := newTestTree(t)
	type want struct {
		path, filename, scriptName, pathInfo, pathTranslated, dir string
		argv                                                      []string
		nph, interpreted                                          bool
	}
	tests := []struct {
		name   string
		config func(*Config)
		params []Param
		status int // 0: resolves, and then want applies
		want   want
	}{
		{
			name:   "ScriptFilenameRunsExecutableDirectly",
			params: kv("SCRIPT_FILENAME", "$R/t.cgi", "SCRIPT_NAME", "/t.cgi", "DOCUMENT_ROOT", "$R"),
			want:   want{path: "$R/t.cgi", filename: "$R/t.cgi", scriptName: "/t.cgi", dir: "$R", argv: []string{"$R/t.cgi"}},
		},
		{
			name:   "NginxPathInfoIsSplitByTheWalk",
			params: kv("SCRIPT_FILENAME", "$R/t.cgi/extra/path", "SCRIPT_NAME", "/t.cgi/extra/path", "DOCUMENT_ROOT", "$R"),
			want: want{path: "$R/t.cgi", filename: "$R/t.cgi", scriptName: "/t.cgi", pathInfo: "/extra/path",
				pathTranslated: "$R/extra/path", dir: "$R", argv: []string{"$R/t.cgi"}},
		},
		{
			name:   "ApacheProxyFCGIPrefixIsStripped",
			params: kv("SCRIPT_FILENAME", "proxy:fcgi://localhost/$R/t.cgi/extra?a=b", "SCRIPT_NAME", "/t.cgi"),
			want: want{path: "$R/t.cgi", filename: "$R/t.cgi", scriptName: "/t.cgi", pathInfo: "/extra",
				pathTranslated: "$R/extra", dir: "$R", argv: []string{"$R/t.cgi"}},
		},
		{
			name:   "ApacheProxyPrefixCannotSmuggleDotDot",
			params: kv("SCRIPT_FILENAME", "proxy:fcgi://localhost/$R/../etc/passwd"),
			status: 403,
		},
		{
			name:   "PathInfoKeepsTrailingSlashAsSent",
			params: kv("SCRIPT_FILENAME", "$R/sub/s.cgi/", "SCRIPT_NAME", "/sub/s.cgi/"),
			want: want{path: "$R/sub/s.cgi", filename: "$R/sub/s.cgi", scriptName: "/sub/s.cgi", pathInfo: "/",
				pathTranslated: "$R/", dir: "$R/sub", argv: []string{"$R/sub/s.cgi"}},
		},
		{
			name:   "DuplicateSlashesAndDotsAreCleanedInFilename",
			params: kv("SCRIPT_FILENAME", "$R//./sub//s.cgi", "SCRIPT_NAME", "/sub/s.cgi"),
			want:   want{path: "$R/sub/s.cgi", filename: "$R/sub/s.cgi", scriptName: "/sub/s.cgi", dir: "$R/sub", argv: []string{"$R/sub/s.cgi"}},
		},
		{
			name:   "DocumentRootPlusScriptNameWithoutFilename",
			params: kv("DOCUMENT_ROOT", "$R/", "SCRIPT_NAME", "/sub/s.cgi/x"),
			want: want{path: "$R/sub/s.cgi", filename: "$R/sub/s.cgi", scriptName: "/sub/s.cgi", pathInfo: "/x",
				pathTranslated: "$R/x", dir: "$R/sub", argv: []string{"$R/sub/s.cgi"}},
		},
		{
			name:   "RootPlusScriptNameWithoutDocumentRoot",
			params: kv("SCRIPT_FILENAME", "", "DOCUMENT_ROOT", "", "SCRIPT_NAME", "/sub/s.cgi"),
			want:   want{path: "$R/sub/s.cgi", filename: "$R/sub/s.cgi", scriptName: "/sub/s.cgi", dir: "$R/sub", argv: []string{"$R/sub/s.cgi"}},
		},
		{
			name:   "NoTargetParamsIs404",
			params: kv("REQUEST_METHOD", "GET", "SCRIPT_NAME", ""),
			status: 404,
		},
		{
			name:   "ScriptNameWithoutAnyRootIs404",
			config: func(c *Config) { c.Root = "" },
			params: kv("SCRIPT_NAME", "/t.cgi"),
			status: 404,
		},
		{
			name:   "FrontEndSplitPathInfoIsUsed",
			params: kv("SCRIPT_FILENAME", "$R/t.cgi", "SCRIPT_NAME", "/t.cgi", "PATH_INFO", "/x/y", "DOCUMENT_ROOT", "/srv/www"),
			want: want{path: "$R/t.cgi", filename: "$R/t.cgi", scriptName: "/t.cgi", pathInfo: "/x/y",
				pathTranslated: "/srv/www/x/y", dir: "$R", argv: []string{"$R/t.cgi"}},
		},
		{
			name:   "PathTranslatedParamKeptWithoutPathInfo",
			params: kv("SCRIPT_FILENAME", "$R/t.cgi", "SCRIPT_NAME", "/t.cgi", "PATH_TRANSLATED", "/srv/x"),
			want:   want{path: "$R/t.cgi", filename: "$R/t.cgi", scriptName: "/t.cgi", pathTranslated: "/srv/x", dir: "$R", argv: []string{"$R/t.cgi"}},
		},
		{
			name:   "MissingScriptNameDerivedFromRoot",
			params: kv("SCRIPT_FILENAME", "$R/sub/s.cgi"),
			want:   want{path: "$R/sub/s.cgi", filename: "$R/sub/s.cgi", scriptName: "/sub/s.cgi", dir: "$R/sub", argv: []string{"$R/sub/s.cgi"}},
		},
		{name: "DotDotInFilenameIs403", params: kv("SCRIPT_FILENAME", "$R/sub/../t.cgi"), status: 403},
		{name: "DotDotInScriptNameIs403", params: kv("SCRIPT_NAME", "/../outside/evil.cgi"), status: 403},
		{name: "DotDotInDocumentRootIs403", params: kv("DOCUMENT_ROOT", "$R/sub/..", "SCRIPT_NAME", "/t.cgi"), status: 403},
		{name: "NULInPathIs403", params: kv("SCRIPT_FILENAME", "$R/t.cgi\x00.txt"), status: 403},
		{name: "RelativeFilenameIs403", params: kv("SCRIPT_FILENAME", "t.cgi"), status: 403},
		{name: "RelativeDocumentRootIs403", params: kv("DOCUMENT_ROOT", "root", "SCRIPT_NAME", "/t.cgi"), status: 403},
		{
			name:   "PercentEncodingIsALiteralName",
			params: kv("SCRIPT_FILENAME", "$R/%2e%2e/%2e%2e/outside", "SCRIPT_NAME", "/%2e%2e/%2e%2e/outside"),
			want: want{path: "$R/%2e%2e", filename: "$R/%2e%2e", scriptName: "/%2e%2e", pathInfo: "/%2e%2e/outside",
				pathTranslated: "$R/%2e%2e/outside", dir: "$R", argv: []string{"$R/%2e%2e"}},
		},
		{name: "PercentEncodedDotDotIsNotDecoded", params: kv("SCRIPT_FILENAME", "$R/sub/%2e%2e/t.cgi"), status: 404},
		{name: "OutsideRootIs403", params: kv("SCRIPT_FILENAME", "$T/outside/evil.cgi"), status: 403},
		{name: "SiblingWithRootAsPrefixIsOutside", params: kv("SCRIPT_FILENAME", "$T/root2/r.cgi"), status: 403},
		{name: "RootOnlyGivesNoAllowEntries", config: func(c *Config) { c.Allow = nil }, params: kv("SCRIPT_FILENAME", "$T/outside/allowed/a.cgi"), status: 403},
		{name: "AllowOnlyConfigRefusesTheRoot", config: func(c *Config) { c.Root = "" }, params: kv("SCRIPT_FILENAME", "$R/t.cgi"), status: 403},
		{
			name:   "SymlinkInsideRootRunsTarget",
			params: kv("SCRIPT_FILENAME", "$R/in-link.cgi", "SCRIPT_NAME", "/in-link.cgi"),
			want:   want{path: "$R/t.cgi", filename: "$R/in-link.cgi", scriptName: "/in-link.cgi", dir: "$R", argv: []string{"$R/in-link.cgi"}},
		},
		{name: "RelativeSymlinkEscapingIs403", params: kv("SCRIPT_FILENAME", "$R/out-link.cgi"), status: 403},
		{name: "AbsoluteSymlinkEscapingIs403", params: kv("SCRIPT_FILENAME", "$R/abs-out.cgi"), status: 403},
		{name: "SymlinkToSiblingWithRootPrefixIs403", params: kv("SCRIPT_FILENAME", "$R/root2-link.cgi"), status: 403},
		{name: "SymlinkedDirEscapingIs403", params: kv("SCRIPT_FILENAME", "$R/out-dir/evil.cgi"), status: 403},
		{name: "SymlinkedDirEscapingHidesMissingFiles", params: kv("SCRIPT_FILENAME", "$R/out-dir/missing.cgi"), status: 403},
		{name: "SymlinkedDirEscapingIntoAllowedDirRuns", params: kv("SCRIPT_FILENAME", "$R/out-dir/allowed/a.cgi"),
			want: want{path: "$T/outside/allowed/a.cgi", filename: "$R/out-dir/allowed/a.cgi", scriptName: "/out-dir/allowed/a.cgi",
				dir: "$R/out-dir/allowed", argv: []string{"$R/out-dir/allowed/a.cgi"}}},
		{name: "SymlinkToAncestorThenOutsideIs403", params: kv("SCRIPT_FILENAME", "$R/up-dir/outside/evil.cgi"), status: 403},
		{name: "SymlinkToAncestorThenSiblingIs403", params: kv("SCRIPT_FILENAME", "$R/up-dir/root2/r.cgi"), status: 403},
		{
			name:   "SymlinkToAncestorBackIntoRootRuns",
			params: kv("SCRIPT_FILENAME", "$R/up-dir/root/t.cgi"),
			want:   want{path: "$R/t.cgi", filename: "$R/up-dir/root/t.cgi", scriptName: "/up-dir/root/t.cgi", dir: "$R/up-dir/root", argv: []string{"$R/up-dir/root/t.cgi"}},
		},
		{
			name:   "SymlinkedDirInsideRootRuns",
			params: kv("SCRIPT_FILENAME", "$R/in-dir/s.cgi/p", "SCRIPT_NAME", "/in-dir/s.cgi/p"),
			want: want{path: "$R/sub/s.cgi", filename: "$R/in-dir/s.cgi", scriptName: "/in-dir/s.cgi", pathInfo: "/p",
				pathTranslated: "$R/p", dir: "$R/in-dir", argv: []string{"$R/in-dir/s.cgi"}},
		},
		{name: "DanglingSymlinkIs404", params: kv("SCRIPT_FILENAME", "$R/dangling.cgi"), status: 404},
		{name: "SymlinkLoopIs403", params: kv("SCRIPT_FILENAME", "$R/loop"), status: 403},
		{name: "MissingFileIs404", params: kv("SCRIPT_FILENAME", "$R/nope.cgi"), status: 404},
		{name: "MissingDirectoryIs404", params: kv("SCRIPT_FILENAME", "$R/nodir/x.cgi/y"), status: 404},
		{name: "DirectoryIs403", params: kv("SCRIPT_FILENAME", "$R/sub/deeper/"), status: 403},
		{name: "RootItselfIs403", params: kv("SCRIPT_FILENAME", "$R"), status: 403},
		{name: "FifoIs403", params: kv("SCRIPT_FILENAME", "$R/fifo"), status: 403},
		{name: "NotExecutableWithoutInterpreterIs403", params: kv("SCRIPT_FILENAME", "$R/plain.txt"), status: 403},
		{
			name:   "MappedExtensionWithoutExecBitUsesInterpreter",
			params: kv("SCRIPT_FILENAME", "$R/nosh.py", "SCRIPT_NAME", "/nosh.py"),
			want: want{path: "$R/nosh.py", filename: "$R/nosh.py", scriptName: "/nosh.py", dir: "$R",
				argv: []string{"python3", "$R/nosh.py"}, interpreted: true},
		},
		{
			name:   "MappedExecutableWithShebangRunsDirectly",
			params: kv("SCRIPT_FILENAME", "$R/sh.py", "SCRIPT_NAME", "/sh.py"),
			want:   want{path: "$R/sh.py", filename: "$R/sh.py", scriptName: "/sh.py", dir: "$R", argv: []string{"$R/sh.py"}},
		},
		{
			name:   "MappedExecutableWithoutShebangUsesInterpreter",
			params: kv("SCRIPT_FILENAME", "$R/noshx.py", "SCRIPT_NAME", "/noshx.py"),
			want: want{path: "$R/noshx.py", filename: "$R/noshx.py", scriptName: "/noshx.py", dir: "$R",
				argv: []string{"python3", "$R/noshx.py"}, interpreted: true},
		},
		{
			name:   "MappedEmptyExecutableUsesInterpreter",
			params: kv("SCRIPT_FILENAME", "$R/empty.sh", "SCRIPT_NAME", "/empty.sh"),
			want: want{path: "$R/empty.sh", filename: "$R/empty.sh", scriptName: "/empty.sh", dir: "$R",
				argv: []string{"sh", "$R/empty.sh"}, interpreted: true},
		},
		{
			name:   "ExtensionMatchIgnoresCase",
			params: kv("SCRIPT_FILENAME", "$R/UPPER.PY", "SCRIPT_NAME", "/UPPER.PY"),
			want: want{path: "$R/UPPER.PY", filename: "$R/UPPER.PY", scriptName: "/UPPER.PY", dir: "$R",
				argv: []string{"python3", "$R/UPPER.PY"}, interpreted: true},
		},
		{
			name:   "ConfiguredInterpreterWithArguments",
			config: func(c *Config) { c.Interpreters = map[string][]string{".php": {"/usr/bin/php-cgi", "-d", "x=1"}} },
			params: kv("SCRIPT_FILENAME", "$R/page.php", "SCRIPT_NAME", "/page.php"),
			want: want{path: "$R/page.php", filename: "$R/page.php", scriptName: "/page.php", dir: "$R",
				argv: []string{"/usr/bin/php-cgi", "-d", "x=1", "$R/page.php"}, interpreted: true},
		},
		{name: "NoInterpretersMeansExecBitNeeded", config: func(c *Config) { c.Interpreters = nil }, params: kv("SCRIPT_FILENAME", "$R/nosh.py"), status: 403},
		{
			name:   "NPHFromBaseName",
			params: kv("SCRIPT_FILENAME", "$R/nph-x.cgi", "SCRIPT_NAME", "/nph-x.cgi"),
			want:   want{path: "$R/nph-x.cgi", filename: "$R/nph-x.cgi", scriptName: "/nph-x.cgi", dir: "$R", argv: []string{"$R/nph-x.cgi"}, nph: true},
		},
		{
			name:   "AllowedDirectoryOutsideRootRuns",
			params: kv("SCRIPT_FILENAME", "$T/outside/allowed/a.cgi/p", "SCRIPT_NAME", "/a.cgi/p", "DOCUMENT_ROOT", "$T/outside/allowed"),
			want: want{path: "$T/outside/allowed/a.cgi", filename: "$T/outside/allowed/a.cgi", scriptName: "/a.cgi", pathInfo: "/p",
				pathTranslated: "$T/outside/allowed/p", dir: "$T/outside/allowed", argv: []string{"$T/outside/allowed/a.cgi"}},
		},
		{
			name:   "AllowedFileNamedBySymlinkTakesPathInfo",
			params: kv("SCRIPT_FILENAME", "$T/alink/repo.git/info/refs", "SCRIPT_NAME", "/git/repo.git/info/refs", "DOCUMENT_ROOT", "$R"),
			want: want{path: "$T/outside/prog", filename: "$T/alink", scriptName: "/git", pathInfo: "/repo.git/info/refs",
				pathTranslated: "$R/repo.git/info/refs", dir: "$T", argv: []string{"$T/alink"}},
		},
		{
			name:   "AllowedFileByItsResolvedName",
			params: kv("SCRIPT_FILENAME", "$T/outside/prog", "SCRIPT_NAME", "/prog"),
			want:   want{path: "$T/outside/prog", filename: "$T/outside/prog", scriptName: "/prog", dir: "$T/outside", argv: []string{"$T/outside/prog"}},
		},
		{name: "AllowedFileDoesNotAllowItsSiblings", params: kv("SCRIPT_FILENAME", "$T/outside/evil.cgi"), status: 403},
		{name: "AllowedFileNameIsNotAPrefix", params: kv("SCRIPT_FILENAME", "$T/alink2"), status: 403},
		{name: "LastNonEmptyParamWins", params: kv("SCRIPT_FILENAME", "$T/outside/evil.cgi", "SCRIPT_FILENAME", "$R/t.cgi", "SCRIPT_FILENAME", "", "SCRIPT_NAME", "/t.cgi"),
			want: want{path: "$R/t.cgi", filename: "$R/t.cgi", scriptName: "/t.cgi", dir: "$R", argv: []string{"$R/t.cgi"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tr.config(t)
			if tt.config != nil {
				tt.config(c)
				if err := c.Validate(); err != nil {
					t.Fatal(err)
				}
			}
			params := make([]Param, len(tt.params))
			for i, p := range tt.params {
				params[i] = Param{p.Name, tr.expand(p.Value)}
			}
			s, err := Resolve(c, params)
			if tt.status != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Status != tt.status {
					t.Fatalf("Resolve = %+v, %v; want *Error with status %d", s, err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			w := tt.want
			argv := make([]string, len(w.argv))
			for i, a := range w.argv {
				argv[i] = tr.expand(a)
			}
			want := &Script{
				Path: tr.expand(w.path), Filename: tr.expand(w.filename), ScriptName: w.scriptName,
				PathInfo: w.pathInfo, PathTranslated: tr.expand(w.pathTranslated), Argv: argv,
				Dir: tr.expand(w.dir), NPH: w.nph, Interpreted: w.interpreted,
			}
			if !reflect.DeepEqual(s, want) {
				t.Errorf("Resolve:\n got %+v\nwant %+v", s, want)
			}
		})
	}
}

func TestResolveWithoutValidateMatchesValidated(t *testing.T) {
	tr := newTestTree(t)
	raw := &Config{Root: tr.Root + "/", Allow: []string{tr.Top + "/alink"}, Interpreters: map[string][]string{".PY": {"python3"}}}
	for _, sf := range []string{"$R/nosh.py/x", "$R/out-link.cgi", "$T/alink/y", "$R/nope"} {
		params := kv("SCRIPT_FILENAME", tr.expand(sf))
		s1, err1 := Resolve(raw, params)
		validated := *raw
		if err := validated.Validate(); err != nil {
			t.Fatal(err)
		}
		s2, err2 := Resolve(&validated, params)
		if !reflect.DeepEqual(s1, s2) || !reflect.DeepEqual(err1, err2) {
			t.Errorf("%s: unvalidated %+v, %v; validated %+v, %v", sf, s1, err1, s2, err2)
		}
	}
	if raw.v != nil {
		t.Error("Resolve stored its compiled form in the caller's Config")
	}
}

func TestErrorMessageNamesStatusReasonAndPath(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Status: 403, Reason: "outside root", Path: "/etc/passwd"}, "403 outside root: /etc/passwd"},
		{&Error{Status: 404, Reason: "no SCRIPT_FILENAME or SCRIPT_NAME param"}, "404 no SCRIPT_FILENAME or SCRIPT_NAME param"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
