// This file keeps docs/configuration.md and the binary's `serve --help` in step:
// every flag documented, no flag documented that does not exist, and each row
// naming the environment variable the binary really reads.
package frontends

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

var (
	// helpFlag matches a flag's own line in kong's help: indented, optionally a
	// short form, the long name, an optional =VALUE, then the help text or nothing.
	// A "--flag" inside wrapped help text is followed by other characters.
	helpFlag = regexp.MustCompile(`^\s{2,}(?:-\w, )?--([a-z][a-z0-9-]*)(?:=\S+)?(?:\s{2,}|$)`)
	helpEnv  = regexp.MustCompile(`\$(CGIBRIDGE_[A-Z0-9_]+)`)
	// docRow matches a table row whose first cell starts with a flag.
	docRow = regexp.MustCompile("^\\|\\s*`--([a-z][a-z0-9-]*)[^|]*\\|([^|]*)\\|")
)

// envName is the variable kong's DefaultEnvars("CGIBRIDGE") derives for a flag.
func envName(flag string) string {
	return "CGIBRIDGE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// helpFlags runs `cgibridge serve --help` and returns its flags and env names.
func helpFlags(t *testing.T) (flags, envs map[string]bool) {
	t.Helper()
	out, err := exec.Command(harness.MustBinary(t), "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("cgibridge serve --help: %v\n%s", err, out)
	}
	flags, envs = map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			flags[m[1]] = true
		}
		for _, m := range helpEnv.FindAllStringSubmatch(line, -1) {
			envs[m[1]] = true
		}
	}
	if len(flags) < 20 || !flags["root"] || !flags["config"] {
		t.Fatalf("parsed only %d flags from serve --help; has its layout changed?\n%s", len(flags), out)
	}
	return flags, envs
}

// docFlags reads docs/configuration.md and returns each documented flag with the
// text of its environment column.
func docFlags(t *testing.T) map[string]string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := docRow.FindStringSubmatch(line); m != nil {
			if _, dup := docs[m[1]]; dup {
				t.Errorf("docs/configuration.md documents --%s twice", m[1])
			}
			docs[m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
		}
	}
	return docs
}

func TestConfigurationDocMatchesHelp(t *testing.T) {
	flags, envs := helpFlags(t)
	docs := docFlags(t)
	var missing, unknown []string
	for f := range flags {
		if _, ok := docs[f]; !ok {
			missing = append(missing, "--"+f)
		}
	}
	for f, env := range docs {
		if !flags[f] {
			unknown = append(unknown, "--"+f)
			continue
		}
		if f == "help" {
			continue // kong's own flag has no environment variable
		}
		if want := envName(f); env != want || !envs[want] {
			t.Errorf("--%s: docs give environment %q; want %q (in --help: %v)", f, env, want, envs[want])
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	if len(missing) > 0 {
		t.Errorf("flags of `cgibridge serve --help` missing from docs/configuration.md: %v", missing)
	}
	if len(unknown) > 0 {
		t.Errorf("docs/configuration.md documents flags that `cgibridge serve --help` lacks: %v", unknown)
	}
}
