// This file holds what tests that talk FastCGI to the bridge directly need
// to look like nginx: the params it sends, and a directory for scripts that
// the bridge's unprivileged user can reach.

package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
)

// ScriptDir makes a directory for test scripts that user nobody can enter
// and read (t.TempDir's parent is 0700, so it lives directly under
// os.TempDir), removed when the test ends.
func ScriptDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "cgb-scripts-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// NginxParams returns the FastCGI params nginx sends with Debian's
// fastcgi_params and `SCRIPT_FILENAME $document_root$fastcgi_script_name`
// for a request of /script under root. A bodyLen of -1 sends CONTENT_LENGTH
// empty, as nginx does for a GET.
func NginxParams(root, script, method string, bodyLen int) []fcgi.Pair {
	cl := ""
	if bodyLen >= 0 {
		cl = strconv.Itoa(bodyLen)
	}
	uri := "/" + script
	return []fcgi.Pair{
		{Name: "QUERY_STRING", Value: ""},
		{Name: "REQUEST_METHOD", Value: method},
		{Name: "CONTENT_TYPE", Value: ""},
		{Name: "CONTENT_LENGTH", Value: cl},
		{Name: "SCRIPT_NAME", Value: uri},
		{Name: "REQUEST_URI", Value: uri},
		{Name: "DOCUMENT_URI", Value: uri},
		{Name: "DOCUMENT_ROOT", Value: root},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "REQUEST_SCHEME", Value: "http"},
		{Name: "GATEWAY_INTERFACE", Value: "CGI/1.1"},
		{Name: "SERVER_SOFTWARE", Value: "nginx/1.22.1"},
		{Name: "REMOTE_ADDR", Value: "127.0.0.1"},
		{Name: "REMOTE_PORT", Value: "54321"},
		{Name: "REMOTE_USER", Value: ""},
		{Name: "SERVER_ADDR", Value: "127.0.0.1"},
		{Name: "SERVER_PORT", Value: "80"},
		{Name: "SERVER_NAME", Value: "localhost"},
		{Name: "REDIRECT_STATUS", Value: "200"},
		{Name: "SCRIPT_FILENAME", Value: filepath.Join(root, script)},
		{Name: "HTTP_HOST", Value: "localhost"},
	}
}
