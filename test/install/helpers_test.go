package install

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cgibridge/cgibridge/test/harness"
)

// goTool is the go command, and an environment whose PATH finds it (the
// packaging command runs go itself).
func goTool(t *testing.T) (string, []string) {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		p = "/usr/local/go/bin/go"
		if _, err := os.Stat(p); err != nil {
			t.Skip("go tool not found")
		}
	}
	env := append(os.Environ(), "PATH="+filepath.Dir(p)+string(os.PathListSeparator)+os.Getenv("PATH"))
	return p, env
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a command and returns its stdout, failing t with its stderr.
func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// readmeBuildLine is the static build command of the README's Install
// section, as words: "CGO_ENABLED=0 go build ... -o cgibridge .".
func readmeBuildLine(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Install\n")
	if !ok {
		t.Fatal("README.md has no ## Install section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for _, l := range strings.Split(section, "\n") {
		if strings.HasPrefix(l, "CGO_ENABLED=0 go build ") {
			if strings.ContainsAny(l, `"'$`+"`") {
				t.Fatalf("README build line %q: the test reads it as plain words", l)
			}
			return strings.Fields(l)
		}
	}
	t.Fatal("README.md's Install section has no line starting `CGO_ENABLED=0 go build`")
	return nil
}

var (
	staticOnce sync.Once
	staticBin  string
	staticErr  string
	// staticRevs are HEAD before and after the build (others may commit
	// meanwhile).
	staticRevs []string
)

// buildStatic builds the binary with the README's command, once, into a
// directory removed at the end of the package's tests (TestMain).
func buildStatic(t *testing.T) string {
	t.Helper()
	// Nothing in Do may stop the goroutine: Once would count it as done.
	words := readmeBuildLine(t)
	goPath, env := goTool(t)
	root := repoRoot(t)
	staticOnce.Do(func() {
		rev := func() {
			if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
				staticRevs = append(staticRevs, strings.TrimSpace(string(out)))
			}
		}
		rev()
		defer rev()
		dir, err := os.MkdirTemp("", "cgb-static-")
		if err != nil {
			staticErr = err.Error()
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			staticErr = err.Error()
			return
		}
		out := filepath.Join(dir, "cgibridge")
		var args []string
		for i := 0; i < len(words); i++ {
			w := words[i]
			switch {
			case i == 0 && strings.Contains(w, "="):
				env = append(env, w)
			case w == "go" && len(args) == 0:
			case w == "-o" && i+1 < len(words):
				args = append(args, "-o", out)
				i++
			default:
				args = append(args, w)
			}
		}
		cmd := exec.Command(goPath, args...)
		cmd.Dir = root
		cmd.Env = env
		if msg, err := cmd.CombinedOutput(); err != nil {
			staticErr = strings.Join(words, " ") + ": " + err.Error() + "\n" + string(msg)
			return
		}
		staticBin = out
	})
	if staticErr != "" || staticBin == "" {
		t.Fatal("static build failed:", staticErr)
	}
	return staticBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if staticBin != "" {
		os.RemoveAll(filepath.Dir(staticBin))
	}
	os.Exit(code)
}

// cliHelp is what --help says of the command line: per command, its
// flags (long name to short letter, 0 for none), their environment
// variables, and its flag groups.
type cliHelp struct {
	global     map[string]rune
	globalEnvs []string
	commands   map[string]*cmdHelp
}

type cmdHelp struct {
	flags  map[string]rune
	envs   []string
	groups []string
}

var (
	flagLine = regexp.MustCompile(`^ {2}(?:-(\w), | {4})?--(?:\[no-\])?([a-z0-9][a-z0-9-]*)`)
	envRef   = regexp.MustCompile(`\(\$([A-Z][A-Z0-9_]*)\)`)
)

func parseHelp(text string) *cmdHelp {
	h := &cmdHelp{flags: map[string]rune{}}
	inFlags := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "Flags:":
			inFlags = true
		case inFlags && l != "" && !strings.HasPrefix(l, " ") && !strings.HasSuffix(l, ":"):
			h.groups = append(h.groups, l)
		case strings.HasSuffix(l, ":") && !strings.HasPrefix(l, " "):
			inFlags = false
		}
		if m := flagLine.FindStringSubmatch(l); m != nil && inFlags {
			var short rune
			if m[1] != "" {
				short = rune(m[1][0])
			}
			h.flags[m[2]] = short
		}
	}
	for _, m := range envRef.FindAllStringSubmatch(text, -1) {
		h.envs = append(h.envs, m[1])
	}
	return h
}

// helpOf runs bin's --help for the top level and for each command.
func helpOf(t *testing.T, bin string) *cliHelp {
	t.Helper()
	c := &cliHelp{commands: map[string]*cmdHelp{}}
	top := parseHelp(run(t, exec.Command(bin, "--help")))
	c.global, c.globalEnvs = top.flags, top.envs
	if len(c.global) == 0 {
		t.Fatal("cgibridge --help lists no flags")
	}
	for _, cmd := range []string{"serve", "spawn", "version"} {
		h := parseHelp(run(t, exec.Command(bin, cmd, "--help")))
		for name := range c.global {
			delete(h.flags, name)
		}
		var own []string
		for _, e := range h.envs {
			if !slices.Contains(top.envs, e) {
				own = append(own, e)
			}
		}
		h.envs = own
		c.commands[cmd] = h
	}
	if len(c.commands["serve"].flags) < 20 || len(c.commands["spawn"].flags) < 10 {
		t.Fatalf("too few flags parsed from --help (serve %d, spawn %d): has its format changed?", len(c.commands["serve"].flags), len(c.commands["spawn"].flags))
	}
	return c
}

