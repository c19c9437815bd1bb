// This file holds the tests of what the bridge does to the programs it runs:
// timeouts and the TERM-then-KILL escalation, client aborts, grandchildren,
// output written before the body is read, and the --max-procs queue.

package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// TestTimeoutKillsProcessGroup504: a script past --timeout answers 504, and the
// script and the sleep it started are both gone. One that honours SIGTERM
// ends with it; one that ignores it needs the SIGKILL after the grace.
func TestTimeoutKillsProcessGroup504(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		// min is the earliest the 504 may come (timers do not fire early);
		// killed is whether the bridge needed SIGKILL, as its log says. The
		// latest bound is generous: a loaded machine delays, and the log,
		// not the clock, tells the two cases apart.
		min    time.Duration
		killed bool
	}{
		{"honours SIGTERM", "sleep30.cgi", 900 * time.Millisecond, false},
		{"ignores SIGTERM", "ignoreterm.cgi", 1900 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := scriptRoot(t)
			b := harness.StartBridge(t, []string{"--root", root, "--timeout", "1s", "--kill-grace", "1s"})
			type done struct {
				r   result
				err error
			}
			ch := make(chan done, 1)
			go func() {
				r, err := tryDo(b.Socket, root, tc.script, nil, ioTimeout)
				ch <- done{r, err}
			}()
			// sh and its sleep.
			kids := waitChildren(t, b.PID(), 2)
			d := <-ch
			if d.err != nil {
				t.Fatalf("request: %v", d.err)
			}
			if got := d.r.status(); got != 504 {
				t.Errorf("status = %d, want 504; stdout %q", got, truncate(d.r.stdout))
			}
			// 1s timeout, 1s grace: 10s is far past either, and far below
			// the script's 30s sleep.
			if d.r.elapsed < tc.min || d.r.elapsed > 10*time.Second {
				t.Errorf("504 after %v, want between %v and 10s", d.r.elapsed, tc.min)
			}
			wantKilled := fmt.Sprintf("killed=%v", tc.killed)
			if err := b.Logs.WaitFor("program timed out", 5*time.Second); err != nil {
				t.Error(err)
			} else if line := logLine(b, "program timed out"); !strings.Contains(line, wantKilled) {
				t.Errorf("timeout log line lacks %s: %s", wantKilled, line)
			}
			assertAllGone(t, b.PID(), kids, 10*time.Second)
		})
	}
}

// TestConnectionCloseKillsScriptAndGrandchild: nginx aborts by closing the
// connection; the script and the grandchild it left in the background must be
// gone soon after (the kill grace is 1s; the bound leaves room for a loaded
// machine).
func TestConnectionCloseKillsScriptAndGrandchild(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root, "--kill-grace", "1s"})
	c := dial(t, b.Socket)
	if err := c.WriteBeginRequest(1, fcgi.RoleResponder, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteParams(1, params(root, "grandchild.cgi", "GET", -1)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteStream(fcgi.TypeStdin, 1, nil, 0); err != nil {
		t.Fatal(err)
	}
	// sh, the background sleep 300 and the foreground sleep 30.
	kids := waitChildren(t, b.PID(), 3)
	c.Close()
	assertAllGone(t, b.PID(), kids, 10*time.Second)
}

// TestAbortRequestKeepConnEndsRequestAndKillsScript: an ABORT_REQUEST record
// on a KEEP_CONN connection gets its END_REQUEST, kills the script and its
// grandchild, and leaves the connection usable for the next request.
func TestAbortRequestKeepConnEndsRequestAndKillsScript(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root, "--kill-grace", "1s"})
	c := dial(t, b.Socket)
	defer c.Close()
	if err := c.WriteBeginRequest(1, fcgi.RoleResponder, true); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteParams(1, params(root, "grandchild.cgi", "GET", -1)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteStream(fcgi.TypeStdin, 1, nil, 0); err != nil {
		t.Fatal(err)
	}
	kids := waitChildren(t, b.PID(), 3)
	if err := c.WriteRecord(fcgi.TypeAbortRequest, 1, nil); err != nil {
		t.Fatal(err)
	}
	c.Conn().SetReadDeadline(time.Now().Add(ioTimeout))
	for {
		rec, err := c.Next()
		if err != nil {
			t.Fatalf("no END_REQUEST after ABORT_REQUEST: %v", err)
		}
		if rec.Type == fcgi.TypeEndRequest && rec.RequestID == 1 {
			break
		}
	}
	assertAllGone(t, b.PID(), kids, 10*time.Second)

	// KEEP_CONN: the same connection serves the next request.
	c.Conn().SetDeadline(time.Now().Add(ioTimeout))
	var out bytes.Buffer
	if _, err := c.Do(context.Background(), 1, fcgi.RoleResponder, true, params(root, "hello.cgi", "GET", -1), nil, &out, io.Discard); err != nil {
		t.Fatalf("request after the abort on the same connection: %v", err)
	}
	if r := (result{stdout: out.String()}); r.status() != 200 || !strings.Contains(r.body(), "hello") {
		t.Errorf("request after the abort: %q, want 200 hello", truncate(out.String()))
	}
}

