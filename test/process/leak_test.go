// This file holds the load-shaped tests: descriptor and child counts after
// thousands of mixed requests, and exec right after a script is written.

package process

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// compileHello builds legacy-examples/cgi-bin/hello.c into root as hello-c.cgi.
func compileHello(t *testing.T, root string) {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repo, "legacy-examples", "cgi-bin", "hello.c")
	out := filepath.Join(root, "hello-c.cgi")
	if msg, err := exec.Command("gcc", "-O2", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("compile %s (gcc is required): %v\n%s", src, err, msg)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
}

// idleFDs waits until the bridge's descriptor count stops changing for a
// moment (closed connections are released asynchronously) and returns it.
func idleFDs(t *testing.T, pid int) int {
	t.Helper()
	prev, stable := -1, 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := harness.OpenFDs(pid)
		if err != nil {
			t.Fatal(err)
		}
		if n == prev {
			stable++
		} else {
			prev, stable = n, 0
		}
		if stable >= 5 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoFDOrChildLeakAfterMixedLoad: 2,000 sequential requests mixing a C
// program, a failing script, bad output, timeouts and client aborts leave the
// bridge with the descriptor count it had idle after warm-up (±2) and with no
// children or zombies.
func TestNoFDOrChildLeakAfterMixedLoad(t *testing.T) {
	root := scriptRoot(t)
	compileHello(t, root)
	b := harness.StartBridge(t, []string{"--root", root, "--timeout", "100ms", "--kill-grace", "200ms", "--log-level", "error"})

	type kind struct {
		script string
		want   int  // expected status
		abort  bool // close the connection instead of waiting
	}
	mix := func(i int) kind {
		switch {
		case i%200 == 7:
			return kind{script: "sleep1.cgi", want: 504}
		case i%200 == 13:
			return kind{script: "sleep30.cgi", abort: true}
		case i%10 == 3:
			// The header was sent before the failure: it stands.
			return kind{script: "exit1.cgi", want: 200}
		case i%10 == 5:
			return kind{script: "badoutput.cgi", want: 502}
		default:
			return kind{script: "hello-c.cgi", want: 200}
		}
	}
	slow504 := 0 // fast requests that outlasted the 100 ms timeout
	run := func(i int) {
		k := mix(i)
		if k.abort {
			c := dial(t, b.Socket)
			c.WriteBeginRequest(1, fcgi.RoleResponder, false)
			c.WriteParams(1, params(root, k.script, "GET", -1))
			c.WriteStream(fcgi.TypeStdin, 1, nil, 0)
			time.Sleep(20 * time.Millisecond)
			c.Close()
			return
		}
		r := do(t, b.Socket, root, k.script, nil, ioTimeout)
		if got := r.status(); got != k.want {
			// On a loaded machine even a fast program can outlast 100 ms;
			// anything else is a real failure.
			if got == 504 && k.want != 504 {
				slow504++
				return
			}
			t.Fatalf("request %d (%s): status %d, want %d; stdout %q", i, k.script, got, k.want, truncate(r.stdout))
		}
	}

	for i := range 50 {
		run(i)
	}
	assertNoChildren(t, b.PID(), 5*time.Second)
	idle := idleFDs(t, b.PID())

	start := time.Now()
	for i := range 2000 {
		run(i)
	}
	t.Logf("2000 requests in %v; %d fast requests hit the 100ms timeout", time.Since(start), slow504)
	if slow504 > 20 {
		t.Errorf("%d of 2000 fast requests timed out at 100ms", slow504)
	}
	assertNoChildren(t, b.PID(), 5*time.Second)
	if after := idleFDs(t, b.PID()); after < idle-2 || after > idle+2 {
		t.Errorf("bridge holds %d descriptors after the load, %d idle before it (want ±2)", after, idle)
	}
}

// TestExecRightAfterWriteNeverTextFileBusy: scripts written and requested at
// once, while another goroutine of this process keeps writing a file and
// forking (so a child briefly inherits the write descriptor, the ETXTBSY race
// of golang/go#22315), are served every time.
func TestExecRightAfterWriteNeverTextFileBusy(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		other := filepath.Join(root, "other.cgi")
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.WriteFile(other, []byte("#!/bin/sh\necho\n"), 0o755)
			exec.Command("/bin/true").Run()
		}
	})
	defer func() { close(stop); wg.Wait() }()

	busy := 0
	for i := range 200 {
		name := fmt.Sprintf("fresh%d.cgi", i%5)
		want := fmt.Sprintf("fresh %d", i)
		script := "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho '" + want + "'\n"
		if err := os.WriteFile(filepath.Join(root, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		r := do(t, b.Socket, root, name, nil, ioTimeout)
		if r.status() != 200 || strings.TrimSpace(r.body()) != want {
			busy++
			if busy <= 3 {
				t.Errorf("try %d: status %d, stdout %q, stderr %q", i, r.status(), truncate(r.stdout), truncate(r.stderr))
			}
		}
	}
	if busy > 0 {
		t.Errorf("%d of 200 requests of a just-written script failed", busy)
	}
}
