// This file tests Nginx and FastCGIParams against the real nginx: the config it
// writes, that it serves, that it stops with its workers, and what a FastCGI
// backend receives through the standard parameter set.
package harness

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNginxConfIsAcceptedByNginxAndWrapsServerBlock(t *testing.T) {
	bin, err := NginxBinary()
	if err != nil {
		t.Fatal(err)
	}
	const inner = "        location = /probe { return 200 \"probe\"; }"
	tests := []struct {
		name       string
		asRoot     bool
		mimeTypes  bool
		want, omit []string
	}{
		{name: "as root with mime types", asRoot: true, mimeTypes: true,
			want: []string{"user root;", "include /etc/nginx/mime.types;"}},
		{name: "unprivileged without mime types",
			omit: []string{"user ", "mime.types"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := nginxConf(dir, 18080, inner, tt.asRoot, tt.mimeTypes)
			always := []string{
				"daemon off;", "master_process on;", "worker_processes 1;",
				"pid " + dir + "/nginx.pid;", "error_log " + dir + "/error.log info;",
				"access_log " + dir + "/access.log;", "fastcgi_temp_path " + dir + "/fastcgi_temp;",
				"client_body_temp_path " + dir + "/client_body_temp;", "client_max_body_size 128m;",
				"listen 127.0.0.1:18080;", inner,
			}
			for _, s := range append(always, tt.want...) {
				if !strings.Contains(conf, s) {
					t.Errorf("config lacks %q:\n%s", s, conf)
				}
			}
			for _, s := range tt.omit {
				if strings.Contains(conf, s) {
					t.Errorf("config has %q:\n%s", s, conf)
				}
			}
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			// `user root` is only valid when nginx runs as root; -t checks it anyway.
			if tt.asRoot && os.Geteuid() != 0 {
				t.Skip("nginx -t of a root config needs root")
			}
			out, err := exec.Command(bin, "-t", "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
			if err != nil {
				t.Errorf("nginx -t rejects the config: %v\n%s\n%s", err, out, conf)
			}
		})
	}
}

func TestStartNginxServesAndStopTakesWorkersAlong(t *testing.T) {
	n := StartNginx(t, `        location = /ok { return 200 "ok\n"; }`)
	resp, err := http.Get(n.URL + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /ok = %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}
	// nginx logs a request after sending its response, so give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(n.AccessLog(), "GET /ok") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(n.AccessLog(), "GET /ok") {
		t.Errorf("access.log in %s lacks the request:\n%s", n.Dir, n.AccessLog())
	}
	workers, err := Children(n.PID())
	if err != nil {
		t.Fatal(err)
	}
	if len(workers) != 1 {
		t.Fatalf("nginx master %d has descendants %v, want exactly one worker", n.PID(), workers)
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range append(workers, n.PID()) {
		if err := WaitGone(pid, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	if err := n.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
}

func TestFastCGIParamsLinesAreWellFormedAndComplete(t *testing.T) {
	line := regexp.MustCompile(`^fastcgi_param ([A-Z_]+) (\S.*);$`)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(FastCGIParams(), "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("malformed line %q", l)
			continue
		}
		if _, dup := got[m[1]]; dup {
			t.Errorf("%s set twice", m[1])
		}
		got[m[1]] = m[2]
	}
	want := map[string]string{
		"QUERY_STRING": "$query_string", "REQUEST_METHOD": "$request_method",
		"CONTENT_TYPE": "$content_type", "CONTENT_LENGTH": "$content_length",
		"SCRIPT_NAME": "$fastcgi_script_name", "REQUEST_URI": "$request_uri",
		"DOCUMENT_URI": "$document_uri", "DOCUMENT_ROOT": "$document_root",
		"SERVER_PROTOCOL": "$server_protocol", "REQUEST_SCHEME": "$scheme",
		"HTTPS": "$https if_not_empty", "GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE": "nginx/$nginx_version", "REMOTE_ADDR": "$remote_addr",
		"REMOTE_PORT": "$remote_port", "REMOTE_USER": "$remote_user",
		"SERVER_ADDR": "$server_addr", "SERVER_PORT": "$server_port",
		"SERVER_NAME": "$server_name", "REDIRECT_STATUS": "200",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected param %s (SCRIPT_FILENAME and HTTP_HOST are left to each config)", k)
		}
	}
}

func TestNginxSendsStandardParamsToFastCGIBackend(t *testing.T) {
	dir, err := shortTempDir("fcgi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "backend.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go serveParamsEcho(l)

	n := StartNginx(t, fmt.Sprintf(`        root /srv/www;
        location /cgi-bin/ {
%s            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:%s;
        }`, FastCGIParams(), sock))
	resp, err := http.Get(n.URL + "/cgi-bin/t.cgi/extra?a=1&b=2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET through nginx = %d, want 200; body:\n%s\nerror.log:\n%s", resp.StatusCode, body, n.ErrorLog())
	}
	params := strings.Split(strings.TrimSpace(string(body)), "\n")
	port := strings.TrimPrefix(n.URL, "http://127.0.0.1:")
	for _, want := range []string{
		"REQUEST_METHOD=GET",
		"QUERY_STRING=a=1&b=2",
		"REQUEST_URI=/cgi-bin/t.cgi/extra?a=1&b=2",
		// Without fastcgi_split_path_info nginx keeps the path info in both.
		"SCRIPT_NAME=/cgi-bin/t.cgi/extra",
		"SCRIPT_FILENAME=/srv/www/cgi-bin/t.cgi/extra",
		"DOCUMENT_ROOT=/srv/www",
		"CONTENT_LENGTH=", // sent empty on GET
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_PROTOCOL=HTTP/1.1",
		"REMOTE_ADDR=127.0.0.1",
		"SERVER_PORT=" + port,
		"HTTP_HOST=127.0.0.1:" + port,
		"REDIRECT_STATUS=200",
	} {
		if !slices.Contains(params, want) {
			t.Errorf("backend did not receive %q; got:\n%s", want, body)
		}
	}
	for _, p := range params {
		if strings.HasPrefix(p, "HTTPS=") {
			t.Errorf("plain HTTP request sent %q; if_not_empty should drop it", p)
		}
	}
}

// FastCGI record types and the version, as the spec numbers them; just enough of a
// responder for the test above.
const (
	fcgiVersion1     = 1
	fcgiEndRequest   = 3
	fcgiParams       = 4
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiHeaderLength = 8
)

// serveParamsEcho answers each FastCGI request on l with its params, sorted, one
// NAME=VALUE a line, then closes the connection (nginx does not set KEEP_CONN here).
func serveParamsEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			params, id, err := readParams(bufio.NewReader(c))
			if err != nil {
				return
			}
			slices.Sort(params)
			out := "Content-Type: text/plain\r\n\r\n" + strings.Join(params, "\n") + "\n"
			_ = writeRecord(c, fcgiStdout, id, []byte(out))
			_ = writeRecord(c, fcgiStdout, id, nil)
			_ = writeRecord(c, fcgiEndRequest, id, make([]byte, 8))
		}()
	}
}

