package zygote

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is one request of a load loop.
type sample struct {
	sent   time.Time
	body   string
	status string
	err    error
}

// loop requests name with 4 workers until stop closes (at most 3000 each).
func (b *bed) loop(name string, stop <-chan struct{}) func() []sample {
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3000 {
				select {
				case <-stop:
					return
				default:
				}
				s := sample{sent: time.Now()}
				r := b.request(name, "", nil)
				s.body, s.status, s.err = strings.TrimSpace(r.body()), r.status(), r.err
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
			}
		}()
	}
	return func() []sample { wg.Wait(); return all }
}

var versionRE = regexp.MustCompile(`^script=(\S+) module=(\S+)$`)

// TestReloadUnderLoadZeroFailedZeroStale edits the script in place (same
// size, and not), replaces it with mv, and edits the module it imports,
// under a continuous load: no request fails, and every request sent after
// an edit returned is answered by the new version.
func TestReloadUnderLoadZeroFailedZeroStale(t *testing.T) {
	reloadUnderLoad(t, "*.py", "versioned.py", "versionmod.py", func(v string) string {
		return "#!/usr/bin/python3\nimport os\nimport versionmod\nprint(\"Content-Type: text/plain\")\nprint()\nprint(\"script=" + v + " module=%s\" % versionmod.VERSION)\n"
	}, func(v string) string { return "VERSION = \"" + v + "\"\n" })
}

// reloadUnderLoad is the reload matrix for one language: scriptName imports
// moduleName; scriptFor and moduleFor write their versions (s1 and m1 are
// testdata's; m2 must be as long as m1).
func reloadUnderLoad(t *testing.T, glob, scriptName, moduleName string, scriptFor, moduleFor func(v string) string) {
	root := newRoot(t)
	b := serve(t, root, "--warm", glob)
	b.warmUp(t, scriptName)
	script := filepath.Join(root, scriptName)
	module := filepath.Join(root, moduleName)
	inPlace := func(path, content string) {
		// An editor saving in place: the same inode, rewritten. The new
		// content is never shorter here, so no reader sees it truncated.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(content), 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	edits := []struct {
		what           string
		script, module string
		do             func()
	}{
		{"script in place, same size", "s2", "m1", func() { inPlace(script, scriptFor("s2")) }},
		{"script in place, longer", "s30", "m1", func() { inPlace(script, scriptFor("s30")) }},
		{"script replaced by mv", "s40", "m1", func() {
			tmp := filepath.Join(root, "."+scriptName+".tmp")
			writeScript(t, root, "."+scriptName+".tmp", scriptFor("s40"))
			if err := os.Rename(tmp, script); err != nil {
				t.Fatal(err)
			}
		}},
		{"module in place", "s40", "m2", func() { inPlace(module, moduleFor("m2")) }},
		{"module replaced by mv", "s40", "m33", func() {
			tmp := filepath.Join(root, ".versionmod.tmp")
			os.WriteFile(tmp, []byte(moduleFor("m33")), 0o644)
			os.Chmod(tmp, 0o644)
			if err := os.Rename(tmp, module); err != nil {
				t.Fatal(err)
			}
		}},
	}
	stop := make(chan struct{})
	collect := b.loop(scriptName, stop)
	type mark struct {
		at             time.Time
		script, module string
	}
	var marks []mark
	for _, e := range edits {
		time.Sleep(400 * time.Millisecond)
		e.do()
		marks = append(marks, mark{time.Now(), e.script, e.module})
	}
	time.Sleep(400 * time.Millisecond)
	close(stop)
	samples := collect()
	var failed, stale int
	for _, s := range samples {
		m := versionRE.FindStringSubmatch(s.body)
		if s.err != nil || s.status != "200" || m == nil {
			failed++
			if failed <= 3 {
				t.Errorf("failed request: %v %s %q", s.err, s.status, s.body)
			}
			continue
		}
		// The newest edit that returned before this request was sent.
		want := mark{script: "s1", module: "m1"}
		for _, mk := range marks {
			if s.sent.After(mk.at) {
				want = mk
			}
		}
		// An answer may be newer than the request (an edit was under way as
		// it was sent), never older.
		if order(m[1]) < order(want.script) || order(m[2]) < order(want.module) {
			stale++
			if stale <= 3 {
				t.Errorf("stale: got script=%s module=%s, want %s %s (sent %v after that edit)", m[1], m[2], want.script, want.module, s.sent.Sub(want.at))
			}
		}
	}
	warm := strings.Count(b.bridge.Logs.String(), "runner=warm")
	t.Logf("%d requests, %d served warm; %d failed, %d stale", len(samples), warm, failed, stale)
	if warm < len(samples)/2 {
		t.Errorf("only %d of %d requests served warm", warm, len(samples))
	}
}

// order ranks the versions the edits write, oldest first.
func order(v string) int {
	for i, o := range []string{"s1", "s2", "s30", "s40", "m1", "m2", "m33"} {
		if o == v {
			return i
		}
	}
	return -1
}
