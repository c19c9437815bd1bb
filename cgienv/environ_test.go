// This file pins Environ: what a script's environment holds, what it never holds,
// and which source wins when several name the same variable.

package cgienv

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
)

// envMap turns Environ's output into a map, failing on malformed or repeated names
// and on output that is not sorted.
func envMap(t testing.TB, env []string) map[string]string {
	t.Helper()
	if !sort.StringsAreSorted(env) {
		t.Errorf("environment not sorted: %q", env)
	}
	m := make(map[string]string, len(env))
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !validName(name) || strings.ContainsRune(value, 0) {
			t.Errorf("malformed entry %q", kv)
		}
		if _, dup := m[name]; dup {
			t.Errorf("name %q appears twice", name)
		}
		m[name] = value
	}
	return m
}

const absent = "\x00absent"

func TestEnviron(t *testing.T) {
	direct := &Script{Path: "/r/t.cgi", Filename: "/r/t.cgi", ScriptName: "/t.cgi", Argv: []string{"/r/t.cgi"}, Dir: "/r"}
	withInfo := &Script{Path: "/r/t.cgi", Filename: "/r/t.cgi", ScriptName: "/t.cgi", PathInfo: "/x", PathTranslated: "/r/x", Argv: []string{"/r/t.cgi"}, Dir: "/r"}
	php := &Script{Path: "/r/p.php", Filename: "/r/p.php", ScriptName: "/p.php", Argv: []string{"/usr/bin/php-cgi8.2", "/r/p.php"}, Dir: "/r", Interpreted: true}
	python := &Script{Path: "/r/p.py", Filename: "/r/p.py", ScriptName: "/p.py", Argv: []string{"python3", "/r/p.py"}, Dir: "/r", Interpreted: true}
	hostEnv := []string{"PATH=/host/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "LCX=no", "TZ=UTC",
		"LISTEN_FDS=1", "LISTEN_PID=1", "NOTIFY_SOCKET=/run/n", "HTTP_PROXY=http://p", "http_proxy=http://p", "malformed", "=x", "PATH=/second"}

	tests := []struct {
		name     string
		config   func(*Config)
		params   []Param
		script   *Script
		bodyLen  int64
		osEnv    []string
		status   int               // 0: succeeds and want applies
		want     map[string]string // value absent means the name must not appear
		wantSize int               // if > 0, the exact number of entries
	}{
		{
			name:   "ParamsPassAndBridgeSetsCGIVariables",
			params: kv("REQUEST_METHOD", "GET", "QUERY_STRING", "a=1", "SERVER_SOFTWARE", "nginx", "SCRIPT_NAME", "/t.cgi/x", "SCRIPT_FILENAME", "/r/t.cgi/x", "HTTP_HOST", "h"),
			script: direct,
			want: map[string]string{"REQUEST_METHOD": "GET", "QUERY_STRING": "a=1", "GATEWAY_INTERFACE": "CGI/1.1",
				"SERVER_SOFTWARE": "cgibridge/test", "SCRIPT_NAME": "/t.cgi", "SCRIPT_FILENAME": "/r/t.cgi", "HTTP_HOST": "h",
				"PATH": defaultPath, "PATH_INFO": absent, "PATH_TRANSLATED": absent, "CONTENT_LENGTH": absent, "REDIRECT_STATUS": absent},
			wantSize: 8,
		},
		{
			name:   "EmptyMetaVariablesAreDroppedButQueryStringIsAlwaysDefined",
			params: kv("HTTP_X", "", "CONTENT_TYPE", "", "HTTPS", "", "QUERY_STRING", ""),
			script: direct,
			want:   map[string]string{"HTTP_X": absent, "CONTENT_TYPE": absent, "HTTPS": absent, "QUERY_STRING": ""},
		},
		{
			// git-http-backend only checks that GIT_HTTP_EXPORT_ALL is set;
			// nginx configurations send it empty.
			name:   "EmptyServerSettingsPassThrough",
			params: kv("GIT_HTTP_EXPORT_ALL", "", "GIT_PROJECT_ROOT", "/srv/git"),
			script: direct,
			want:   map[string]string{"GIT_HTTP_EXPORT_ALL": "", "GIT_PROJECT_ROOT": "/srv/git"},
		},
		{
			name:   "ServerSoftwareParamKeptWhenBridgeHasNone",
			config: func(c *Config) { c.ServerSoftware = "" },
			params: kv("SERVER_SOFTWARE", "nginx/1.22"),
			script: direct,
			want:   map[string]string{"SERVER_SOFTWARE": "nginx/1.22"},
		},
		{
			name: "DangerousParamsAreDropped",
			params: kv("HTTP_PROXY", "http://evil", "http_proxy", "http://evil", "LISTEN_FDS", "3", "LISTEN_PID", "1",
				"NOTIFY_SOCKET", "/x", "LD_PRELOAD", "/tmp/x.so", "LD_LIBRARY_PATH", "/tmp", "HTTP_TRANSFER_ENCODING", "chunked", "HTTP_ACCEPT", "*/*"),
			script: direct,
			want: map[string]string{"HTTP_PROXY": absent, "http_proxy": absent, "LISTEN_FDS": absent, "LISTEN_PID": absent,
				"NOTIFY_SOCKET": absent, "LD_PRELOAD": absent, "LD_LIBRARY_PATH": absent, "HTTP_TRANSFER_ENCODING": absent, "HTTP_ACCEPT": "*/*"},
		},
		{name: "EmptyParamNameIs400", params: kv("", "x"), script: direct, status: 400},
		{name: "EmptyParamNameWithEmptyValueIs400", params: kv("", ""), script: direct, status: 400},
		{name: "ParamNameWithEqualsIs400", params: kv("PATH=/evil:", "x"), script: direct, status: 400},
		{name: "ParamNameWithNULIs400", params: kv("HTTP_A\x00B", "x"), script: direct, status: 400},
		{name: "ParamValueWithNULIs400", params: kv("HTTP_A", "x\x00LD_PRELOAD=/x.so"), script: direct, status: 400},
		{name: "DroppedNameWithEqualsIsStill400", params: kv("HTTP_PROXY=", "x"), script: direct, status: 400},
		{
			name: "RepeatedHeadersJoinAndSettingsTakeTheLast",
			params: kv("HTTP_COOKIE", "a=1", "HTTP_ACCEPT", "text/html", "HTTP_COOKIE", "b=2", "HTTP_ACCEPT", "*/*",
				"REQUEST_METHOD", "GET", "REQUEST_METHOD", "POST", "HTTP_COOKIE", "", "HTTP_COOKIE", "c=3"),
			script: direct,
			want:   map[string]string{"HTTP_COOKIE": "a=1; b=2; c=3", "HTTP_ACCEPT": "text/html, */*", "REQUEST_METHOD": "POST"},
		},
		{
			name:   "ScriptPathInfoReplacesParams",
			params: kv("PATH_INFO", "/stale", "PATH_TRANSLATED", "/stale"),
			script: withInfo,
			want:   map[string]string{"PATH_INFO": "/x", "PATH_TRANSLATED": "/r/x"},
		},
		{
			name:   "EmptyScriptPathInfoRemovesParams",
			params: kv("PATH_INFO", "/stale", "PATH_TRANSLATED", "/stale"),
			script: direct,
			want:   map[string]string{"PATH_INFO": absent, "PATH_TRANSLATED": absent},
		},
		{name: "RealBodyLengthWithoutParam", script: direct, bodyLen: 10, want: map[string]string{"CONTENT_LENGTH": "10"}},
		{name: "RealBodyLengthBeatsParam", params: kv("CONTENT_LENGTH", "999"), script: direct, bodyLen: 12, want: map[string]string{"CONTENT_LENGTH": "12"}},
		{name: "ClaimedLengthWithEmptyBodyIsZero", params: kv("CONTENT_LENGTH", "5"), script: direct, want: map[string]string{"CONTENT_LENGTH": "0"}},
		{name: "NoBodyNoLength", params: kv("CONTENT_LENGTH", ""), script: direct, osEnv: []string{"CONTENT_LENGTH=7"},
			config: func(c *Config) { c.PassEnv = []string{"CONTENT_LENGTH"} }, want: map[string]string{"CONTENT_LENGTH": absent}},
		{name: "PHPInterpreterGetsRedirectStatus", script: php, want: map[string]string{"REDIRECT_STATUS": "200"}},
		{name: "PHPRedirectStatusParamKept", params: kv("REDIRECT_STATUS", "404"), script: php, want: map[string]string{"REDIRECT_STATUS": "404"}},
		{name: "OtherInterpreterGetsNoRedirectStatus", script: python, want: map[string]string{"REDIRECT_STATUS": absent}},
		{
			name:   "DirectlyRunPHPNamedProgramGetsNoRedirectStatus",
			script: &Script{Filename: "/r/php-info", Argv: []string{"/r/php-info"}},
			want:   map[string]string{"REDIRECT_STATUS": absent},
		},
		{
			name:   "BridgeEnvFilteredByPassEnv",
			script: direct,
			osEnv:  hostEnv,
			config: func(c *Config) {
				c.PassEnv = append(DefaultPassEnv(), "LISTEN_*", "NOTIFY_SOCKET", "HTTP_PROXY", "http_proxy")
			},
			want: map[string]string{"PATH": defaultPath, "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC", "HOME": absent, "LCX": absent,
				"LISTEN_FDS": absent, "LISTEN_PID": absent, "NOTIFY_SOCKET": absent, "HTTP_PROXY": absent, "http_proxy": absent},
		},
		{
			name:   "ParamBeatsBridgeEnv",
			params: kv("PATH", "/param/bin", "TZ", "Europe/Paris"),
			script: direct,
			osEnv:  hostEnv,
			want:   map[string]string{"PATH": "/param/bin", "TZ": "Europe/Paris", "LANG": "C.UTF-8"},
		},
		{
			name:   "PassEnvPathPassesTheBridgePath",
			script: direct,
			osEnv:  hostEnv,
			config: func(c *Config) { c.PassEnv = append(DefaultPassEnv(), "PATH") },
			want:   map[string]string{"PATH": "/host/bin"},
		},
		{
			name:   "NoPathAnywhereGetsDefault",
			script: direct,
			osEnv:  []string{"HOME=/root"},
			want:   map[string]string{"PATH": defaultPath},
		},
		{
			name: "SetEnvOverridesEverything",
			config: func(c *Config) {
				c.SetEnv = []string{"PATH=/opt/bin", "SCRIPT_NAME=/forced", "EMPTY=", "HTTP_HOST=fixed"}
			},
			params: kv("HTTP_HOST", "client"),
			script: direct,
			osEnv:  hostEnv,
			want:   map[string]string{"PATH": "/opt/bin", "SCRIPT_NAME": "/forced", "EMPTY": "", "HTTP_HOST": "fixed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Root: t.TempDir(), PassEnv: DefaultPassEnv(), ServerSoftware: "cgibridge/test"}
			if tt.config != nil {
				tt.config(c)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			env, err := Environ(c, tt.params, tt.script, tt.bodyLen, tt.osEnv)
			if tt.status != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Status != tt.status {
					t.Fatalf("Environ = %q, %v; want *Error with status %d", env, err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("Environ: %v", err)
			}
			got := envMap(t, env)
			for name, want := range tt.want {
				value, ok := got[name]
				switch {
				case want == absent && ok:
					t.Errorf("%s=%q present, want it absent", name, value)
				case want != absent && (!ok || value != want):
					t.Errorf("%s=%q (present %v), want %q", name, value, ok, want)
				}
			}
			if tt.wantSize > 0 && len(got) != tt.wantSize {
				t.Errorf("got %d entries %q, want %d", len(got), env, tt.wantSize)
			}
		})
	}
}

func TestEnvironWithoutValidateUsesConfigAsGiven(t *testing.T) {
	c := &Config{PassEnv: []string{"KEEP"}, SetEnv: []string{"S=1"}} // no root: Environ needs none
	env, err := Environ(c, nil, &Script{Filename: "/x", ScriptName: "/x"}, 0, []string{"KEEP=k", "DROP=d"})
	if err != nil {
		t.Fatal(err)
	}
	got := envMap(t, env)
	if got["KEEP"] != "k" || got["S"] != "1" || got["DROP"] != "" {
		t.Errorf("Environ = %q", env)
	}
	if _, err := Environ(&Config{SetEnv: []string{"NOEQUALS"}}, nil, &Script{}, 0, nil); err == nil || !strings.Contains(err.Error(), "set-env") {
		t.Errorf("invalid SetEnv accepted by Environ: %v", err)
	}
}

func TestMissingArgumentsAndInvalidConfigAreNotRefusals(t *testing.T) {
	if _, err := Environ(nil, nil, &Script{}, 0, nil); err == nil {
		t.Error("Environ accepted a nil Config")
	}
	if _, err := Environ(&Config{}, nil, nil, 0, nil); err == nil {
		t.Error("Environ accepted a nil Script")
	}
	if _, err := Resolve(nil, nil); err == nil {
		t.Error("Resolve accepted a nil Config")
	}
	// An invalid Config is the operator's fault, not the request's: no HTTP status.
	_, err := Resolve(&Config{Root: "relative"}, kv("SCRIPT_NAME", "/t.cgi"))
	var e *Error
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "--root") {
		t.Errorf("Resolve with an invalid Config = %v, want a plain error naming --root", err)
	}
}

func TestBaseEnvironIsTheAllowlistOnly(t *testing.T) {
	c := &Config{Root: t.TempDir(), PassEnv: []string{"PATH", "LC_*", "MAPSERVER_CONFIG_FILE"}, SetEnv: []string{"MUNIN_CONFIG=/etc/munin/munin.conf"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := BaseEnviron(c, []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "MAPSERVER_CONFIG_FILE=/etc/ms.conf", "LD_PRELOAD=/x.so", "LISTEN_FDS=1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"LC_ALL=C", "MAPSERVER_CONFIG_FILE=/etc/ms.conf", "MUNIN_CONFIG=/etc/munin/munin.conf", "PATH=/bin"}
	if !slices.Equal(got, want) {
		t.Fatalf("BaseEnviron = %q, want %q", got, want)
	}
}
