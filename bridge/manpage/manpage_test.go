package manpage

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// testCLI has what the real command line has: global flags, commands with
// an env prefix, groups, shorts, defaults, enums, repeatable flags, a
// positional, hidden flags and a hidden command; and help text that roff
// would misread unescaped.
type testCLI struct {
	Config string `help:"Read options from FILE." placeholder:"FILE"`

	Serve struct {
		Root     string        `help:"The root.\n.so /etc/passwd\n'br and a \\ backslash, C:\\dir\\n, 'quoted' and \"double\" — em dash, café." placeholder:"DIR" group:"Programs"`
		Listen   []string      `help:"Where to listen (repeatable)." placeholder:"ADDR" group:"Listening"`
		Timeout  time.Duration `help:"Per-request limit." default:"60s" group:"Limits"`
		MaxProcs int           `help:"Programs at once." default:"64" group:"Limits"`
		Format   string        `help:"Log format." enum:"text,json" default:"text"`
		Secret   string        `help:"Not for readers." hidden:""`
		Quiet    bool          `help:"Say less."`
	} `cmd:"" help:"Run the server."`
	Spawn struct {
		Socket  string   `short:"s" env:"SOCKET" help:"Unix socket." placeholder:"PATH" group:"Socket"`
		Count   int      `short:"F" env:"CHILDREN" help:"Copies." default:"1" group:"Children"`
		Program []string `arg:"" help:"The program and its arguments." placeholder:"PROGRAM"`
	} `cmd:"" envprefix:"TEST_SPAWN_" help:"Run copies of a program."`
	Man struct{} `cmd:"" hidden:"" help:"Print the man page."`
}

func render(t *testing.T) (string, *kong.Kong) {
	t.Helper()
	var cli testCLI
	k, err := kong.New(&cli, kong.Name("testbridge"), kong.Description("A test bridge. It runs things."), kong.DefaultEnvars("TEST"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, k.Model, "1.2-3"); err != nil {
		t.Fatal(err)
	}
	return buf.String(), k
}

// requests are the requests the page may use; any other line that starts
// with a dot or an apostrophe is text roff would misread.
var requests = regexp.MustCompile(`^(\.\\"|\.(TH|SH|SS|TP|PP|IP|br|B|BR|I|nh|ad)( |$))`)

func TestStructure(t *testing.T) {
	page, _ := render(t)
	for i, l := range strings.Split(page, "\n") {
		if (strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'")) && !requests.MatchString(l) {
			t.Errorf("line %d is read as a roff request: %q", i+1, l)
		}
	}
	for _, want := range []string{
		`.TH "TESTBRIDGE" 8 "" "testbridge 1.2\-3" "System Administration"`,
		".SH NAME\ntestbridge \\- test bridge\n",
		".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS", ".SH OPTIONS",
		".SH \"SERVE OPTIONS\"", ".SH \"SPAWN OPTIONS\"",
		".SH EXIT STATUS", ".SH SIGNALS", ".SH FILES", ".SH SEE ALSO",
		`\fBtestbridge\fR \fBspawn\fR [\fIoptions\fR] \fIPROGRAM\fR ...`,
		".SS \"Limits\"\n.TP\n\\fB\\-\\-timeout\\fR=\\fIDURATION\\fR\nPer\\-request limit.\n.br\nDefault: 60s. Environment: TEST_TIMEOUT.\n",
		"\\fB\\-\\-max\\-procs\\fR=\\fIN\\fR\n",
		"\\fB\\-\\-format\\fR=\\fIFORMAT\\fR\nLog format.\n.br\nOne of: text, json. Default: text. Environment: TEST_FORMAT.\n",
		"\\fB\\-\\-quiet\\fR\nSay less.\n",
		"\\fB\\-s\\fR, \\fB\\-\\-socket\\fR=\\fIPATH\\fR\nUnix socket.\n.br\nEnvironment: TEST_SPAWN_SOCKET.\n",
		"\\fB\\-F\\fR, \\fB\\-\\-count\\fR=\\fIN\\fR\n",
		"\\fB\\-\\-listen\\fR=\\fIADDR\\fR\nWhere to listen (repeatable).\n.br\nEnvironment: TEST_LISTEN.\n",
		"\\fB\\-\\-config\\fR=\\fIFILE\\fR",
		"\\&.so /etc/passwd\n", "\\(aqbr and a \\e backslash",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Groups in declaration order, ungrouped flags first.
	serve := page[strings.Index(page, ".SH \"SERVE OPTIONS\""):strings.Index(page, ".SH \"SPAWN OPTIONS\"")]
	order := []string{`\-\-format`, `\-\-quiet`, `.SS "Programs"`, `.SS "Listening"`, `.SS "Limits"`}
	last := -1
	for _, s := range order {
		i := strings.Index(serve, s)
		if i < last {
			t.Errorf("serve options out of order: %q before what precedes it in %v", s, order)
		}
		last = i
	}
	for _, hidden := range []string{"secret", "TEST_SECRET", "Not for readers", `\fBman\fR`, "Print the man page"} {
		if strings.Contains(page, hidden) {
			t.Errorf("page shows hidden %q", hidden)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		`a\b`:       `a\eb`,
		"--x-y":     `\-\-x\-y`,
		"it's `x`":  `it\(aqs \(gax\(ga`,
		"a — b – c": `a \(em b \(en c`,
		"café":      `caf\[u00E9]`,
		"tab\there": "tab here",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		".so x":  `\&.so x`,
		"'br":    `\&'br`,
		"  .x":   `\&.x`,
		"plain.": "plain.",
	} {
		if got := Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRenders: groff formats the page without a warning, and the text a
// reader sees is the help text as written.
func TestRenders(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff not installed (groff-base)")
	}
	page, _ := render(t)
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou")
	cmd.Stdin = strings.NewReader(page)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("groff: %v\n%s", err, errb.String())
	}
	if errb.Len() > 0 {
		t.Errorf("groff warns:\n%s", errb.String())
	}
	text := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		"testbridge - test bridge",
		"-s, --socket=PATH",
		"--max-procs=N",
		".so /etc/passwd 'br and a \\ backslash, C:\\dir\\n, 'quoted' and \"double\" — em dash, café.",
		"TEST_SPAWN_CHILDREN",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, out.String())
		}
	}
}
