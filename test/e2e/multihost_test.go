// This file tests several bridges behind one nginx upstream over TCP, as
// legacy-examples/configs/nginx-upstream.conf sets them up: requests spread
// over both, a bridge killed mid-load costs no request nginx can retry, and
// --allow-from closes connections from peers it does not list.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// whoScript prints the BRIDGE_ID its bridge sets with --set-env: which
// instance served the request. It first sleeps a little, so that a bridge
// killed under load has requests in flight that have sent no header yet.
const whoScript = "#!/bin/sh\nsleep 0.02\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$BRIDGE_ID\"\n"

// healthScript is what the shipped config's /_health locations run.
const healthScript = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n"

// hostTree makes a document root BASE with BASE/cgi-bin holding who.sh and
// health.sh, readable by nobody, and returns BASE.
func hostTree(t *testing.T) string {
	t.Helper()
	base := harness.ScriptDir(t)
	root := filepath.Join(base, "cgi-bin")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "who.sh"), whoScript, 0o755)
	writeFile(t, filepath.Join(root, "health.sh"), healthScript, 0o755)
	return base
}

// tcpBridge is a bridge listening on a loopback TCP port (and on the
// harness's unix socket, which tells when it is up).
type tcpBridge struct {
	*harness.Bridge
	Addr   string      // 127.0.0.1:PORT
	killed atomic.Bool // the test sent SIGKILL: no clean exit expected
}

// startTCPBridge starts `cgibridge serve --listen tcp:127.0.0.1:PORT args...`
// on a free port, trying another if the port is taken before the bridge binds
// it. On cleanup it stops the bridge with SIGTERM and, unless the test killed
// it, wants a clean exit.
func startTCPBridge(t *testing.T, args ...string) *tcpBridge {
	t.Helper()
	bin := harness.MustBinary(t)
	for attempt := 0; ; attempt++ {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		dir, err := os.MkdirTemp("", "cgb-mh-")
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		b, err := harness.LaunchBridge(bin, dir, append([]string{"--listen", "tcp:" + addr}, args...), harness.SafePath)
		if err != nil {
			_ = os.RemoveAll(dir)
			if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			t.Fatal(err)
		}
		tb := &tcpBridge{Bridge: b, Addr: addr}
		t.Cleanup(func() {
			if err := b.Stop(); err != nil && !tb.killed.Load() {
				t.Errorf("bridge on %s (pid %d) did not exit cleanly on SIGTERM: %v", addr, b.PID(), err)
			}
			if t.Failed() {
				t.Logf("bridge on %s output:\n%s", addr, b.Logs.String())
			}
			_ = os.RemoveAll(dir)
		})
		return tb
	}
}

