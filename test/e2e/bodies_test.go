// This file holds the request-body tests: scripts that write before reading, ignore
// the body, or echo a large one, and the bridge's memory while a big upload passes.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBodiesThroughNginx(t *testing.T) {
	tr := newTree(t)
	primary := &upstream{}
	ngx := stack(t, tr, primary)
	base := ngx.URL
	// The shared client keeps connections to this test's nginx alive after
	// the last request; close them with the test rather than leave them open.
	t.Cleanup(client.CloseIdleConnections)

	t.Run("WriteBeforeReadingLargeBody", func(t *testing.T) {
		body, sum := randomBody(2<<20, 1)
		r := postWithin(t, 30*time.Second, base+"/cgi-bin/writefirst.sh", body)
		wantStatusBody(t, r, 200)
		lines := strings.Split(strings.TrimRight(r.Body, "\n"), "\n")
		if len(lines) != 2 || len(lines[0]) != 1<<20 {
			t.Fatalf("writefirst.sh: got %d lines (first %d bytes), want 1 MiB then the sum", len(lines), len(lines[0]))
		}
		if lines[1] != sum {
			t.Errorf("script saw a body with sha256 %s, sent %s", lines[1], sum)
		}
	})
	t.Run("IgnoredLargeBody", func(t *testing.T) {
		body, _ := randomBody(2<<20, 2)
		r := postWithin(t, 30*time.Second, base+"/cgi-bin/ignore.sh", body)
		wantStatusBody(t, r, 200, "ignored")
	})
	t.Run("Upload64MiBByteExactWithBoundedRSS", func(t *testing.T) {
		const size = 64 << 20
		pid := primary.Bridge.PID()
		idle, err := vmRSS(pid)
		if err != nil {
			t.Fatal(err)
		}
		var (
			peak = idle
			mu   sync.Mutex
			stop = make(chan struct{})
			done = make(chan struct{})
		)
		go func() {
			defer close(done)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if rss, err := vmRSS(pid); err == nil {
					mu.Lock()
					peak = max(peak, rss)
					mu.Unlock()
				}
			}
		}()

		sent := sha256.New()
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{3}), size), sent)
		req, err := http.NewRequestWithContext(within(t, 60*time.Second), http.MethodPost, base+"/cgi-bin/echo.sh", src)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		resp, err := client.Do(req)
		if err != nil {
			close(stop)
			<-done
			t.Fatal(err)
		}
		got := sha256.New()
		n, err := io.Copy(got, resp.Body)
		resp.Body.Close()
		close(stop)
		<-done
		if err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if resp.StatusCode != 200 || n != size {
			t.Fatalf("echo.sh: status %d, %d bytes back, want 200 and %d", resp.StatusCode, n, size)
		}
		if a, b := hex.EncodeToString(sent.Sum(nil)), hex.EncodeToString(got.Sum(nil)); a != b {
			t.Errorf("echoed body sha256 %s, sent %s", b, a)
		}
		mu.Lock()
		rise := peak - idle
		mu.Unlock()
		t.Logf("bridge VmRSS idle %d KiB, peak %d KiB during the 64 MiB upload: +%d KiB (target 8 MiB, limit 16 MiB)",
			idle>>10, peak>>10, rise>>10)
		if rise >= 16<<20 {
			t.Errorf("bridge RSS rose by %d KiB during a 64 MiB upload, want < 16 MiB", rise>>10)
		}
	})
}

// within returns a context that ends after d or with the test, whichever
// comes first: a request made with it cannot outlive either.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// postWithin sends body to url as application/octet-stream, bounded by d.
func postWithin(t *testing.T, d time.Duration, url string, body []byte) response {
	t.Helper()
	req, err := http.NewRequestWithContext(within(t, d), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return do(t, req)
}

// randomBody returns n deterministic pseudo-random bytes and their hex sha256.
func randomBody(n int, seed byte) ([]byte, string) {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// vmRSS reads a process's resident set size in bytes from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read VmRSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