// readParams reads records until the empty STDIN record and returns the params.
func readParams(r *bufio.Reader) ([]string, uint16, error) {
	var stream []byte
	var id uint16
	for {
		var h [fcgiHeaderLength]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, 0, err
		}
		id = binary.BigEndian.Uint16(h[2:4])
		body := make([]byte, int(binary.BigEndian.Uint16(h[4:6]))+int(h[6]))
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, 0, err
		}
		body = body[:binary.BigEndian.Uint16(h[4:6])]
		switch h[1] {
		case fcgiParams:
			stream = append(stream, body...)
		case fcgiStdin:
			if len(body) == 0 {
				return decodePairs(stream), id, nil
			}
		}
	}
}

// decodePairs splits a FastCGI name-value stream into NAME=VALUE strings; it trusts
// its input, which comes from nginx.
func decodePairs(b []byte) []string {
	length := func() int {
		if b[0]&0x80 == 0 {
			n := int(b[0])
			b = b[1:]
			return n
		}
		n := int(binary.BigEndian.Uint32(b[:4]) &^ (1 << 31))
		b = b[4:]
		return n
	}
	var out []string
	for len(b) > 0 {
		nl := length()
		vl := length()
		out = append(out, string(b[:nl])+"="+string(b[nl:nl+vl]))
		b = b[nl+vl:]
	}
	return out
}

func writeRecord(w io.Writer, typ uint8, id uint16, body []byte) error {
	h := []byte{fcgiVersion1, typ, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(h[2:4], id)
	binary.BigEndian.PutUint16(h[4:6], uint16(len(body)))
	_, err := w.Write(append(h, body...))
	return err
}

func TestNginxConfPutsHTTPBlockAtHTTPLevelBeforeServer(t *testing.T) {
	const upstream = "    upstream backends {\n        server 127.0.0.1:9;\n    }"
	conf := nginxConfHTTP("/tmp/x", 18080, upstream, "        location / { fastcgi_pass backends; }", false, false)
	h, srv := strings.Index(conf, "http {"), strings.Index(conf, "server {")
	if u := strings.Index(conf, upstream); h < 0 || u < h || srv < u {
		t.Errorf("upstream block not between `http {` and `server {`:\n%s", conf)
	}
	if plain := nginxConf("/tmp/x", 18080, "", false, false); strings.Contains(plain, "upstream") {
		t.Errorf("config without an http block has one:\n%s", plain)
	}
}

func TestStartNginxHTTPServesThroughAnUpstreamOfTwoBackends(t *testing.T) {
	// Two plain HTTP backends on loopback, each naming itself, behind one
	// upstream {}: the http-level block is where nginx requires it.
	var servers []string
	seen := map[string]bool{}
	for _, name := range []string{"one", "two"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, name)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		servers = append(servers, "        server "+l.Addr().String()+";\n")
	}
	n := StartNginxHTTP(t, "    upstream backends {\n"+strings.Join(servers, "")+"    }",
		"        location / { proxy_pass http://backends; }")
	for i := 0; i < 4; i++ {
		resp, err := http.Get(n.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET / = %d %q", resp.StatusCode, body)
		}
		seen[string(body)] = true
	}
	// nginx's default round robin alternates between the two.
	if !seen["one"] || !seen["two"] {
		t.Errorf("4 requests reached %v, want both backends", seen)
	}
}