// TestBackgroundChildHoldingStdoutDoesNotDelayResponse: a script that leaves
// `(sleep 30) &` holding its stdout and exits must be answered soon (within
// the bridge's 1s output grace, not the sleep's 30s), and the sleep is killed.
func TestBackgroundChildHoldingStdoutDoesNotDelayResponse(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	// Default grace periods: what a user gets without tuning.
	b := harness.StartBridge(t, []string{"--root", root})
	r := do(t, b.Socket, root, "holdstdout.cgi", nil, ioTimeout)
	// Generous for a loaded machine, and far below the sleep's 30s.
	if r.elapsed > 10*time.Second {
		t.Errorf("response took %v, want < 10s: the background sleep held it open", r.elapsed)
	}
	if r.status() != 200 || !strings.Contains(r.body(), "answered") {
		t.Errorf("response %q, want 200 answered", truncate(r.stdout))
	}
	assertNoChildren(t, b.PID(), 10*time.Second)
}

// TestWriteBeforeReadWithBodySentFirst: the client writes the whole 2 MiB body
// before reading anything (as nginx does), while the script writes 1 MiB before
// it reads: without the bridge spooling the body, both sides would block.
func TestWriteBeforeReadWithBodySentFirst(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root})
	body := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	c := dial(t, b.Socket)
	defer c.Close()
	c.Conn().SetDeadline(time.Now().Add(ioTimeout))
	if err := c.WriteBeginRequest(1, fcgi.RoleResponder, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteParams(1, params(root, "writefirst.cgi", "POST", len(body))); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteStream(fcgi.TypeStdin, 1, bytes.NewReader(body), 8192); err != nil {
		t.Fatalf("sending the body before reading: %v (the bridge stopped reading STDIN)", err)
	}
	var out bytes.Buffer
	for {
		rec, err := c.Next()
		if err != nil {
			t.Fatalf("reading response: %v", err)
		}
		if rec.Type == fcgi.TypeStdout {
			out.Write(rec.Content)
		}
		if rec.Type == fcgi.TypeEndRequest {
			break
		}
	}
	r := result{stdout: out.String()}
	if r.status() != 200 {
		t.Fatalf("status %d, stdout %q", r.status(), truncate(r.stdout))
	}
	want := strings.Repeat("\x00", 1<<20) + "\nbody=" + fmt.Sprint(len(body)) + "\n"
	if got := r.body(); got != want {
		t.Errorf("body: got %d bytes ending %q, want %d bytes ending %q", len(got), got[max(0, len(got)-30):], len(want), want[len(want)-30:])
	}
}

// TestUnreadBodyStill200: a script that never reads its 2 MiB body still
// answers 200 (fcgiwrap gives 502 here).
func TestUnreadBodyStill200(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root})
	body := bytes.Repeat([]byte("z"), 2<<20)
	r := do(t, b.Socket, root, "ignorebody.cgi", body, ioTimeout)
	if r.status() != 200 || !strings.Contains(r.body(), "ignored") {
		t.Errorf("response %q, want 200 ignored", truncate(r.stdout))
	}
}

// TestMaxProcsQueueOverflow503: with two slots and a 500 ms queue wait, five
// simultaneous 2 s requests give exactly two 200s and three 503s with
// Retry-After, the 503s after the queue wait and before a slot frees.
func TestMaxProcsQueueOverflow503(t *testing.T) {
	t.Parallel()
	root := scriptRoot(t)
	b := harness.StartBridge(t, []string{"--root", root, "--max-procs", "2", "--queue-timeout", "500ms"})
	const n = 5
	results := make([]result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = tryDo(b.Socket, root, "slow2.cgi", nil, ioTimeout) })
	}
	wg.Wait()
	var ok, busy int
	firstFree := time.Duration(1 << 62) // when the first slot freed: the earliest 200
	for i, r := range results {
		if errs[i] == nil && r.status() == 200 {
			firstFree = min(firstFree, r.elapsed)
		}
	}
	for i, r := range results {
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
			continue
		}
		switch r.status() {
		case 200:
			ok++
			if r.elapsed < 1900*time.Millisecond {
				t.Errorf("200 after %v: the script sleeps 2s", r.elapsed)
			}
		case 503:
			busy++
			if r.header("Retry-After") == "" {
				t.Errorf("503 without Retry-After: %q", truncate(r.stdout))
			}
			// Not before the 500ms queue timeout, and not so late that a
			// slot had freed meanwhile: the upper bound is an event (the
			// first 2s script ending), not a guess at the machine's load.
			if r.elapsed < 400*time.Millisecond || r.elapsed >= firstFree {
				t.Errorf("503 after %v, want after the 500ms queue timeout and before the first slot freed (%v)", r.elapsed, firstFree)
			}
		default:
			t.Errorf("request %d: status %d, stdout %q", i, r.status(), truncate(r.stdout))
		}
	}
	if ok != 2 || busy != 3 {
		t.Errorf("got %d×200 and %d×503, want 2 and 3", ok, busy)
	}
	assertNoChildren(t, b.PID(), 10*time.Second)
}

// logLine returns the first line of the bridge's log that contains sub, or "".
func logLine(b *harness.Bridge, sub string) string {
	for line := range strings.Lines(b.Logs.String()) {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
