package spawn

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func validConfig() *Config {
	return &Config{Socket: "/run/x.sock", Children: 1, PHPChildren: -1, SocketMode: "0660", Program: []string{"/bin/true"}}
}

func TestValidateRefusesImpossibleCommandLinesNamingTheFlag(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no program", func(c *Config) { c.Program = nil }, "no program"},
		{"no socket", func(c *Config) { c.Socket = "" }, "-s PATH"},
		{"unix and tcp", func(c *Config) { c.Port = 9000 }, "-s and -p"},
		{"port out of range", func(c *Config) { c.Socket, c.Port = "", 70000 }, "-p 70000"},
		{"addr without port", func(c *Config) { c.Addr = "127.0.0.1" }, "-a needs -p"},
		{"socket owner with tcp", func(c *Config) { c.Socket, c.Port, c.SocketUser = "", 9000, "www-data" }, "-U, -G and -M"},
		{"socket mode with tcp", func(c *Config) { c.Socket, c.Port, c.SocketMode = "", 9000, "0600" }, "-U, -G and -M"},
		{"allow-from with unix", func(c *Config) { c.AllowFrom = []string{"10.0.0.1"} }, "--allow-from"},
		{"no children", func(c *Config) { c.Children = 0 }, "-F 0"},
		{"too many children", func(c *Config) { c.Children = 5000 }, "-F 5000"},
		{"negative backlog", func(c *Config) { c.Backlog = -1 }, "-b -1"},
		{"mode not octal", func(c *Config) { c.SocketMode = "0990" }, "-M"},
		{"mode too wide", func(c *Config) { c.SocketMode = "1777" }, "-M"},
		{"-S without -c", func(c *Config) { c.SocketOutsideChroot = true }, "-S needs -c"},
		{"abstract socket", func(c *Config) { c.Socket = "@x" }, "abstract"},
		{"negative grace", func(c *Config) { c.KillGrace = -time.Second }, "--kill-grace"},
		{"max below first delay", func(c *Config) { c.RestartDelay, c.RestartDelayMax = time.Second, time.Millisecond }, "--restart-delay-max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestValidateFillsDefaults(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Backlog != DefaultBacklog || c.KillGrace != DefaultKillGrace || c.DrainTimeout != DefaultDrainTimeout ||
		c.RestartDelay != DefaultRestartDelay || c.RestartDelayMax != DefaultRestartDelayMax {
		t.Fatalf("defaults not filled in: %+v", c)
	}
}

func TestSocketModeIsAlwaysOctal(t *testing.T) {
	for in, want := range map[string]os.FileMode{"": 0o660, "0660": 0o660, "660": 0o660, "0600": 0o600, "777": 0o777} {
		got, err := socketMode(in)
		if err != nil || got != want {
			t.Errorf("socketMode(%q) = %o, %v; want %o", in, got, err, want)
		}
	}
}

func TestChildEnvPassesEverythingButTheServiceManagersVariables(t *testing.T) {
	in := []string{"PATH=/bin", "LISTEN_PID=1", "LISTEN_FDS=2", "LISTEN_FDNAMES=a:b", "NOTIFY_SOCKET=/run/n",
		envReadyFD + "=3", "PHP_FCGI_CHILDREN=8", "HTTP_PROXY=x", "MUNIN_CONFIG=/etc/munin"}
	got := childEnv(in, -1)
	want := []string{"PATH=/bin", "PHP_FCGI_CHILDREN=8", "HTTP_PROXY=x", "MUNIN_CONFIG=/etc/munin"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv(-C unset) = %q, want %q", got, want)
	}
	got = childEnv(in, 2)
	want = []string{"PATH=/bin", "HTTP_PROXY=x", "MUNIN_CONFIG=/etc/munin", "PHP_FCGI_CHILDREN=2"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv(-C 2) = %q, want %q", got, want)
	}
	if in[6] != "PHP_FCGI_CHILDREN=8" {
		t.Error("childEnv changed its input")
	}
}

func TestBackoffDoublesOnQuickDeathsAndStartsOverAfterAHealthyRunOrACleanExit(t *testing.T) {
	b := &backoff{first: 100 * time.Millisecond, max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next(time.Millisecond, false))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Fatalf("quick deaths: delays %v, want %v", got, want)
	}
	if d := b.next(healthyRun, false); d != 100*time.Millisecond {
		t.Errorf("after a healthy run: delay %v, want the first delay again", d)
	}
	if d := b.next(0, false); d != 200*time.Millisecond {
		t.Errorf("a quick death after that: %v, want 200ms", d)
	}
	b.reset()
	if d := b.next(0, false); d != 100*time.Millisecond {
		t.Errorf("after reset: %v, want 100ms", d)
	}
	// php-cgi exiting 0 after PHP_FCGI_MAX_REQUESTS, however quickly, never
	// backs off, and clears the count of quick deaths.
	b.next(0, false)
	b.next(0, false)
	for range 3 {
		if d := b.next(time.Millisecond, true); d != 100*time.Millisecond {
			t.Errorf("clean exit: %v, want the first delay", d)
		}
	}
	if d := b.next(0, false); d != 100*time.Millisecond {
		t.Errorf("a crash after a clean exit: %v, want the first delay", d)
	}
}

