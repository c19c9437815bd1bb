package pool

// The reload matrix: a FastCGI program replaced under continuous load by each
// way deploys replace files gives zero failed requests and zero stale
// responses — every request sent after the deploy command returned is
// answered by the new version.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// sample is one request of the load loop.
type sample struct {
	sent    time.Time
	status  int
	version string
	pid     int
	err     error
}

var versionRE = regexp.MustCompile(`version=(\S+)`)

// loadLoop requests NAME with workers goroutines until stop is closed, at
// most maxPerWorker each, and returns every sample.
func (b *bed) loadLoop(name string, workers, maxPerWorker int, stop <-chan struct{}) func() []sample {
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range maxPerWorker {
				select {
				case <-stop:
					return
				default:
				}
				s := sample{sent: time.Now()}
				r := b.tryGet(name)
				s.status, s.err = r.status, r.err
				if m := versionRE.FindStringSubmatch(r.body); m != nil {
					s.version = m[1]
				}
				if m := pidRE.FindStringSubmatch(r.body); m != nil {
					fmt.Sscan(m[1], &s.pid)
				}
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
			}
		}()
	}
	return func() []sample {
		wg.Wait()
		return all
	}
}

// childVersion is child.fcgi with its VERSION set to v.
func childVersion(t *testing.T, v string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "child.fcgi"))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.Replace(string(data), `VERSION = "v1"`, `VERSION = "`+v+`"`, 1))
}

