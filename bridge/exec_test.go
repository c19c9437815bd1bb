package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowSink is a front end that takes its time over the first write, like a
// slow client behind nginx with fastcgi_buffering off.
type slowSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	delay time.Duration
	once  sync.Once
}

func (s *slowSink) Write(p []byte) (int, error) {
	s.once.Do(func() { time.Sleep(s.delay) })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExecSlowFrontEndLosesNoOutput pins that a program which writes a lot
// and exits at once has all its output delivered, however long the front end
// takes: the output grace after exit is for descendants holding the pipe
// open, not for delivery.
func TestExecSlowFrontEndLosesNoOutput(t *testing.T) {
	// 60 KB fits in the pipe: the program exits at once, and all of its
	// output is still to be delivered when it has.
	prog := script(t, "head -c 60000 /dev/zero | tr '\\0' x; exit 0\n")
	sink := &slowSink{delay: 1500 * time.Millisecond}
	r := &ExecRunner{Timeout: 10 * time.Second, OutputGrace: 200 * time.Millisecond}
	info := r.Run(context.Background(), &Job{Path: prog, Argv: []string{prog}, Stdout: sink})
	if info.StartErr != nil || info.Code != 0 {
		t.Fatalf("run: %+v", info)
	}
	if got := sink.buf.Len(); got != 60000 {
		t.Fatalf("front end got %d bytes, want 60000 (lingered=%v)", got, info.Lingered)
	}
	if info.Lingered {
		t.Error("a slow front end was taken for descendants holding the output")
	}
}

// TestExecGrandchildHoldingOutputIsEnded pins the other side: a descendant
// that keeps the output open after the program exited is ended after the
// grace, and the run returns.
func TestExecGrandchildHoldingOutputIsEnded(t *testing.T) {
	prog := script(t, "printf 'Content-Type: text/plain\\r\\n\\r\\nhi\\n'; sleep 30 &\nexit 0\n")
	var out bytes.Buffer
	r := &ExecRunner{Timeout: 10 * time.Second, OutputGrace: 200 * time.Millisecond}
	start := time.Now()
	info := r.Run(context.Background(), &Job{Path: prog, Argv: []string{prog}, Stdout: &out})
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("run took %v: the grandchild held it", d)
	}
	if !info.Lingered || !strings.HasSuffix(out.String(), "hi\n") {
		t.Fatalf("lingered=%v output %q", info.Lingered, out.String())
	}
}

func TestExecOutputIntact(t *testing.T) {
	prog := script(t, "head -c 1000000 /dev/urandom | tee /dev/stderr\n")
	var out, errOut bytes.Buffer
	info := (&ExecRunner{}).Run(context.Background(), &Job{Path: prog, Argv: []string{prog}, Stdout: &out, Stderr: &errOut})
	if info.Code != 0 || out.Len() != 1000000 || sha256.Sum256(out.Bytes()) != sha256.Sum256(errOut.Bytes()) {
		t.Fatalf("exit %d, stdout %d bytes, stderr %d bytes", info.Code, out.Len(), errOut.Len())
	}
}