func TestResolveTCPDefaultsToLoopbackAndTakesTheAllowlistFromTheEnvironment(t *testing.T) {
	c := &Config{Port: 9000, Children: 1, PHPChildren: -1, Program: []string{"/bin/true"}, AllowRoot: true}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := resolve(c, func(name string) string {
		if name == envWebServerAddrs {
			return "10.0.0.5,192.168.0.0/24"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.tcpAddr != "127.0.0.1:9000" {
		t.Errorf("tcpAddr = %q, want 127.0.0.1:9000", p.tcpAddr)
	}
	if len(p.listenOpts.AllowFrom) != 2 {
		t.Errorf("allowlist from FCGI_WEB_SERVER_ADDRS: %v", p.listenOpts.AllowFrom)
	}
	c.Addr = "::1"
	if p, err = resolve(c, func(string) string { return "" }); err != nil || p.tcpAddr != "[::1]:9000" {
		t.Errorf("-a ::1: %q, %v", p.tcpAddr, err)
	}
}

func TestResolveFindsTheProgramAndRefusesWhatCannotRun(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		prog []string
		want string
	}{
		{[]string{filepath.Join(dir, "missing")}, "no such file"},
		{[]string{notExec}, "not executable"},
		{[]string{dir}, "not a regular file"},
		{[]string{"no-such-program-anywhere"}, "executable file not found"},
	} {
		c := &Config{Socket: filepath.Join(dir, "s"), Children: 1, PHPChildren: -1, Program: tt.prog, AllowRoot: true}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		_, err := resolve(c, os.Getenv)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("program %q: %v, want an error with %q", tt.prog, err, tt.want)
		}
	}
	c := &Config{Socket: filepath.Join(dir, "s"), Children: 1, PHPChildren: -1, Program: []string{"true", "-x"}, AllowRoot: true}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := resolve(c, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(p.path) || !slices.Equal(p.argv, []string{"true", "-x"}) {
		t.Errorf("bare name: path %q argv %q; want an absolute path and argv as given", p.path, p.argv)
	}
}

func TestResolveGivesTheSocketToTheChildrensUserAsSpawnFCGIDoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching the children's user needs root")
	}
	dir := t.TempDir()
	base := func() *Config {
		return &Config{Socket: filepath.Join(dir, "s"), Children: 1, PHPChildren: -1, Program: []string{"/bin/true"}}
	}
	for _, tt := range []struct {
		name              string
		edit              func(*Config)
		wantOwner, wantGr string
	}{
		{"no -u: children nobody, socket the supervisor's", func(*Config) {}, "", ""},
		{"-u nobody", func(c *Config) { c.User = "nobody" }, "65534", "65534"},
		{"-u nobody -U root -G 0", func(c *Config) { c.User, c.SocketUser, c.SocketGroup = "nobody", "root", "0" }, "root", "0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			p, err := resolve(c, os.Getenv)
			if err != nil {
				t.Fatal(err)
			}
			if p.id == nil || p.id.UID != 65534 {
				t.Errorf("children run as %v, want nobody", p.id)
			}
			if p.listenOpts.SocketOwner != tt.wantOwner || p.listenOpts.SocketGroup != tt.wantGr {
				t.Errorf("socket owner %q group %q, want %q %q", p.listenOpts.SocketOwner, p.listenOpts.SocketGroup, tt.wantOwner, tt.wantGr)
			}
		})
	}
	c := base()
	c.User = "root"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve(c, os.Getenv); err == nil || !strings.Contains(err.Error(), "--allow-root") {
		t.Errorf("-u root: %v, want a refusal naming --allow-root", err)
	}
}
