// This file keeps docs/configuration.md and the binary's help in step: every
// flag of `cgibridge serve --help` and `cgibridge spawn --help` documented in
// its command's section (the global ones in "Global options"), no flag
// documented that does not exist, and each row naming the short letter, the
// environment variable and the default the binary really has, and a config
// file type that fits the flag.
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
	helpFlag = regexp.MustCompile(`^\s{2,}(?:-(\w), )?--([a-z][a-z0-9-]*)(?:=(\S+))?(?:\s{2,}|$)`)
	// helpEnv is the "($NAME)" kong appends to a flag's help.
	helpEnv = regexp.MustCompile(`\(\$(CGIBRIDGE_[A-Z0-9_]+)\)`)
	// placeholder is a value kong shows when a flag has no default: FILE,
	// ADDR,..., EXT=CMD, UINT-64. A default has a digit or a lower-case letter.
	placeholder = regexp.MustCompile(`^[A-Z][A-Z_=:-]*[A-Z0-9]*(,\.\.\.)?$`)
	docLong     = regexp.MustCompile("`--([a-z][a-z0-9-]*)")
	docShort    = regexp.MustCompile("`-([A-Za-z])[ `]")
)

// configTypes are the words the "config" column may hold (see the doc's
// "The --config file" section).
var configTypes = map[string]bool{
	"string": true, "number": true, "boolean": true, "array": true,
	"duration": true, "size": true, "": true,
}

// helpEntry is one flag as `--help` shows it.
type helpEntry struct {
	short   string
	value   string // what follows "=": a default or a placeholder; "" for a switch
	env     string
	isFlag  bool // takes no value
	listSep bool // shown as VALUE,...: a list
}

// defaultValue is the default help shows, or "" when it shows a placeholder.
func (h helpEntry) defaultValue() string {
	v := strings.Trim(h.value, `"`)
	if v == "" || placeholder.MatchString(v) {
		return ""
	}
	return v
}

// helpFlags runs `cgibridge CMD --help` and returns its flags.
func helpFlags(t *testing.T, cmd string) map[string]helpEntry {
	t.Helper()
	out, err := exec.Command(harness.MustBinary(t), cmd, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("cgibridge %s --help: %v\n%s", cmd, err, out)
	}
	flags := map[string]helpEntry{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			cur = m[2]
			flags[cur] = helpEntry{short: m[1], value: m[3], isFlag: m[3] == "", listSep: strings.HasSuffix(m[3], ",...")}
		} else if strings.TrimSpace(line) == "" || !strings.HasPrefix(line, "  ") {
			cur = "" // a blank line or a group heading ends a flag's text
		}
		if cur == "" {
			continue
		}
		if m := helpEnv.FindAllStringSubmatch(line, -1); m != nil {
			e := flags[cur]
			e.env = m[len(m)-1][1]
			flags[cur] = e
		}
	}
	if _, ok := flags["config"]; len(flags) < 10 || !ok {
		t.Fatalf("parsed only %d flags from %s --help; has its layout changed?\n%s", len(flags), cmd, out)
	}
	return flags
}

// docEntry is one row of a flag table in docs/configuration.md.
type docEntry struct {
	short, env, config, def string
	line                    int
}

// docFlags reads docs/configuration.md and returns the flag rows of each
// command's section: "global" (Global options), "serve" and "spawn". A row is
// a table row whose first cell starts with a flag; its cells are flag,
// environment, config, default, meaning.
func docFlags(t *testing.T) (map[string]map[string]docEntry, string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[string]docEntry{"global": {}, "serve": {}, "spawn": {}}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			switch {
			case strings.HasPrefix(h, "Global options"):
				section = "global"
			case strings.HasPrefix(h, "`cgibridge serve`"):
				section = "serve"
			case strings.HasPrefix(h, "`cgibridge spawn`"):
				section = "spawn"
			default:
				section = ""
			}
			continue
		}
		if section == "" || !strings.HasPrefix(line, "|") {
			continue
		}
		// An escaped \| inside a cell (text\|json) is not a cell border.
		cells := strings.Split(strings.Trim(strings.ReplaceAll(line, `\|`, "/"), "|"), "|")
		first := strings.TrimSpace(cells[0])
		if !strings.HasPrefix(first, "`-") {
			continue
		}
		long := docLong.FindStringSubmatch(first)
		if long == nil {
			t.Errorf("docs/configuration.md:%d: flag row without a --long name: %s", i+1, line)
			continue
		}
		if len(cells) != 5 {
			t.Errorf("docs/configuration.md:%d: --%s: want 5 cells (flag, environment, config, default, meaning), got %d", i+1, long[1], len(cells))
			continue
		}
		e := docEntry{
			env:    strings.Trim(strings.TrimSpace(cells[1]), "`"),
			config: strings.TrimSpace(cells[2]),
			def:    strings.TrimSpace(cells[3]),
			line:   i + 1,
		}
		if s := docShort.FindStringSubmatch(first + " "); s != nil {
			e.short = s[1]
		}
		if _, dup := docs[section][long[1]]; dup {
			t.Errorf("docs/configuration.md:%d: %s section documents --%s twice", i+1, section, long[1])
		}
		docs[section][long[1]] = e
	}
	return docs, string(data)
}

