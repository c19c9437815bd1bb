// This file holds the exec-mode tests that share one nginx and a few bridges:
// languages, PATH_INFO, the environment, confinement, CGI responses, streaming.
package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestExecModeThroughNginx(t *testing.T) {
	// Missing interpreters would show up as puzzling 502s: name the package instead.
	for tool, pkg := range map[string]string{"perl": "perl libcgi-pm-perl", "python3": "python3", "php-cgi": "php-cgi"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: apt-get install %s", tool, pkg)
		}
	}
	tr := newTree(t)
	primary := &upstream{Env: []string{"SECRET_TOKEN=x"}}
	passEnv := &upstream{
		Prefix: "passenv",
		Args:   []string{"--pass-env", "SECRET_TOKEN", "--set-env", "FOO=bar"},
		Env:    []string{"SECRET_TOKEN=x"},
	}
	unbuffered := &upstream{Prefix: "unbuffered", Via: primary, Extra: "fastcgi_buffering off;"}
	noReqBuf := &upstream{Prefix: "noreqbuf", Via: primary, Extra: "fastcgi_request_buffering off;"}
	// A front end that hands over a SCRIPT_FILENAME climbing out of the root.
	crafted := &upstream{Prefix: "crafted", Via: primary,
		Extra: "fastcgi_param SCRIPT_FILENAME $document_root/cgi-bin/../outside/outside.cgi;"}
	// The same tree served by a bridge that allows the outside directory.
	allowed := &upstream{Prefix: "allowed", Args: []string{"--allow", tr.Outside}}
	ngx := stack(t, tr, primary, passEnv, unbuffered, noReqBuf, crafted, allowed)
	base := ngx.URL

	t.Run("ShellHello", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/hello.sh?x=1")
		wantStatusBody(t, r, 200, "Hello from hello.sh", "QUERY_STRING=x=1", "REQUEST_METHOD=GET")
	})
	t.Run("PerlFormGET", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/form.pl")
		wantStatusBody(t, r, 200, "<form", `name="name"`, "Tell us")
	})
	t.Run("PerlFormPOST", func(t *testing.T) {
		r := post(t, base+"/cgi-bin/form.pl", "application/x-www-form-urlencoded", "name=Ada+%3Cb%3E&colour=blue")
		wantStatusBody(t, r, 200, "You sent", "<dt>name</dt><dd>Ada &lt;b&gt;</dd>", "<dt>colour</dt><dd>blue</dd>")
	})
	t.Run("PythonQueryAndBody", func(t *testing.T) {
		r := post(t, base+"/cgi-bin/query.py?a=1&a=2&b=", "application/x-www-form-urlencoded", "x=y&z=%26")
		wantStatusBody(t, r, 200)
		var got struct {
			Method string              `json:"method"`
			Query  map[string][]string `json:"query"`
			Form   map[string][]string `json:"form"`
		}
		if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
			t.Fatalf("query.py output is not JSON: %v\n%s", err, r.Body)
		}
		want := fmt.Sprint("POST", map[string][]string{"a": {"1", "2"}, "b": {""}}, map[string][]string{"x": {"y"}, "z": {"&"}})
		if g := fmt.Sprint(got.Method, got.Query, got.Form); g != want {
			t.Errorf("query.py saw %s, want %s", g, want)
		}
	})
	t.Run("CompiledC", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/hello.cgi/pi?q=c")
		wantStatusBody(t, r, 200, "Hello from C", "SCRIPT_NAME=/cgi-bin/hello.cgi", "PATH_INFO=/pi", "QUERY_STRING=q=c")
	})
	t.Run("PHPViaPHPCGI", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/info.php?name=ada")
		wantStatusBody(t, r, 200, "PHP_SAPI=cgi-fcgi", "name=ada")
	})
	t.Run("NoShebangPythonByExtension", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/noshebang.py?k=v")
		wantStatusBody(t, r, 200, "ran without a shebang via python3", "QUERY_STRING=k=v")
	})
	t.Run("NPHStatusReachesClient", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/nph-status.cgi")
		wantStatusBody(t, r, 201, "created")
		if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, "/created/1") {
			t.Errorf("Location = %q, want .../created/1", loc)
		}
	})

	t.Run("PathInfoSplit", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/env.cgi/extra/path")
		wantStatusBody(t, r, 200)
		env := envOf(r.Body)
		for name, want := range map[string]string{
			"SCRIPT_NAME":     "/cgi-bin/env.cgi",
			"PATH_INFO":       "/extra/path",
			"SCRIPT_FILENAME": tr.Root + "/env.cgi",
		} {
			if env[name] != want {
				t.Errorf("%s = %q, want %q", name, env[name], want)
			}
		}
		if pt := env["PATH_TRANSLATED"]; !strings.HasSuffix(pt, "/extra/path") {
			t.Errorf("PATH_TRANSLATED = %q, want a path ending in /extra/path", pt)
		}
	})
	t.Run("EnvironmentBuiltNotInherited", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/cgi-bin/env.cgi", nil)
		req.Header.Set("Proxy", "evil")
		req.Header.Set("X-Probe", "seen")
		env := envOf(wantStatusBody(t, do(t, req), 200).Body)
		if got := env["GATEWAY_INTERFACE"]; got != "CGI/1.1" {
			t.Errorf("GATEWAY_INTERFACE = %q, want CGI/1.1", got)
		}
		if got := env["SERVER_SOFTWARE"]; !strings.HasPrefix(got, "cgibridge/") {
			t.Errorf("SERVER_SOFTWARE = %q, want cgibridge/...", got)
		}
		// The probe shows request headers do arrive, so the missing HTTP_PROXY is
		// the httpoxy defence and not a lost header.
		if got := env["HTTP_X_PROBE"]; got != "seen" {
			t.Errorf("HTTP_X_PROBE = %q, want seen", got)
		}
		if got, ok := env["HTTP_PROXY"]; ok {
			t.Errorf("HTTP_PROXY = %q reached the script (httpoxy)", got)
		}
		if got, ok := env["SECRET_TOKEN"]; ok {
			t.Errorf("the bridge's own SECRET_TOKEN=%q leaked to the script", got)
		}
		if _, ok := env["FOO"]; ok {
			t.Errorf("FOO set without --set-env")
		}
	})
	t.Run("PassEnvAndSetEnv", func(t *testing.T) {
		env := envOf(wantStatusBody(t, get(t, base+"/passenv/cgi-bin/env.cgi"), 200).Body)
		if got := env["SECRET_TOKEN"]; got != "x" {
			t.Errorf("with --pass-env SECRET_TOKEN the script saw SECRET_TOKEN=%q, want x", got)
		}
		if got := env["FOO"]; got != "bar" {
			t.Errorf("with --set-env FOO=bar the script saw FOO=%q, want bar", got)
		}
	})
	t.Run("ChunkedUploadGetsRealContentLength", func(t *testing.T) {
		const size = 300000 // past the bridge's in-memory spool bound
		for _, path := range []string{"/cgi-bin/bodylen.sh", "/noreqbuf/cgi-bin/bodylen.sh"} {
			req, _ := http.NewRequest(http.MethodPost, base+path, io.NopCloser(strings.NewReader(strings.Repeat("c", size))))
			req.ContentLength = -1 // unknown length: net/http sends it chunked
			r := wantStatusBody(t, do(t, req), 200)
			want := fmt.Sprintf("CONTENT_LENGTH=%d\nREAD=%d\n", size, size)
			if r.Body != want {
				t.Errorf("%s: script printed %q, want %q", path, r.Body, want)
			}
		}
	})
	t.Run("WorkingDirectoryIsScriptDir", func(t *testing.T) {
		r := wantStatusBody(t, get(t, base+"/cgi-bin/pwd.sh"), 200)
		if got := strings.TrimSpace(r.Body); got != tr.Root {
			t.Errorf("pwd = %q, want %q", got, tr.Root)
		}
	})

	t.Run("DotDotInRawRequest", func(t *testing.T) {
		status, body := rawGet(t, base, "/cgi-bin/../../etc/passwd")
		if status == 200 || strings.Contains(body, "root:") {
			t.Errorf("raw /cgi-bin/../../etc/passwd: status %d, body %q", status, body)
		}
		status, body = rawGet(t, base, "/cgi-bin/../outside/outside.cgi")
		if status == 200 || strings.Contains(body, "outside") {
			t.Errorf("raw /cgi-bin/../outside/outside.cgi: status %d, body %q", status, body)
		}
		if tr.ran(t) {
			t.Error("raw /cgi-bin/../outside/outside.cgi ran outside.cgi")
		}
	})
	t.Run("DotDotInScriptFilenameRefused", func(t *testing.T) {
		r := get(t, base+"/crafted/cgi-bin/x")
		if r.Status != 403 {
			t.Errorf("SCRIPT_FILENAME with ..: status %d, want 403\n%s", r.Status, r.Body)
		}
		if tr.ran(t) {
			t.Error("outside.cgi ran through a SCRIPT_FILENAME with ..")
		}
		waitLog(t, primary.Bridge, "refused")
	})
	t.Run("SymlinkOutOfRootRefused", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/link.cgi")
		if r.Status != 403 {
			t.Errorf("symlink to outside: status %d, want 403\n%s", r.Status, r.Body)
		}
		if tr.ran(t) {
			t.Error("outside.cgi ran through a symlink in the root")
		}
		waitLog(t, primary.Bridge, "refused", "link.cgi")
	})
	t.Run("AllowedOutsideDirRuns", func(t *testing.T) {
		wantStatusBody(t, get(t, base+"/allowed/cgi-bin/link.cgi"), 200, "outside ran")
		if !tr.ran(t) {
			t.Error("with --allow of its directory, outside.cgi still did not run")
		}
	})
	for _, c := range []struct {
		name, path string
		status     int
		log        []string
	}{
		{"MissingScript404", "/cgi-bin/nope.sh", 404, []string{"refused", "404", "nope.sh"}},
		{"Directory403", "/cgi-bin/subdir", 403, []string{"refused", "403", "subdir"}},
		{"NonExecutable403", "/cgi-bin/plain.txt", 403, []string{"refused", "403", "plain.txt"}},
		{"NoShebang502", "/cgi-bin/noshebang.cgi", 502, []string{"#!", "noshebang.cgi"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := get(t, base+c.path)
			if r.Status != c.status {
				t.Errorf("GET %s: status %d, want %d\n%s", c.path, r.Status, c.status, r.Body)
			}
			if strings.Contains(r.Body, "plain.txt: not executable") {
				t.Error("plain.txt's contents were served")
			}
			waitLog(t, primary.Bridge, c.log...)
		})
	}

	t.Run("ClientRedirect", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/redirect.sh")
		if r.Status != 302 || r.Header.Get("Location") != "https://example.org/" {
			t.Errorf("redirect.sh: status %d Location %q, want 302 https://example.org/", r.Status, r.Header.Get("Location"))
		}
	})
	t.Run("LocalRedirectServedInPlace", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/local-redirect.sh")
		wantStatusBody(t, r, 200, "Hello from hello.sh")
		if loc := r.Header.Get("Location"); loc != "" {
			t.Errorf("local redirect leaked Location %q to the client", loc)
		}
	})
	t.Run("ScriptStatusPasses", func(t *testing.T) {
		wantStatusBody(t, get(t, base+"/cgi-bin/status404.sh"), 404, "no such thing")
	})
	t.Run("InvalidStatus502", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/badstatus.sh")
		if r.Status != 502 || strings.Contains(r.Body, "should not be seen") {
			t.Errorf("Status: abc: status %d body %q, want 502", r.Status, r.Body)
		}
		waitLog(t, primary.Bridge, "bad CGI response", "badstatus.sh")
	})
	t.Run("NoOutput502WithStderrTail", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/noout.sh")
		if r.Status != 502 {
			t.Errorf("noout.sh: status %d, want 502", r.Status)
		}
		waitLog(t, primary.Bridge, "bad CGI response", "noout.sh", "boom")
	})
	t.Run("HeaderWithoutBlankLine502", func(t *testing.T) {
		r := get(t, base+"/cgi-bin/noblank.sh")
		if r.Status != 502 {
			t.Errorf("noblank.sh: status %d, want 502", r.Status)
		}
		waitLog(t, primary.Bridge, "bad CGI response", "noblank.sh")
	})
	t.Run("LFAndCRLFHeaders", func(t *testing.T) {
		for _, style := range []string{"lf", "crlf"} {
			r := wantStatusBody(t, get(t, base+"/cgi-bin/"+style+".sh"), 200, style+" body")
			if got := r.Header.Get("X-Line-Ends"); got != style {
				t.Errorf("%s.sh: X-Line-Ends = %q, want %q", style, got, style)
			}
		}
	})

	t.Run("StreamingUnbuffered", func(t *testing.T) {
		resp, err := client.Get(base + "/unbuffered/cgi-bin/stream.sh")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rd := bufio.NewReader(resp.Body)
		line1, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read first line: %v", err)
		}
		at1 := time.Now()
		line2, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read second line: %v", err)
		}
		gap := time.Since(at1)
		if line1 != "first\n" || line2 != "second\n" {
			t.Fatalf("lines %q %q, want first, second", line1, line2)
		}
		if gap < 700*time.Millisecond {
			t.Errorf("second line came %v after the first, want >= 700ms: output was buffered", gap)
		}
	})
}

// wantStatusBody checks r's status and that its body holds every one of subs.
func wantStatusBody(t *testing.T, r response, status int, subs ...string) response {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d; body:\n%s", r.Status, status, r.Body)
		return r
	}
	for _, s := range subs {
		if !strings.Contains(r.Body, s) {
			t.Errorf("body lacks %q:\n%s", s, r.Body)
		}
	}
	return r
}

// rawGet sends a request line byte for byte (net/http would clean the path) and
// returns the status and body.
func rawGet(t *testing.T, baseURL, path string) (int, string) {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, u.Host)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("raw GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
