package install

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

// headRevision is the commit HEAD names now.
func headRevision(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (git rev-parse HEAD: %v)", err)
	}
	return strings.TrimSpace(string(out))
}

// checkVersion checks `cgibridge version` and `--version`: the same line,
// the release, the module version, the VCS revision (one of revs) and the
// Go version.
func checkVersion(t *testing.T, bin, release string, revs ...string) {
	t.Helper()
	v := strings.TrimSpace(run(t, exec.Command(bin, "version")))
	if f := strings.TrimSpace(run(t, exec.Command(bin, "--version"))); f != v {
		t.Errorf("--version %q differs from version %q", f, v)
	}
	m := regexp.MustCompile(`^cgibridge (\S+) \(module (\S+), revision ([0-9a-f]{12})(\+modified)?, \S+, go1\.[0-9.]+\)$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("cgibridge version = %q, want cgibridge RELEASE (module V, revision HASH, TIME, goVERSION)", v)
	}
	if release != "" && m[1] != release {
		t.Errorf("cgibridge version names release %s, want %s", m[1], release)
	}
	ok := false
	for _, r := range revs {
		ok = ok || strings.HasPrefix(r, m[3])
	}
	if !ok {
		t.Errorf("cgibridge version names revision %s, want HEAD (%v)", m[3], revs)
	}
}

// TestStaticBinary: the README's build line gives a static binary that
// names its commit.
func TestStaticBinary(t *testing.T) {
	t.Parallel()
	headRevision(t) // skips outside a git checkout
	bin := buildStatic(t)
	if file, err := exec.LookPath("file"); err == nil {
		out := run(t, exec.Command(file, "-b", bin))
		if !strings.Contains(out, "statically linked") || strings.Contains(out, "interpreter") {
			t.Errorf("file %s: %q, want statically linked, no interpreter", bin, out)
		}
	} else {
		t.Log("file not installed")
	}
	if ldd, err := exec.LookPath("ldd"); err == nil {
		out, _ := exec.Command(ldd, bin).CombinedOutput()
		if !strings.Contains(string(out), "not a dynamic executable") {
			t.Errorf("ldd %s: %q, want not a dynamic executable", bin, out)
		}
	}
	checkVersion(t, bin, "", staticRevs...)
}

// TestManPage: `cgibridge man` documents every visible flag of the real
// command line and renders cleanly.
func TestManPage(t *testing.T) {
	t.Parallel()
	bin := buildStatic(t)
	checkManPage(t, run(t, exec.Command(bin, "man")), helpOf(t, bin))
}

// TestDebianPackage builds the package with the one command, inspects it,
// installs it into a scratch root, serves a request through it as its
// units say, and removes it.
func TestDebianPackage(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"dpkg", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	goPath, env := goTool(t)
	before := headRevision(t)
	outDir := t.TempDir()
	cmd := exec.Command(goPath, "run", "./packaging/deb", "-o", outDir)
	cmd.Dir, cmd.Env = repoRoot(t), env
	deb := strings.TrimSpace(run(t, cmd))
	after := headRevision(t)
	if filepath.Dir(deb) != outDir || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("go run ./packaging/deb printed %q, want a .deb in %s", deb, outDir)
	}
	arch := strings.TrimSpace(run(t, exec.Command("dpkg", "--print-architecture")))

	// The control fields.
	field := func(name string) string {
		return strings.TrimSpace(run(t, exec.Command("dpkg-deb", "-f", deb, name)))
	}
	version := field("Version")
	for name, want := range map[string]string{
		"Package": "cgibridge", "Architecture": arch, "Section": "httpd", "Priority": "optional",
		"Depends": "", "Pre-Depends": "",
	} {
		if got := field(name); got != want {
			t.Errorf("control %s: %q, want %q", name, got, want)
		}
	}
	if filepath.Base(deb) != fmt.Sprintf("cgibridge_%s_%s.deb", version, arch) {
		t.Errorf("package file %s, want cgibridge_%s_%s.deb", filepath.Base(deb), version, arch)
	}
	if field("Maintainer") == "" || !strings.Contains(field("Description"), "\n") {
		t.Error("control: Maintainer or a long Description is missing")
	}

	// The files: present, owned by root, with their modes; nothing
	// writable by group or others, nothing setuid.
	type entry struct{ mode, owner string }
	contents := map[string]entry{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, exec.Command("dpkg-deb", "-c", deb))), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: bad line %q", l)
		}
		contents[strings.TrimSuffix(f[5], "/")] = entry{f[0], f[1]}
	}
	for path, mode := range map[string]string{
		"./usr/sbin/cgibridge":                          "-rwxr-xr-x",
		"./lib/systemd/system/cgibridge.socket":         "-rw-r--r--",
		"./lib/systemd/system/cgibridge.service":        "-rw-r--r--",
		"./etc/cgibridge/cgibridge.json":                "-rw-r--r--",
		"./usr/share/man/man8/cgibridge.8.gz":           "-rw-r--r--",
		"./usr/share/doc/cgibridge/copyright":           "-rw-r--r--",
		"./usr/share/doc/cgibridge/changelog.Debian.gz": "-rw-r--r--",
		"./usr/lib/cgi-bin":                             "drwxr-xr-x",
	} {
		if e, ok := contents[path]; !ok {
			t.Errorf("package lacks %s", path)
		} else if e.mode != mode {
			t.Errorf("%s: mode %s, want %s", path, e.mode, mode)
		}
	}
	for path, e := range contents {
		if e.owner != "root/root" {
			t.Errorf("%s: owner %s, want root/root", path, e.owner)
		}
		if len(e.mode) == 10 && (e.mode[5] == 'w' || e.mode[8] == 'w' || strings.ContainsAny(e.mode, "sS")) {
			t.Errorf("%s: mode %s", path, e.mode)
		}
	}

	// The control archive: every file under /etc a conffile, scripts that
	// parse.
	ctrl := t.TempDir()
	run(t, exec.Command("dpkg-deb", "-e", deb, ctrl))
	conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	confs := strings.Fields(string(conffiles))
	for path := range contents {
		if strings.HasPrefix(path, "./etc/") && !strings.HasSuffix(contents[path].mode, "/") && contents[path].mode[0] == '-' {
			found := false
			for _, c := range confs {
				found = found || c == path[1:]
			}
			if !found {
				t.Errorf("%s is not a conffile (conffiles: %q)", path[1:], confs)
			}
		}
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		p := filepath.Join(ctrl, s)
		if _, err := os.Stat(p); err == nil {
			run(t, exec.Command("sh", "-n", p))
		}
	}
	if lintian, err := exec.LookPath("lintian"); err == nil {
		// Errors and warnings fail; the package's overrides say why the
		// ones it carries do not apply.
		out, err := exec.Command(lintian, "--fail-on", "error,warning", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, out)
		}
	} else {
		t.Log("lintian not installed: the package's policy checks are not run")
	}
	if t.Failed() {
		t.FailNow()
	}

	// Install into a scratch root: the machine's own files stay as they are.
	hostHad := map[string]bool{}
	for _, p := range []string{"/usr/sbin/cgibridge", "/etc/cgibridge", "/lib/systemd/system/cgibridge.socket"} {
		_, err := os.Lstat(p)
		hostHad[p] = err == nil
	}
	root := scratchRoot(t)
	dpkg := func(args ...string) string {
		return run(t, exec.Command("dpkg", append([]string{
			"--root=" + root, "--log=" + filepath.Join(root, "dpkg.log"),
			"--force-not-root", "--force-script-chrootless",
		}, args...)...))
	}
	dpkg("-i", deb)
	if st := dpkg("-s", "cgibridge"); !strings.Contains(st, "Status: install ok installed") {
		t.Fatalf("dpkg -s after install:\n%s", st)
	}
	dpkg("--verify", "cgibridge") // the md5sums match what was unpacked
	for p, had := range hostHad {
		if _, err := os.Lstat(p); (err == nil) != had {
			t.Errorf("installing into %s changed the machine's %s", root, p)
		}
	}

	// The installed binary, its man page and changelog.
	bin := filepath.Join(root, "usr/sbin/cgibridge")
	upstream := version[:max(strings.LastIndex(version, "-"), 0)] // 0.1.0+git20261203.abcdef0-1
	if upstream == "" {
		t.Errorf("package version %s has no Debian revision (a native package's changelog is not changelog.Debian)", version)
		upstream = version
	}
	checkVersion(t, bin, upstream, before, after)
	checkManPage(t, gunzip(t, filepath.Join(root, "usr/share/man/man8/cgibridge.8.gz")), helpOf(t, bin))
	if cl := gunzip(t, filepath.Join(root, "usr/share/doc/cgibridge/changelog.Debian.gz")); !strings.HasPrefix(cl, "cgibridge ("+version+") ") {
		t.Errorf("changelog.Debian does not start with this version:\n%s", cl)
	}

	serveAsUnitsSay(t, root)

	dpkg("-r", "cgibridge")
	if _, err := os.Stat(bin); err == nil {
		t.Error("dpkg -r left /usr/sbin/cgibridge")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/cgibridge/cgibridge.json")); err != nil {
		t.Errorf("dpkg -r removed the conffile: %v", err)
	}
	dpkg("--purge", "cgibridge")
	if _, err := os.Stat(filepath.Join(root, "etc/cgibridge/cgibridge.json")); err == nil {
		t.Error("dpkg --purge left the conffile")
	}
}

// scratchRoot is an empty dpkg root that the unprivileged service user can
// enter, with a path short enough for a unix socket under it.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "cgbi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"status", "available"} {
		if err := os.WriteFile(filepath.Join(admin, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// serveAsUnitsSay starts the installed bridge the way the installed units
// say — the socket of cgibridge.socket (path, owner, mode) bound and passed
// as fd 3, ExecStart as the service's User — and has it serve a CGI script
// from the configured root; then reloads it (ExecReload) and stops it.
// Paths are taken inside the scratch root.
func serveAsUnitsSay(t *testing.T, root string) {
	sock := parseUnit(t, filepath.Join(root, "lib/systemd/system/cgibridge.socket"))
	svc := parseUnit(t, filepath.Join(root, "lib/systemd/system/cgibridge.service"))

	listen := sock.one(t, "Socket", "ListenStream")
	if !filepath.IsAbs(listen) || !strings.HasPrefix(listen, "/run/") {
		t.Errorf("ListenStream=%s, want a unix socket under /run", listen)
	}
	modeText := sock.one(t, "Socket", "SocketMode")
	mode, err := strconv.ParseUint(modeText, 8, 32)
	if err != nil || mode != 0o660 {
		t.Errorf("SocketMode=%s, want 0660 (the web server's group only, as fcgiwrap.socket)", modeText)
	}
	sockUser, sockGroup := sock.one(t, "Socket", "SocketUser"), sock.one(t, "Socket", "SocketGroup")
	if sockUser != "www-data" || sockGroup != "www-data" {
		t.Errorf("SocketUser/SocketGroup %s/%s, want www-data/www-data", sockUser, sockGroup)
	}
	if got := sock.one(t, "Install", "WantedBy"); got != "sockets.target" {
		t.Errorf("socket WantedBy=%s, want sockets.target", got)
	}
	for key, want := range map[string]string{"Type": "notify", "User": "www-data", "Group": "www-data", "KillMode": "mixed", "NoNewPrivileges": "yes"} {
		if got := svc.one(t, "Service", key); got != want {
			t.Errorf("service %s=%s, want %s", key, got, want)
		}
	}
	if got := svc.one(t, "Unit", "Requires"); got != "cgibridge.socket" {
		t.Errorf("service Requires=%s, want cgibridge.socket", got)
	}
	if got := svc.one(t, "Service", "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%s, want /bin/kill -HUP $MAINPID (the test sends SIGHUP)", got)
	}
	execStart := svc.one(t, "Service", "ExecStart")
	if strings.ContainsAny(execStart, `"'$%\`) {
		t.Fatalf("ExecStart=%s: the test reads it as plain words", execStart)
	}
	args := strings.Fields(execStart)
	if len(args) < 2 || args[0] != "/usr/sbin/cgibridge" || args[1] != "serve" {
		t.Fatalf("ExecStart=%s, want /usr/sbin/cgibridge serve ...", execStart)
	}
	for _, a := range args {
		if a == "--listen" || strings.HasPrefix(a, "--listen=") {
			t.Errorf("ExecStart=%s: --listen would ignore the socket systemd passes", execStart)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The configuration, with its paths inside the scratch root.
	cgiBin := filepath.Join(root, "usr/lib/cgi-bin")
	args[0] = filepath.Join(root, args[0])
	sawConfig := false
	for i := 1; i < len(args); i++ {
		name := ""
		switch {
		case args[i] == "--config" && i+1 < len(args):
			i++
			name = args[i]
		case strings.HasPrefix(args[i], "--config="):
			name = strings.TrimPrefix(args[i], "--config=")
		default:
			continue
		}
		sawConfig = true
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatalf("ExecStart's --config %s: %v", name, err)
		}
		var conf map[string]any
		if err := json.Unmarshal(data, &conf); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if conf["root"] != "/usr/lib/cgi-bin" {
			t.Errorf("%s: root %v, want /usr/lib/cgi-bin", name, conf["root"])
		}
		conf["root"] = filepath.Join(root, fmt.Sprint(conf["root"]))
		if allow, ok := conf["allow"].([]any); ok {
			for j, a := range allow {
				allow[j] = filepath.Join(root, fmt.Sprint(a))
			}
		}
		moved, _ := json.Marshal(conf)
		movedPath := filepath.Join(root, "test-config.json")
		if err := os.WriteFile(movedPath, moved, 0o644); err != nil {
			t.Fatal(err)
		}
		if args[i-1] == "--config" {
			args[i] = movedPath
		} else {
			args[i] = "--config=" + movedPath
		}
	}
	if !sawConfig {
		t.Fatalf("ExecStart=%s: no --config (the packaged configuration is not read)", execStart)
	}

	script := "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"user=$(id -un)\"\necho \"script=$SCRIPT_NAME\"\n"
	if err := os.WriteFile(filepath.Join(cgiBin, "whoami.cgi"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	// Who the service runs as: the unit's User when the test can switch to
	// it, else the test's own user.
	var cred *syscall.Credential
	wantUser := ""
	if u, err := user.Lookup(svc.one(t, "Service", "User")); err == nil && os.Geteuid() == 0 {
		g, err := user.LookupGroup(svc.one(t, "Service", "Group"))
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				n, _ := strconv.ParseUint(id, 10, 32)
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
		wantUser = u.Username
	} else {
		me, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		wantUser = me.Username
		t.Logf("not root or no user %s: the bridge runs as %s", svc.one(t, "Service", "User"), wantUser)
	}

	// The socket, as systemd makes it.
	sockPath := filepath.Join(root, listen)
	if err := os.MkdirAll(filepath.Dir(sockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	if err := os.Chmod(sockPath, os.FileMode(mode)); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, uerr := user.Lookup(sockUser)
		g, gerr := user.LookupGroup(sockGroup)
		if uerr == nil && gerr == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(g.Gid)
			if err := os.Chown(sockPath, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}

	// NOTIFY_SOCKET, for Type=notify.
	notifyPath := filepath.Join(root, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	if err := os.Chmod(notifyPath, 0o777); err != nil {
		t.Fatal(err)
	}

	// exec keeps the shell's pid, so $$ is the bridge's, as systemd sets it.
	cmd := exec.Command("/bin/sh", append([]string{"-c",
		`LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=cgibridge.socket exec "$0" "$@"`}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "HOME=/", "USER=" + wantUser, "LOGNAME=" + wantUser,
		"NOTIFY_SOCKET=" + notifyPath,
	}
	cmd.ExtraFiles = []*os.File{lnFile}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	var logs harness.SafeBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs.String())
		}
	}()
	awaitNotify := func(what string) {
		t.Helper()
		deadline := time.Now().Add(harness.StartTimeout)
		buf := make([]byte, 4096)
		for {
			notify.SetReadDeadline(deadline)
			n, err := notify.Read(buf)
			if err != nil {
				t.Fatalf("no %s from the bridge (sd_notify) within %v: %v", what, harness.StartTimeout, err)
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if l == what {
					return
				}
			}
		}
	}
	awaitNotify("READY=1")
	lnFile.Close() // the bridge has it; systemd keeps its copy, the test its listener

	request := func() {
		t.Helper()
		nc, err := net.DialTimeout("unix", sockPath, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := fcgi.NewClientConn(nc)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		end, err := c.Do(ctx, 1, fcgi.RoleResponder, false, harness.NginxParams(cgiBin, "whoami.cgi", "GET", -1), nil, &stdout, &stderr)
		if err != nil {
			t.Fatalf("request: %v (stdout %q, stderr %q)", err, stdout.String(), stderr.String())
		}
		out := stdout.String()
		if end.ProtocolStatus != 0 || strings.HasPrefix(out, "Status:") && !strings.HasPrefix(out, "Status: 200") {
			t.Fatalf("request: end %+v, stdout %q, stderr %q", end, out, stderr.String())
		}
		for _, want := range []string{"Content-Type: text/plain", "user=" + wantUser + "\n", "script=/whoami.cgi\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("response lacks %q:\n%s", want, out)
			}
		}
	}
	request()

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	awaitNotify("RELOADING=1")
	awaitNotify("READY=1")
	request()

	// KillMode=mixed: SIGTERM to the main process.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("bridge exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(harness.StopTimeout):
		t.Fatalf("bridge still running %v after SIGTERM", harness.StopTimeout)
	}
	awaitNotify("STOPPING=1")
}
