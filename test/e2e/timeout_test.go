// This file holds the timeout tests: the limit set by flag, by environment variable
// and by config file each turns a slow script into a 504 and kills it.
package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

func TestTimeoutFromFlagEnvAndConfig(t *testing.T) {
	tr := newTree(t)
	confDir := t.TempDir()
	conf := filepath.Join(confDir, "cgibridge.json")
	// kong's JSON resolver takes flag names as keys, values as on the command line.
	writeFile(t, conf, `{"timeout": "1s"}`+"\n", 0o644)

	viaFlag := &upstream{Prefix: "flag", Args: []string{"--timeout", "1s"}}
	viaEnv := &upstream{Prefix: "env", Env: []string{"CGIBRIDGE_TIMEOUT=1s"}}
	viaConfig := &upstream{Prefix: "config", Args: []string{"--config", conf}}
	ngx := stack(t, tr, viaFlag, viaEnv, viaConfig)

	const grace = 3 * time.Second // the bridge's default --kill-grace
	for _, u := range []*upstream{viaFlag, viaEnv, viaConfig} {
		t.Run(u.Prefix, func(t *testing.T) {
			t.Parallel()
			b := u.Bridge
			// Collect the script's processes while it runs, to check afterwards
			// that the timeout ended them.
			seen := make(chan []int, 1)
			go func() {
				var pids []int
				deadline := time.Now().Add(900 * time.Millisecond)
				for len(pids) == 0 && time.Now().Before(deadline) {
					pids, _ = harness.Children(b.PID())
					time.Sleep(20 * time.Millisecond)
				}
				seen <- pids
			}()
			start := time.Now()
			r := get(t, ngx.URL+"/"+u.Prefix+"/cgi-bin/slow.sh?5")
			took := time.Since(start)
			if r.Status != 504 {
				t.Errorf("slow.sh?5 with a 1s timeout: status %d, want 504\n%s", r.Status, r.Body)
			}
			if took < 900*time.Millisecond || took > time.Second+grace+time.Second {
				t.Errorf("504 after %v, want about 1s (at most 1s + %v grace)", took, grace)
			}
			pids := <-seen
			if len(pids) == 0 {
				t.Error("never saw the script running under the bridge")
			}
			for _, pid := range pids {
				if err := harness.WaitGone(pid, time.Second); err != nil {
					t.Errorf("script process after the timeout: %v", err)
				}
			}
			waitLog(t, b, "timed out", "slow.sh")
		})
	}
}
