// This file runs the common end-to-end cases behind Apache httpd with
// mod_proxy_fcgi, configured the way docs/ and legacy-examples/ tell users to.
package frontends

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

// apacheModules are the only modules the test config loads: an MPM, access control
// (Require), Alias, and the proxy pair. unixd (User/Group) is compiled in.
var apacheModules = []string{"mpm_event", "authz_core", "alias", "proxy", "proxy_fcgi"}

// apacheConf renders a complete httpd.conf serving dir's /cgi-bin/ through the
// bridge's unix socket. Apache will not run workers as root, so they run as nobody,
// which is why the bridge socket is group nogroup.
func apacheConf(dir, cgiDir, sock string, port int, extra string) string {
	conf := fmt.Sprintf(`# Written by cgibridge's frontends test.
ServerRoot %[1]s
ServerName 127.0.0.1
Listen 127.0.0.1:%[2]d
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
LogLevel warn
DefaultRuntimeDir %[1]s
Mutex file:%[1]s default
User nobody
Group nogroup
DocumentRoot %[1]s/htdocs
<Directory />
    AllowOverride None
    Require all denied
</Directory>
`, dir, port)
	for _, m := range apacheModules {
		conf += fmt.Sprintf("LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", m, m)
	}
	conf += fmt.Sprintf(`
Alias /cgi-bin/ %[1]s/
<Directory "%[1]s">
    Require all granted
    AcceptPathInfo On
    SetHandler "proxy:unix:%[2]s|fcgi://localhost/"
</Directory>
%[3]s
`, cgiDir, sock, extra)
	return conf
}

// startApache starts the bridge on the test scripts and Apache in front of it, with
// extra appended to the config, and returns the URL of /cgi-bin/.
func startApache(t *testing.T, extra string) (string, *harness.Bridge) {
	t.Helper()
	bin := mustTool(t, "apache2", "apache2")
	cgi := scriptDir(t)
	b := startBridgeFor(t, cgi)
	dir := t.TempDir()
	// Workers run as nobody and walk the path of the request's files.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "htdocs"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "httpd.conf")
	s := startServer(t, "apache2", filepath.Join(dir, "error.log"), func(port int) []string {
		if err := os.WriteFile(conf, []byte(apacheConf(dir, cgi, b.Socket, port, extra)), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{bin, "-d", dir, "-f", conf, "-DFOREGROUND"}
	})
	return s.url + "/cgi-bin/", b
}

// TestApacheProxyFCGI runs the common cases with the GENERIC backend type, which
// makes Apache send a plain SCRIPT_FILENAME.
func TestApacheProxyFCGI(t *testing.T) {
	base, _ := startApache(t, "ProxyFCGIBackendType GENERIC\n")
	runCommonCases(t, base)
}

// TestApacheDefaultBackendType pins that Apache's default (FPM) backend type works
// too: it sends SCRIPT_FILENAME as "proxy:fcgi://localhost//path/to/script", the
// quirk PHP-FPM strips, and a config without ProxyFCGIBackendType is what most
// users will write. (Once a bug: the bridge took that value for a path and
// answered every request 403 "not an absolute path".)
func TestApacheDefaultBackendType(t *testing.T) {
	base, _ := startApache(t, "")
	r, _ := do(t, "GET", base+"hello.sh", nil)
	if r.status != 200 || string(r.body) != "hello from cgibridge\n" {
		t.Fatalf("got %d %q, want 200 %q", r.status, r.body, "hello from cgibridge\n")
	}
	r, _ = do(t, "GET", base+"info.sh/extra/path?a=1", nil)
	if want := "SCRIPT_NAME=/cgi-bin/info.sh\nPATH_INFO=/extra/path\nQUERY_STRING=a=1\n"; r.status != 200 || string(r.body) != want {
		t.Fatalf("got %d %q, want 200 %q", r.status, r.body, want)
	}
}
