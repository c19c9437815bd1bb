// This file pins how the --config JSON file is read, as docs/configuration.md
// describes it: key spellings, value types for repeatable flags, sizes and
// durations, refusals, and the precedence of flags and environment over the file.
package frontends

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// fcgiDo sends one request for script (a name under root) straight to the bridge
// and returns its whole STDOUT.
func fcgiDo(t *testing.T, sock, root, script, method string, body []byte) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	params := []fcgi.Pair{
		{Name: "REQUEST_METHOD", Value: method},
		{Name: "SCRIPT_FILENAME", Value: filepath.Join(root, script)},
		{Name: "SCRIPT_NAME", Value: "/" + script},
		{Name: "CONTENT_LENGTH", Value: itoa(len(body))},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if _, err := fcgi.NewClientConn(c).Do(ctx, 1, fcgi.RoleResponder, false, params, bytes.NewReader(body), &out, nil); err != nil {
		t.Fatalf("%s %s: %v", method, script, err)
	}
	return out.String()
}

// itoa gives CONTENT_LENGTH as nginx does: empty for no body.
func itoa(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// writeConfig writes a --config file and returns its path.
func writeConfig(t *testing.T, json string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cgibridge.json")
	if err := os.WriteFile(p, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// envScript prints two variables set with set-env; it has no exec bit and no
// shebang, so it runs only through an --interpreter mapping for .env.
const envScript = "printf 'Content-Type: text/plain\\n\\nA=%s B=%s\\n' \"$A\" \"$B\"\n"

// TestConfigFileApplies starts the bridge from a config file only and checks each
// value took effect: both key spellings, arrays for repeatable flags, sizes and
// durations as strings.
func TestConfigFileApplies(t *testing.T) {
	root := scriptDir(t)
	if err := os.WriteFile(filepath.Join(root, "vars.env"), []byte(envScript), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := writeConfig(t, `{
		"root": "`+root+`",
		"timeout": "1s",
		"kill_grace": "1s",
		"max-body": "1K",
		"max-procs": 4,
		"set-env": ["A=one", "B=two"],
		"interpreter": [".env=sh"]
	}`)
	b := harness.StartBridge(t, []string{"--config", conf})

	if got := fcgiDo(t, b.Socket, root, "vars.env", "GET", nil); !strings.HasSuffix(got, "A=one B=two\n") {
		t.Errorf("set-env/interpreter arrays not applied: got %q", got)
	}
	if got := fcgiDo(t, b.Socket, root, "echo.sh", "POST", make([]byte, 2048)); !strings.HasPrefix(got, "Status: 413") {
		t.Errorf("max-body \"1K\" not applied to a 2 KiB body: got %.80q", got)
	}
	start := time.Now()
	got := fcgiDo(t, b.Socket, root, "sleep.sh", "GET", nil)
	if !strings.HasPrefix(got, "Status: 504") || time.Since(start) > 10*time.Second {
		t.Errorf("timeout \"1s\" not applied: got %.80q after %v", got, time.Since(start))
	}
}

// TestConfigFileOtherSpellings pins the other value forms the docs promise: a
// comma-separated string for a repeatable flag, a plain JSON number for a size, and
// JSON booleans.
func TestConfigFileOtherSpellings(t *testing.T) {
	root := scriptDir(t)
	for _, name := range []string{"vars.env", "vars.xyz"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(envScript), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := writeConfig(t, `{
		"root": "`+root+`",
		"interpreter": ".env=sh,.xyz=sh",
		"set_env": "A=x,y",
		"max_body": 1024,
		"owner-mode": false,
		"watch-config": true
	}`)
	b := harness.StartBridge(t, []string{"--config", conf})
	for _, name := range []string{"vars.env", "vars.xyz"} {
		// set-env is never split at commas: its value may contain them.
		if got := fcgiDo(t, b.Socket, root, name, "GET", nil); !strings.HasSuffix(got, "A=x,y B=\n") {
			t.Errorf("%s: got %q, want it run by sh with A=x,y", name, got)
		}
	}
	if got := fcgiDo(t, b.Socket, root, "echo.sh", "POST", make([]byte, 2048)); !strings.HasPrefix(got, "Status: 413") {
		t.Errorf("max_body 1024 (a JSON number) not applied to a 2 KiB body: got %.80q", got)
	}
}

// TestConfigPrecedence pins flag > environment > file.
func TestConfigPrecedence(t *testing.T) {
	root := scriptDir(t)
	conf := writeConfig(t, `{"root": "`+root+`", "max_body": "1K", "timeout": "30s"}`)
	big := make([]byte, 2048)
	t.Run("EnvOverridesFile", func(t *testing.T) {
		b := harness.StartBridge(t, []string{"--config", conf}, "CGIBRIDGE_MAX_BODY=1M")
		if got := fcgiDo(t, b.Socket, root, "echo.sh", "POST", big); strings.HasPrefix(got, "Status: 413") {
			t.Errorf("CGIBRIDGE_MAX_BODY=1M did not override the file's 1K: %.80q", got)
		}
	})
	t.Run("FlagOverridesEnv", func(t *testing.T) {
		b := harness.StartBridge(t, []string{"--config", conf, "--max-body", "1M"}, "CGIBRIDGE_MAX_BODY=1K")
		if got := fcgiDo(t, b.Socket, root, "echo.sh", "POST", big); strings.HasPrefix(got, "Status: 413") {
			t.Errorf("--max-body 1M did not override CGIBRIDGE_MAX_BODY=1K: %.80q", got)
		}
	})
	t.Run("FileStillAppliesWhereNotOverridden", func(t *testing.T) {
		b := harness.StartBridge(t, []string{"--config", conf})
		if got := fcgiDo(t, b.Socket, root, "echo.sh", "POST", big); !strings.HasPrefix(got, "Status: 413") {
			t.Errorf("file's max_body 1K not applied: %.80q", got)
		}
	})
}

// TestConfigFileRefusals pins what the file may not hold: each makes
// `cgibridge serve` exit non-zero at start-up with a message naming the problem.
func TestConfigFileRefusals(t *testing.T) {
	bin := harness.MustBinary(t)
	root := scriptDir(t)
	cases := []struct {
		name, json, want string
	}{
		{"UnknownKey", `{"max-proc": 4}`, `unknown option "max-proc"`},
		{"CamelCaseKey", `{"maxProcs": 4}`, `unknown option "maxProcs"`},
		{"DurationWithoutUnit", `{"timeout": 60}`, `missing unit`},
		{"NotAnObject", `["--root", "/srv"]`, `not a JSON object`},
		{"BadSize", `{"max-body": "lots"}`, `is not a size`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := writeConfig(t, c.json)
			cmd := exec.Command(bin, "serve", "--config", conf, "--root", root,
				"--listen", "unix:"+filepath.Join(t.TempDir(), "s.sock"))
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("bridge started with %s instead of refusing it", c.json)
			}
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, output %q; want a failure mentioning %q", err, out, c.want)
			}
		})
	}
}