// roff is a name as the man page writes it: hyphens as \-.
func roff(s string) string { return strings.ReplaceAll(s, "-", `\-`) }

// section is the text from the .SH heading to the next one.
func section(page, heading string) string {
	i := strings.Index(page, "\n.SH "+heading+"\n")
	if i < 0 {
		return ""
	}
	rest := page[i+1:]
	if j := strings.Index(rest[1:], "\n.SH "); j >= 0 {
		return rest[:j+1]
	}
	return rest
}

// checkManPage checks a cgibridge(8) against the command line's --help:
// every visible flag, in its command's section with its short letter and
// environment variables, every group, nothing hidden; and that it renders
// without a warning.
func checkManPage(t *testing.T, page string, help *cliHelp) {
	t.Helper()
	if !strings.HasPrefix(page, `.\"`) || !strings.Contains(page, "\n.TH \"CGIBRIDGE\" 8 ") {
		t.Fatalf("not cgibridge(8):\n%.300s", page)
	}
	for _, h := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "SIGNALS", "FILES", "SEE ALSO"} {
		if section(page, h) == "" {
			t.Errorf("man page has no %s section", h)
		}
	}
	commands := section(page, "COMMANDS")
	for _, c := range []string{"serve", "spawn", "version"} {
		if !strings.Contains(commands, `\fB`+c+`\fR`) {
			t.Errorf("COMMANDS does not list %s", c)
		}
	}
	for _, hidden := range []string{`\fBman\fR`, "pprof"} {
		if strings.Contains(page, hidden) {
			t.Errorf("man page shows hidden %q", hidden)
		}
	}
	for _, code := range []string{"0", "1", "2"} {
		if !strings.Contains(section(page, "EXIT STATUS"), "\n.B "+code+"\n") {
			t.Errorf("EXIT STATUS does not give %s", code)
		}
	}
	for _, sig := range []string{"SIGHUP", "SIGTERM"} {
		if !strings.Contains(section(page, "SIGNALS"), sig) {
			t.Errorf("SIGNALS does not give %s", sig)
		}
	}
	for _, f := range []string{"/etc/cgibridge/cgibridge.json", "/lib/systemd/system/cgibridge.socket", "/lib/systemd/system/cgibridge.service"} {
		if !strings.Contains(section(page, "FILES"), roff(f)) {
			t.Errorf("FILES does not name %s", f)
		}
	}
	checkFlags := func(where, text string, flags map[string]rune, envs, groups []string) {
		for name, short := range flags {
			tag := `\fB\-\-` + roff(name) + `\fR`
			if short != 0 {
				tag = `\fB\-` + string(short) + `\fR, ` + tag
			}
			if !strings.Contains(text, "\n.TP\n"+tag) {
				t.Errorf("%s: no entry %q for --%s", where, tag, name)
			}
		}
		for _, e := range envs {
			if !strings.Contains(text, e) {
				t.Errorf("%s: environment variable %s not named", where, e)
			}
		}
		for _, g := range groups {
			if !strings.Contains(text, "\n.SS \""+g+"\"\n") {
				t.Errorf("%s: no subsection for group %q", where, g)
			}
		}
	}
	checkFlags("OPTIONS", section(page, "OPTIONS"), help.global, help.globalEnvs, nil)
	for _, c := range []string{"serve", "spawn"} {
		h := help.commands[c]
		text := section(page, `"`+strings.ToUpper(c)+` OPTIONS"`)
		if text == "" {
			t.Errorf("man page has no %s OPTIONS section", strings.ToUpper(c))
			continue
		}
		var envs []string
		for _, e := range h.envs {
			if c != "spawn" || strings.HasPrefix(e, "CGIBRIDGE_SPAWN_") {
				envs = append(envs, e)
			}
		}
		checkFlags(c, text, h.flags, envs, h.groups)
	}
	if !strings.Contains(section(page, `"SPAWN OPTIONS"`), "CGIBRIDGE_SPAWN_SOCKET") {
		t.Error("spawn's variables are not CGIBRIDGE_SPAWN_<FLAG>")
	}
	checkRenders(t, page)
}

// checkRenders formats the page with groff and with man -l, both with all
// warnings on: none may be printed. What a reader sees has ASCII option
// names.
func checkRenders(t *testing.T, page string) {
	t.Helper()
	rendered := false
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou")
		cmd.Stdin = strings.NewReader(page)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("groff -man -ww: %v\n%s", err, stderr.String())
		}
		for _, want := range []string{"--max-procs=N", "-s, --socket=PATH", "CGIBRIDGE_SPAWN_SOCKET", "EXIT STATUS"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("rendered page lacks %q", want)
			}
		}
		rendered = true
	}
	if man, err := exec.LookPath("man"); err == nil {
		f := filepath.Join(t.TempDir(), "cgibridge.8")
		if err := os.WriteFile(f, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(man, "--warnings=w", "-l", f)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LANG=C.UTF-8")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man -l: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "CGIBRIDGE(8)") {
			t.Errorf("man -l printed no CGIBRIDGE(8):\n%.500s", stdout.String())
		}
		rendered = true
	}
	if !rendered {
		t.Log("neither groff nor man installed: the man page's rendering is not checked")
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(data)
}

// unit is a systemd unit file: section to key to values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	sec := ""
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			sec = l[1 : len(l)-1]
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || sec == "" {
				t.Fatalf("%s: bad line %q", path, l)
			}
			u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one is the single value of key in sec, failing t if there is not one.
func (u unit) one(t *testing.T, sec, key string) string {
	t.Helper()
	v := u[sec][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %d values %q, want one", sec, key, len(v), v)
	}
	return v[0]
}