func run(t *testing.T, dir string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

func TestReloadMatrixZeroFailedZeroStale(t *testing.T) {
	deploys := []struct {
		name   string
		setup  func(t *testing.T, root string) // before the load starts
		deploy func(t *testing.T, root, src string)
	}{
		{"install", nil, func(t *testing.T, root, src string) {
			run(t, root, "install", "-m", "0755", src, filepath.Join(root, "child.fcgi"))
		}},
		{"cp then mv", nil, func(t *testing.T, root, src string) {
			run(t, root, "cp", src, filepath.Join(root, ".child.fcgi.tmp"))
			run(t, root, "mv", filepath.Join(root, ".child.fcgi.tmp"), filepath.Join(root, "child.fcgi"))
		}},
		{"rsync", nil, func(t *testing.T, root, src string) {
			// --checksum: both versions have the same size and may share an
			// mtime second, which rsync's quick check would call unchanged.
			run(t, root, "rsync", "--checksum", "--chmod=F755", src, filepath.Join(root, "child.fcgi"))
		}},
		{"git checkout", func(t *testing.T, root string) {
			run(t, root, "git", "init", "-q", "-b", "v1")
			run(t, root, "git", "add", "child.fcgi")
			run(t, root, "git", "commit", "-q", "-m", "v1")
			run(t, root, "git", "checkout", "-q", "-b", "v2")
			if err := os.WriteFile(filepath.Join(root, "child.fcgi"), childVersion(t, "v2"), 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, root, "git", "commit", "-q", "-am", "v2")
			run(t, root, "git", "checkout", "-q", "v1")
		}, func(t *testing.T, root, src string) {
			run(t, root, "git", "checkout", "-q", "v2")
		}},
	}
	for _, d := range deploys {
		t.Run(d.name, func(t *testing.T) {
			b := newBed(t, "--fastcgi", "child.fcgi", "--fastcgi-procs", "2")
			if d.setup != nil {
				d.setup(t, b.root)
			}
			src := filepath.Join(t.TempDir(), "child.fcgi")
			if err := os.WriteFile(src, childVersion(t, "v2"), 0o755); err != nil {
				t.Fatal(err)
			}
			if r := b.get(t, "child.fcgi"); !strings.Contains(r.body, "version=v1") {
				t.Fatalf("before the deploy: %q", r.body)
			}
			stop := make(chan struct{})
			collect := b.loadLoop("child.fcgi", 4, 3000, stop)
			time.Sleep(300 * time.Millisecond)
			d.deploy(t, b.root, src)
			deployed := time.Now()
			time.Sleep(700 * time.Millisecond)
			close(stop)
			samples := collect()
			checkSamples(t, samples, deployed, "v1", "v2")
		})
	}
}

// checkSamples fails on any failed request, and on any request sent after
// deployed answered by the old version.
func checkSamples(t *testing.T, samples []sample, deployed time.Time, old, new string) {
	t.Helper()
	var failed, stale, after, before int
	for _, s := range samples {
		switch {
		case s.err != nil || s.status != 200:
			failed++
			if failed <= 3 {
				t.Errorf("failed request (sent %v after the deploy): status %d, %v", s.sent.Sub(deployed), s.status, s.err)
			}
		case s.sent.After(deployed):
			after++
			if s.version != new {
				stale++
				if stale <= 3 {
					t.Errorf("stale: sent %v after the deploy returned, answered by %q", s.sent.Sub(deployed), s.version)
				}
			}
		default:
			before++
			if s.version != old && s.version != new {
				t.Errorf("answered by %q", s.version)
			}
		}
	}
	t.Logf("%d requests: %d before the deploy returned, %d after; %d failed, %d stale", len(samples), before, after, failed, stale)
	if before == 0 || after == 0 {
		t.Errorf("the load loop did not straddle the deploy (%d before, %d after)", before, after)
	}
}

// TestSIGHUPReplacesEveryChildUnderLoad: SIGHUP starts a new generation, its
// children replace the old ones one at a time, and no request fails.
func TestSIGHUPReplacesEveryChildUnderLoad(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi", "--fastcgi-procs", "2")
	stop := make(chan struct{})
	collect := b.loadLoop("child.fcgi", 4, 3000, stop)
	time.Sleep(300 * time.Millisecond)
	oldKids := b.children(t)
	if err := syscall.Kill(b.bridge.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	b.logLine(t, "new generation of FastCGI children", "reason=reload")
	reloaded := time.Now()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	samples := collect()
	var failed int
	for _, s := range samples {
		if s.err != nil || s.status != 200 {
			failed++
		}
		if s.sent.After(reloaded.Add(200*time.Millisecond)) && containsInt(oldKids, s.pid) {
			t.Errorf("a child of the old generation (%d) answered after the reload", s.pid)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed across the reload", failed, len(samples))
	}
	for _, k := range oldKids {
		waitFor(t, 10*time.Second, "old child gone", func() bool { return gone(k) })
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestBrokenNewGenerationIsNotServedByTheOld: a deploy whose new version
// cannot run as a FastCGI child is logged once; the old children are not
// resurrected; requests get exec mode's answer.
func TestBrokenNewGenerationIsNotServedByTheOld(t *testing.T) {
	b := newBed(t, "--fastcgi", "child.fcgi")
	oldPid := pidOf(t, b.get(t, "child.fcgi").body)
	broken := filepath.Join(b.root, ".new")
	writeFile(t, broken, "#!/bin/sh\n[ -S /dev/stdin ] && exit 1\nprintf 'Content-Type: text/plain\\r\\n\\r\\nversion=v2-as-cgi\\n'\n")
	if err := os.Rename(broken, filepath.Join(b.root, "child.fcgi")); err != nil {
		t.Fatal(err)
	}
	var served atomic.Int32
	for range 10 {
		r := b.get(t, "child.fcgi")
		if r.status != 200 || !strings.Contains(r.body, "version=v2-as-cgi") {
			t.Fatalf("after a broken deploy: %d %q", r.status, r.body)
		}
		served.Add(1)
	}
	waitFor(t, 5*time.Second, "the old child stopped", func() bool { return gone(oldPid) })
	if n := b.countLines("FastCGI children cannot start"); n != 1 {
		t.Errorf("the broken generation logged %d times, want once", n)
	}
}
