// This file runs the common end-to-end cases behind lighttpd with mod_fastcgi,
// and lighttpd's FastCGI AUTHORIZER mode in front of a static file.
package frontends

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lighttpdConf renders a complete lighttpd.conf. lighttpd runs as root here (no
// server.username), so it reaches the bridge socket whatever its group. extra goes
// at the end.
func lighttpdConf(dir, docRoot string, port int, extra string) string {
	return fmt.Sprintf(`# Written by cgibridge's frontends test.
server.document-root = %[2]q
server.bind = "127.0.0.1"
server.port = %[3]d
server.pid-file = %[4]q
server.errorlog = %[5]q
server.upload-dirs = ( %[1]q )
server.modules += ( "mod_alias", "mod_fastcgi" )
%[6]s
`, dir, docRoot, port, filepath.Join(dir, "lighttpd.pid"), filepath.Join(dir, "error.log"), extra)
}

// startLighttpd starts lighttpd with conf (from lighttpdConf) and returns its URL.
func startLighttpd(t *testing.T, docRoot, extra string) string {
	t.Helper()
	bin := mustTool(t, "lighttpd", "lighttpd")
	dir := t.TempDir()
	conf := filepath.Join(dir, "lighttpd.conf")
	s := startServer(t, "lighttpd", filepath.Join(dir, "error.log"), func(port int) []string {
		if err := os.WriteFile(conf, []byte(lighttpdConf(dir, docRoot, port, extra)), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{bin, "-D", "-f", conf}
	})
	return s.url
}

// TestLighttpdFastCGI serves /cgi-bin/ through the bridge the way the shipped
// lighttpd config does: an alias to the scripts and check-local disabled, so the
// bridge, not lighttpd, finds the script and splits the path info.
func TestLighttpdFastCGI(t *testing.T) {
	cgi := scriptDir(t)
	b := startBridgeFor(t, cgi)
	url := startLighttpd(t, t.TempDir(), fmt.Sprintf(`
alias.url += ( "/cgi-bin/" => "%[1]s/" )
fastcgi.server += (
    "/cgi-bin/" => ((
        "socket"      => %[2]q,
        "check-local" => "disable",
    )),
)
`, cgi, b.Socket))
	runCommonCases(t, url+"/cgi-bin/")
}

// TestLighttpdAuthorizer puts the bridge in lighttpd's FastCGI AUTHORIZER mode in
// front of a static file: a script answering 200 lets the request through to the
// file, one answering 403 denies it.
func TestLighttpdAuthorizer(t *testing.T) {
	cgi := scriptDir(t)
	b := startBridgeFor(t, cgi)
	docs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(docs, "private"), 0o755); err != nil {
		t.Fatal(err)
	}
	const secret = "the protected file\n"
	if err := os.WriteFile(filepath.Join(docs, "private", "file.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	// lighttpd sends the protected file's SCRIPT_FILENAME; overriding it names the
	// authorizer script the bridge is to run.
	url := startLighttpd(t, docs, fmt.Sprintf(`
server.modules += ( "mod_setenv" )
$HTTP["url"] =~ "^/private/" {
    setenv.add-environment = ( "SCRIPT_FILENAME" => "%[3]s/auth.sh" )
}
fastcgi.server += (
    "/private/" => ((
        "socket"      => %[1]q,
        "mode"        => "authorizer",
        "docroot"     => %[2]q,
        "check-local" => "disable",
    )),
)
`, b.Socket, docs, cgi))
	cases := []struct {
		name   string
		token  string
		status int
		body   string
	}{
		{"AllowedWith200", "open-sesame", 200, secret},
		{"DeniedWith403", "wrong", 403, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := do(t, "GET", url+"/private/file.txt", nil, "X-Token", c.token)
			if c.status != 200 && strings.Contains(string(r.body), secret) {
				t.Fatalf("denied request still got the protected file: %q", r.body)
			}
			if r.status != c.status || (c.body != "" && string(r.body) != c.body) {
				t.Fatalf("got %d %q, want %d %q", r.status, r.body, c.status, c.body)
			}
		})
	}
}
