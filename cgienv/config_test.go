// This file pins Validate: which options it accepts, how it normalises them, and
// that its refusals name the bad option.

package cgienv

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestValidateRefusesBadOptionsNamingThem(t *testing.T) {
	tr := newTestTree(t)
	tests := []struct {
		name    string
		config  Config
		wantErr string // substring; it must name the option
	}{
		{"RelativeRoot", Config{Root: "root"}, `--root "root": must be an absolute path`},
		{"MissingRoot", Config{Root: "$T/nope"}, `--root "$T/nope"`},
		{"RootIsAFile", Config{Root: "$R/t.cgi"}, "not a directory"},
		{"RootIsAFifo", Config{Root: "$R/fifo"}, "neither a directory nor a regular file"},
		{"RelativeAllow", Config{Root: "$R", Allow: []string{"bin/x"}}, `--allow "bin/x": must be an absolute path`},
		{"MissingAllow", Config{Root: "$R", Allow: []string{"$T/nope"}}, `--allow "$T/nope"`},
		{"NeitherRootNorAllow", Config{}, "neither --root nor --allow"},
		{"InterpreterWithoutDot", Config{Root: "$R", Interpreters: map[string][]string{"py": {"python3"}}}, "--interpreter py=python3"},
		{"InterpreterBareDot", Config{Root: "$R", Interpreters: map[string][]string{".": {"python3"}}}, "--interpreter .=python3"},
		{"InterpreterWithSlash", Config{Root: "$R", Interpreters: map[string][]string{".a/b": {"x"}}}, "--interpreter .a/b=x"},
		{"InterpreterDoubleExtension", Config{Root: "$R", Interpreters: map[string][]string{".tar.gz": {"x"}}}, "--interpreter .tar.gz"},
		{"InterpreterEmptyCommand", Config{Root: "$R", Interpreters: map[string][]string{".py": {}}}, "--interpreter .py: no command"},
		{"InterpreterEmptyProgram", Config{Root: "$R", Interpreters: map[string][]string{".py": {""}}}, "--interpreter .py: no command"},
		{"InterpreterCaseClash", Config{Root: "$R", Interpreters: map[string][]string{".py": {"python3"}, ".PY": {"python2"}}}, "given twice"},
		{"PassEnvWithEquals", Config{Root: "$R", PassEnv: []string{"A=B"}}, `pass-env "A=B"`},
		{"PassEnvStarInside", Config{Root: "$R", PassEnv: []string{"L*C"}}, `pass-env "L*C"`},
		{"PassEnvEmpty", Config{Root: "$R", PassEnv: []string{""}}, `pass-env ""`},
		{"PassEnvStarOnly", Config{Root: "$R", PassEnv: []string{"*"}}, `pass-env "*"`},
		{"SetEnvWithoutEquals", Config{Root: "$R", SetEnv: []string{"FOO"}}, `set-env "FOO": expected NAME=VALUE`},
		{"SetEnvEmptyName", Config{Root: "$R", SetEnv: []string{"=x"}}, `set-env "=x"`},
		{"SetEnvNUL", Config{Root: "$R", SetEnv: []string{"A=b\x00c"}}, "NUL"},
		{"SetEnvHTTPProxy", Config{Root: "$R", SetEnv: []string{"HTTP_PROXY=http://evil"}}, "never reaches a script"},
		{"SetEnvListenFDs", Config{Root: "$R", SetEnv: []string{"LISTEN_FDS=3"}}, "never reaches a script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.config
			c.Root = tr.expand(c.Root)
			for i := range c.Allow {
				c.Allow[i] = tr.expand(c.Allow[i])
			}
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", tt.config)
			}
			if want := tr.expand(tt.wantErr); !strings.Contains(err.Error(), want) {
				t.Errorf("Validate error %q does not contain %q", err, want)
			}
			if c.v != nil {
				t.Error("a failed Validate left a compiled form behind")
			}
		})
	}
}

func TestValidateCleansPathsAndNormalisesInterpreters(t *testing.T) {
	tr := newTestTree(t)
	c := &Config{
		Root:         tr.Root + "/./sub/",
		Allow:        []string{tr.Top + "//alink", tr.Top + "/outside/allowed/"},
		Interpreters: map[string][]string{".PL": {"perl", "-T"}},
		PassEnv:      []string{"LC_*", "HOME"},
		SetEnv:       []string{"A=1", "EMPTY="},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(tr.Root, "sub"); c.Root != want {
		t.Errorf("Root = %q, want %q", c.Root, want)
	}
	if want := []string{tr.Top + "/alink", tr.Top + "/outside/allowed"}; !reflect.DeepEqual(c.Allow, want) {
		t.Errorf("Allow = %q, want %q", c.Allow, want)
	}
	if want := map[string][]string{".pl": {"perl", "-T"}}; !reflect.DeepEqual(c.v.interps, want) {
		t.Errorf("interpreters = %v, want %v", c.v.interps, want)
	}
	if want := [][2]string{{"A", "1"}, {"EMPTY", ""}}; !reflect.DeepEqual(c.v.env.set, want) {
		t.Errorf("set-env = %q, want %q", c.v.env.set, want)
	}
	// The allowed symlink is resolved once, and kept under both spellings.
	var reals []string
	for _, b := range c.v.bases {
		if b.file {
			reals = append(reals, b.lex+"->"+b.real)
		}
	}
	want := []string{tr.Top + "/alink->" + tr.Top + "/outside/prog", tr.Top + "/outside/prog->" + tr.Top + "/outside/prog"}
	if !reflect.DeepEqual(reals, want) {
		t.Errorf("file bases = %q, want %q", reals, want)
	}
}

func TestDefaultsAreFreshCopies(t *testing.T) {
	a := DefaultInterpreters()
	a[".py"][0] = "changed"
	delete(a, ".pl")
	if b := DefaultInterpreters(); b[".py"][0] != "python3" || b[".pl"] == nil {
		t.Errorf("DefaultInterpreters shares state between calls: %v", b)
	}
	p := DefaultPassEnv()
	p[0] = "changed"
	if DefaultPassEnv()[0] != "LANG" {
		t.Error("DefaultPassEnv shares state between calls")
	}
	want := map[string][]string{".py": {"python3"}, ".pl": {"perl"}, ".sh": {"sh"}, ".php": {"php-cgi"}, ".rb": {"ruby"}}
	if got := DefaultInterpreters(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultInterpreters = %v, want %v", got, want)
	}
	if got, want := DefaultPassEnv(), []string{"LANG", "LC_*", "TZ"}; !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultPassEnv = %q, want %q", got, want)
	}
}

func TestWithinComparesWholeElements(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/root", "/root", true},
		{"/root/a", "/root", true},
		{"/root2", "/root", false},
		{"/root2/a", "/root", false},
		{"/ro", "/root", false},
		{"/anything", "/", true},
		{"/", "/", true},
	}
	for _, tt := range tests {
		if got := within(tt.p, tt.dir); got != tt.want {
			t.Errorf("within(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
}