// shippedUpstreamConf reads nginx-upstream.conf and returns its http-level
// and server-level parts, with the example's addresses, monitoring network,
// document root and fastcgi_params include replaced by the test's.
func shippedUpstreamConf(t *testing.T, base string, bridges ...*tcpBridge) (httpBlock, serverBlock string) {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repo, "legacy-examples", "configs", "nginx-upstream.conf"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "# --- server level: paste inside server { } ---"
	httpPart, serverPart, ok := strings.Cut(string(data), marker)
	if !ok {
		t.Fatalf("nginx-upstream.conf lacks the line %q", marker)
	}
	pairs := []string{
		"/srv/www", base,
		"10.0.0.0/24", "127.0.0.1",
		"include fastcgi_params;", harness.FastCGIParams(),
	}
	for i, b := range bridges {
		example := fmt.Sprintf("10.0.0.%d:9000", 11+i)
		if !strings.Contains(string(data), example) {
			t.Fatalf("nginx-upstream.conf does not name a bridge %s", example)
		}
		pairs = append(pairs, example, b.Addr)
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace(httpPart), r.Replace(serverPart)
}

// result is one request of the load.
type result struct {
	start, end time.Time
	status     int
	body       string
	err        error
}

func TestMultiHostUpstreamSurvivesKilledBridge(t *testing.T) {
	base := hostTree(t)
	root := filepath.Join(base, "cgi-bin")
	a := startTCPBridge(t, "--root", root, "--set-env", "BRIDGE_ID=a")
	b := startTCPBridge(t, "--root", root, "--set-env", "BRIDGE_ID=b")
	httpBlock, serverBlock := shippedUpstreamConf(t, base, a, b)
	ngx := harness.StartNginxHTTP(t, httpBlock, serverBlock)

	// Both bridges answer their health location while they run.
	for _, loc := range []string{"/_health/bridge1", "/_health/bridge2"} {
		if r := get(t, ngx.URL+loc); r.Status != 200 || r.Body != "ok\n" {
			t.Fatalf("GET %s = %d %q, want 200 ok", loc, r.Status, r.Body)
		}
	}

	const total, workers, killAfter = 400, 4, 100
	httpc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer httpc.CloseIdleConnections()
	results := make([]result, total)
	var next, done atomic.Int64
	// When bridge a was sent SIGKILL, and when it was seen dead; written
	// before killed is closed.
	var killAt, gone time.Time
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		// Kill a when it runs a script: that request has sent no header
		// yet, so nginx must retry it on b.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if kids, _ := harness.Children(a.PID()); done.Load() >= killAfter && len(kids) > 0 {
				break
			}
		}
		a.killed.Store(true)
		killAt = time.Now()
		if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
			t.Errorf("kill -9 bridge a (pid %d): %v", a.PID(), err)
		}
		if err := harness.WaitGone(a.PID(), 5*time.Second); err != nil {
			t.Error(err)
		}
		gone = time.Now()
	}()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				res := &results[i]
				res.start = time.Now()
				resp, err := httpc.Get(ngx.URL + "/cgi-bin/who.sh")
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					res.status, res.body = resp.StatusCode, string(body)
				}
				res.err, res.end = err, time.Now()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	<-killed

	served := map[string]int{}
	servedBefore := map[string]int{}
	cut := 0
	for i, r := range results {
		// A response whose header nginx had already passed on when its
		// bridge died cannot be retried: it ends early (here, chunked
		// encoding without its last chunk). Only requests in flight at the
		// kill, on a, may end so.
		if r.status == 200 && r.err != nil && (r.body == "" || r.body == "a\n") &&
			r.start.Before(gone) && !r.end.Before(killAt) {
			cut++
			continue
		}
		if r.err != nil || r.status != 200 || (r.body != "a\n" && r.body != "b\n") {
			t.Errorf("request %d: status %d, body %q, error %v: a GET must be retried on the other bridge", i, r.status, r.body, r.err)
			continue
		}
		who := strings.TrimSpace(r.body)
		served[who]++
		if r.end.Before(gone) {
			servedBefore[who]++
		}
		if r.start.After(gone) && who != "b" {
			t.Errorf("request %d started after bridge a died and was served by %q", i, who)
		}
	}
	t.Logf("%d requests: served %v; before a died %v; cut short by the kill %d", total, served, servedBefore, cut)
	// The request a was running when it died failed on a, and was sent on.
	if log := ngx.ErrorLog(); !strings.Contains(log, "while reading response header from upstream") {
		t.Errorf("nginx's error.log shows no request failing on the killed bridge:\n%s", log)
	}
	if cut > workers {
		t.Errorf("%d responses cut short by the kill; at most the %d in flight may be", cut, workers)
	}
	if servedBefore["a"] == 0 || servedBefore["b"] == 0 {
		t.Errorf("before the kill the upstream should spread requests over both bridges: %v", servedBefore)
	}
	if served["b"] <= total-killAfter-workers {
		t.Errorf("bridge b served %d of the %d requests after the kill", served["b"], total-killAfter)
	}

	// Once a is known dead, a POST (never retried once sent) goes to b.
	if r := post(t, ngx.URL+"/cgi-bin/who.sh", "text/plain", "x"); r.Status != 200 || r.Body != "b\n" {
		t.Errorf("POST after the kill = %d %q, want 200 from b", r.Status, r.Body)
	}
	// The health locations tell which host is down.
	if r := get(t, ngx.URL+"/_health/bridge1"); r.Status != 502 {
		t.Errorf("GET /_health/bridge1 with its bridge dead = %d, want 502", r.Status)
	}
	if r := get(t, ngx.URL+"/_health/bridge2"); r.Status != 200 {
		t.Errorf("GET /_health/bridge2 = %d, want 200", r.Status)
	}
}

// localNonLoopback returns an address of this machine that is not loopback,
// for a client to bind as its source: the bridge then sees a non-loopback peer
// on its 127.0.0.1 listener. Nothing listens on it.
func localNonLoopback(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP
		}
		v6 = n.IP
	}
	if v6 == nil {
		t.Fatalf("no non-loopback address on any interface (%v): this test binds one as a client's source address to be a peer --allow-from does not list", addrs)
	}
	return v6
}

// fcgiFrom sends one GET of script to the bridge at addr from a connection
// bound to source (nil: the kernel's choice), and returns stdout and the error.
func fcgiFrom(t *testing.T, source net.IP, addr, root, script string) (string, error) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if source != nil {
		d.LocalAddr = &net.TCPAddr{IP: source}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connect to %s from %v: %v", addr, source, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cc := fcgi.NewClientConn(c)
	defer cc.Release()
	_, err = cc.Do(ctx, 1, fcgi.RoleResponder, false, harness.NginxParams(root, script, "GET", -1), nil, &out, &errOut)
	return out.String(), err
}

func TestMultiHostAllowFromRefusesUnlistedPeer(t *testing.T) {
	base := hostTree(t)
	root := filepath.Join(base, "cgi-bin")
	local := localNonLoopback(t)

	// The bridge listens on loopback, where every loopback peer is allowed;
	// a peer with another source address must be in --allow-from.
	other := startTCPBridge(t, "--root", root, "--set-env", "BRIDGE_ID=other", "--allow-from", "203.0.113.9")
	out, err := fcgiFrom(t, local, other.Addr, root, "who.sh")
	if err == nil || out != "" {
		t.Errorf("request from %s, not in --allow-from: got %q, error %v; want the connection closed unanswered", local, out, err)
	}
	waitLog(t, other.Bridge, "refused connection from a peer not in allow-from", local.String())
	if strings.Contains(other.Logs.String(), "uri=/who.sh") {
		t.Errorf("the refused peer's request reached the handler:\n%s", other.Logs.String())
	}
	if out, err := fcgiFrom(t, nil, other.Addr, root, "who.sh"); err != nil || !strings.HasSuffix(out, "other\n") {
		t.Errorf("request from loopback: %q, %v; want it served", out, err)
	}

	listed := startTCPBridge(t, "--root", root, "--set-env", "BRIDGE_ID=listed", "--allow-from", local.String())
	if out, err := fcgiFrom(t, local, listed.Addr, root, "who.sh"); err != nil || !strings.HasSuffix(out, "listed\n") {
		t.Errorf("request from %s, in --allow-from: %q, %v; want it served", local, out, err)
	}
}