// globalFlags are the flags every command's help shows, documented once.
var globalFlags = map[string]bool{"help": true, "version": true, "config": true}

func TestConfigurationDocMatchesHelp(t *testing.T) {
	docs, text := docFlags(t)
	for _, c := range []struct{ cmd, envPrefix string }{
		{"serve", "CGIBRIDGE_"},
		{"spawn", "CGIBRIDGE_SPAWN_"},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			flags := helpFlags(t, c.cmd)
			var missing, unknown []string
			for f, h := range flags {
				section, prefix := c.cmd, c.envPrefix
				if globalFlags[f] {
					section, prefix = "global", "CGIBRIDGE_"
				}
				d, ok := docs[section][f]
				if !ok {
					missing = append(missing, "--"+f)
					continue
				}
				checkRow(t, f, h, d, prefix)
			}
			for f := range docs[c.cmd] {
				if _, ok := flags[f]; !ok {
					unknown = append(unknown, "--"+f)
				}
			}
			sort.Strings(missing)
			sort.Strings(unknown)
			if len(missing) > 0 {
				t.Errorf("flags of `cgibridge %s --help` missing from its section of docs/configuration.md: %v", c.cmd, missing)
			}
			if len(unknown) > 0 {
				t.Errorf("docs/configuration.md documents flags that `cgibridge %s --help` lacks: %v", c.cmd, unknown)
			}
		})
	}
	for f := range docs["global"] {
		if !globalFlags[f] {
			t.Errorf("docs/configuration.md: --%s is in Global options but is not a global flag", f)
		}
	}
	for _, s := range []string{"## `cgibridge version`", "## Exit codes", "## Reloading"} {
		if !strings.Contains(text, s) {
			t.Errorf("docs/configuration.md lacks the section %q", s)
		}
	}
}

// checkRow compares one documented row with the flag's help.
func checkRow(t *testing.T, f string, h helpEntry, d docEntry, envPrefix string) {
	t.Helper()
	at := func(format string, args ...any) {
		t.Errorf("docs/configuration.md:%d: --%s: "+format, append([]any{d.line, f}, args...)...)
	}
	if d.short != h.short {
		at("short form -%s, help has -%s", d.short, h.short)
	}
	// Every flag has its variable, except --help and --version (a stray
	// CGIBRIDGE_VERSION must not turn serve into a version print).
	wantEnv := ""
	if f != "help" && f != "version" {
		wantEnv = envPrefix + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
	}
	docEnv := d.env
	if docEnv == "none" {
		docEnv = ""
	}
	if docEnv != wantEnv || h.env != wantEnv {
		at("environment %q in the docs, %q in --help; want %q", d.env, h.env, wantEnv)
	}
	if def := h.defaultValue(); def != "" && !strings.Contains(d.def, "`"+def+"`") {
		at("default column %q does not give help's default `%s`", d.def, def)
	}
	if d.def == "" && f != "help" {
		at("empty default column (say none, or what happens without it)")
	}
	if !configTypes[d.config] {
		at("config column %q: want one of string, number, boolean, array, duration, size", d.config)
	}
	switch {
	case f == "help":
	case h.isFlag && d.config != "boolean":
		at("a switch, so its config type is boolean, not %q", d.config)
	case !h.isFlag && d.config == "boolean":
		at("takes a value, so its config type is not boolean")
	case h.listSep && d.config != "array":
		at("a list (help shows VALUE,...), so its config type is array, not %q", d.config)
	case d.config == "":
		at("empty config column")
	}
}
