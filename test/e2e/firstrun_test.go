// This file holds the tests of the first five minutes as a new user lives
// them, as root: the README's quick-start command run literally from a
// checkout in a 0700 directory; start-up refusals, one line each, for what
// the programs' user cannot reach; the root's owner chosen by --http; and
// 404 rather than 403 when a directory on the way cannot be searched.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/bridge/fcgi"
	"github.com/cgibridge/cgibridge/test/harness"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it tests what a root-started bridge does (run the suite as root, as test/run does)")
	}
}

// privateDir makes a directory only root can enter, as /root is.
func privateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgb-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkout copies the repository's files (tracked and new, as git lists
// them) to dst, as a clone would have them.
func checkout(t *testing.T, dst string) {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repo, name)
		fi, err := os.Lstat(src)
		if err != nil {
			continue // listed but deleted in the working tree
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(src)
			if err := os.Symlink(target, to); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// readmeCommand returns the README's command line that starts with prefix.
func readmeCommand(t *testing.T, prefix string) []string {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for strings.HasSuffix(line, "\\") && sc.Scan() { // a continued line
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(sc.Text())
		}
		return strings.Fields(line)
	}
	t.Fatalf("README.md has no command line starting with %q", prefix)
	return nil
}

// served is a bridge process started by a test, with its log.
type served struct {
	cmd    *exec.Cmd
	logs   *harness.SafeBuffer
	exited chan error // receives the exit once; done is closed then
	done   chan struct{}
}

// startServe starts argv in dir, in its own process group (go run's child
// is in it too), stopped with SIGTERM to the group at cleanup.
func startServe(t *testing.T, dir string, argv []string, env ...string) *served {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{harness.SafePath, "HOME=/root"}, env...)
	s := &served{cmd: cmd, logs: &harness.SafeBuffer{}, exited: make(chan error, 1), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.exited <- cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(harness.StopTimeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			t.Errorf("%s ignored SIGTERM", argv[0])
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", argv, s.logs.String())
		}
	})
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestQuickStartFromPrivateHomeAsRoot runs the README's serve command
// literally (go run, the port aside) from a checkout in a 0700 directory,
// as a root user who cloned into /root would: every example that needs no
// extra package answers, the index says how each runs and why one is
// refused, without absolute paths, and an edit is served at once.
func TestQuickStartFromPrivateHomeAsRoot(t *testing.T) {
	needRoot(t)
	home := privateDir(t)
	repo := filepath.Join(home, "cgibridge")
	checkout(t, repo)
	argv := readmeCommand(t, "go run . serve --http")
	addr := freeAddr(t)
	for i, a := range argv {
		if a == "127.0.0.1:8080" {
			argv[i] = addr
		}
	}
	if !strings.Contains(strings.Join(argv, " "), addr) {
		t.Fatalf("README's command %q has no 127.0.0.1:8080 to replace", argv)
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = "/usr/local/go/bin/go"
	}
	argv[0] = goCmd
	s := startServe(t, repo, argv, "GOFLAGS=-buildvcs=false", "GOCACHE="+goEnv(t, "GOCACHE"), "GOMODCACHE="+goEnv(t, "GOMODCACHE"), "GOPROXY="+goEnv(t, "GOPROXY"))
	// go run compiles first: allow for it.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-s.exited:
			t.Fatalf("the README's command exited before serving: %v\n%s", err, s.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing on %s after 3 minutes\n%s", addr, s.logs.String())
		}
	}
	base := "http://" + addr

	index := wantStatusBody(t, get(t, base+"/"), 200, "hello.sh", "query.py", "exec mode", "hello.c", "refused")
	if strings.Contains(index.Body, home) || strings.Contains(index.Body, "/tmp/") {
		t.Errorf("the index shows an absolute path:\n%s", index.Body)
	}
	if err := s.logs.WaitFor("index: this program would be refused: name=hello.c", 5*time.Second); err != nil {
		t.Errorf("the refusal of hello.c on the index has no log line: %v", err)
	}
	wantStatusBody(t, get(t, base+"/hello.sh?q=1"), 200, "Hello from hello.sh")
	wantStatusBody(t, get(t, base+"/query.py?a=1"), 200, `"a": ["1"]`)
	wantStatusBody(t, get(t, base+"/noshebang.py"), 200)
	wantStatusBody(t, get(t, base+"/no-such.sh"), 404)
	if err := s.logs.WaitFor("serves a copy kept in sync", 5*time.Second); err != nil {
		t.Errorf("no log line says the root is served from a copy: %v", err)
	}
	// The copy is private: root's and the programs' group's, and gone
	// after the bridge stops.
	copyDir := ""
	if m := regexp.MustCompile(`copy=(/\S+)`).FindStringSubmatch(s.logs.String()); m != nil {
		copyDir = m[1]
	}
	if fi, err := os.Stat(copyDir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("the copy %q: %v %v, want mode 0750", copyDir, fi, err)
	}
	t.Cleanup(func() {
		// Runs before startServe's cleanup: stop the bridge here.
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(harness.StopTimeout):
		}
		if _, err := os.Stat(copyDir); copyDir != "" && err == nil {
			t.Errorf("the copy %s is left after the bridge stopped", copyDir)
		}
	})

	// An edit in the checkout is served on the next request (the copy
	// follows it).
	newScript := filepath.Join(repo, "legacy-examples", "cgi-bin", "added.sh")
	writeFile(t, newScript, "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nadded v1\\n'\n", 0o755)
	waitBody(t, base+"/added.sh", "added v1")
	writeFile(t, newScript, "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nadded v2\\n'\n", 0o755)
	waitBody(t, base+"/added.sh", "added v2")
	// Who ran it: nobody, never root.
	writeFile(t, filepath.Join(repo, "legacy-examples", "cgi-bin", "whoami.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nuid=%s\\n' \"$(id -u)\"\n", 0o755)
	waitBody(t, base+"/whoami.sh", "uid=65534")
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goCmd, "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// waitBody polls url until the body contains want (the copy is updated
// within moments of a change), for at most 5 s.
func waitBody(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			if resp.StatusCode == 200 && strings.Contains(string(b), want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("GET %s: never %q; last: %s", url, want, last)
}

// TestStartupRefusesWhatTheUserCannotReach: a root bridge whose programs'
// user cannot reach the root, or whose own user cannot write the temp dir,
// or whose socket's directory cannot exist, refuses to start with one line
// naming the path, the user and the fix, and exits 1.
func TestStartupRefusesWhatTheUserCannotReach(t *testing.T) {
	needRoot(t)
	bin := harness.MustBinary(t)
	home := privateDir(t)
	hidden := filepath.Join(home, "cgi-bin")
	if err := os.Mkdir(hidden, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := newTree(t) // reachable by nobody
	sock := filepath.Join(tr.Base, "s.sock")
	for _, c := range []struct {
		name string
		args []string
		want *regexp.Regexp
	}{
		{"Root", []string{"--listen", "unix:" + sock, "--root", hidden},
			regexp.MustCompile(`^cgibridge: --root ` + regexp.QuoteMeta(hidden) + `: user nobody cannot search ` + regexp.QuoteMeta(home) + `, a directory above it; fix: --user .*--allow-root`)},
		{"RootAsWwwData", []string{"--listen", "unix:" + sock, "--root", hidden, "--user", "www-data"},
			regexp.MustCompile(`^cgibridge: --root ` + regexp.QuoteMeta(hidden) + `: user www-data cannot search ` + regexp.QuoteMeta(home) + `, a directory above it; fix: `)},
		{"Allow", []string{"--listen", "unix:" + sock, "--root", tr.Root, "--allow", hidden},
			regexp.MustCompile(`^cgibridge: --allow ` + regexp.QuoteMeta(hidden) + `: user nobody cannot search `)},
		{"TempDir", []string{"--listen", "unix:" + sock, "--root", tr.Root, "--temp-dir", hidden},
			regexp.MustCompile(`^cgibridge: --temp-dir ` + regexp.QuoteMeta(hidden) + `: user nobody cannot search ` + regexp.QuoteMeta(home) + `, a directory above it; fix: choose a --temp-dir`)},
		{"SocketDir", []string{"--listen", "unix:" + filepath.Join(tr.Base, "no", "such", "s.sock"), "--root", tr.Root},
			regexp.MustCompile(`^cgibridge: --listen unix:\S+: directory \S+ for the socket does not exist and cannot be made .*RuntimeDirectory=`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"serve"}, c.args...)...)
			cmd.Env = []string{harness.SafePath}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("still running after 10s: it started\n%s", stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, stderr.String())
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if strings.HasPrefix(l, "cgibridge:") {
					errLines = append(errLines, l)
				}
				if strings.Contains(l, "cgibridge started") {
					t.Errorf("logged as started before it refused: %s", l)
				}
			}
			if len(errLines) != 1 || !c.want.MatchString(errLines[0]) {
				t.Errorf("error lines %q, want one matching %s\nall:\n%s", errLines, c.want, stderr.String())
			}
		})
	}
}

// TestHTTPAsRootRunsProgramsAsTheRootsOwner: started as root for --http
// with a root nobody cannot reach but its (non-root) owner can, the
// programs run as that owner, and a line says so.
func TestHTTPAsRootRunsProgramsAsTheRootsOwner(t *testing.T) {
	needRoot(t)
	bin := harness.MustBinary(t)
	home := privateDir(t)
	root := filepath.Join(home, "cgi-bin")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "id.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nuid=%s\\n' \"$(id -u)\"\n", 0o755)
	for _, p := range []string{home, root, filepath.Join(root, "id.sh")} {
		if err := os.Chown(p, 33, 33); err != nil { // www-data, as Debian has it
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	s := startServe(t, "/", []string{bin, "serve", "--http", addr, "--root", root})
	waitDial(t, addr, s.exited)
	wantStatusBody(t, get(t, "http://"+addr+"/id.sh"), 200, "uid=33")
	if err := s.logs.WaitFor("programs run as its owner", 5*time.Second); err != nil {
		t.Errorf("no log line says the programs run as the root's owner: %v", err)
	}
	if err := s.logs.WaitFor(`dropped privileges: user="www-data(33:33)"`, 5*time.Second); err != nil {
		t.Errorf("the bridge itself did not drop to the root's owner: %v", err)
	}
}

// TestUnsearchableDirectoryIs404: the bridge, dropped to the programs'
// user, cannot search a directory on the way to a script; whether the
// script exists cannot be known, so the answer is 404 as for a missing
// file, and the log line says why. A file that exists and may not run is
// 403.
func TestUnsearchableDirectoryIs404(t *testing.T) {
	needRoot(t)
	tr := newTree(t)
	private := filepath.Join(tr.Root, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(private, "x.sh"), "#!/bin/sh\necho\n", 0o755)
	writeFile(t, filepath.Join(tr.Root, "data.txt"), "not a program\n", 0o644)
	b := harness.StartBridge(t, []string{"--root", tr.Root, "--user", "www-data"})
	sock := b.Socket
	for _, c := range []struct {
		script string
		status int
		log    string
	}{
		{"private/x.sh", 404, "permission denied"},
		{"private/missing.sh", 404, "permission denied"},
		{"missing.sh", 404, "no such script"},
		{"data.txt", 403, "not executable"},
	} {
		got := rawStatus(t, sock, tr.Root, c.script)
		if got != c.status {
			t.Errorf("%s: status %d, want %d", c.script, got, c.status)
		}
		waitLog(t, b, c.log, c.script)
	}
}

// rawAnswer sends one request as nginx would and returns what the bridge
// answered: the whole STDOUT stream.
func rawAnswer(t *testing.T, sock, root, script string) string {
	t.Helper()
	nc, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var out bytes.Buffer
	c := fcgi.NewClientConn(nc)
	if _, err := c.Do(context.Background(), 1, fcgi.RoleResponder, false, harness.NginxParams(root, script, "GET", -1), nil, &out, io.Discard); err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return out.String()
}

// rawStatus is the Status of rawAnswer (200 when it sent none).
func rawStatus(t *testing.T, sock, root, script string) int {
	t.Helper()
	head, _, _ := strings.Cut(strings.ReplaceAll(rawAnswer(t, sock, root, script), "\r\n", "\n"), "\n\n")
	for _, l := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(l, "Status: "); ok {
			var code int
			fmt.Sscan(v, &code)
			return code
		}
	}
	return 200
}

// rawBody is the body of rawAnswer.
func rawBody(t *testing.T, sock, root, script string) string {
	t.Helper()
	a := strings.ReplaceAll(rawAnswer(t, sock, root, script), "\r\n", "\n")
	_, body, _ := strings.Cut(a, "\n\n")
	return body
}

// TestREADMENginxExampleIsWarningFree runs the README's command for nginx
// (its socket under /run/cgibridge/, its root and user as given, but a
// fresh directory name and a test root): nothing is logged at WARN or
// above, the socket's directory is made for the dropped user, and the
// socket file is gone after SIGTERM.
func TestREADMENginxExampleIsWarningFree(t *testing.T) {
	needRoot(t)
	argv := readmeCommand(t, "cgibridge serve --listen unix:/run/cgibridge/")
	tr := newTree(t)
	runDir := fmt.Sprintf("/run/cgibridge-test-%d", os.Getpid())
	os.RemoveAll(runDir)
	t.Cleanup(func() { os.RemoveAll(runDir) })
	var sock string
	for i, a := range argv {
		switch {
		case strings.HasPrefix(a, "unix:/run/cgibridge/"):
			sock = runDir + "/" + strings.TrimPrefix(a, "unix:/run/cgibridge/")
			argv[i] = "unix:" + sock
		case i > 0 && argv[i-1] == "--root":
			argv[i] = tr.Root
		}
	}
	argv[0] = harness.MustBinary(t)
	s := startServe(t, "/", argv)
	deadline := time.Now().Add(harness.StartTimeout)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s\n%s", sock, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rawStatus(t, sock, tr.Root, "hello.sh"); got != 200 {
		t.Errorf("hello.sh: status %d", got)
	}
	fi, err := os.Stat(runDir)
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 33 {
		t.Errorf("the socket's directory is not www-data's: %v %v", fi, err)
	}
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGTERM)
	<-s.done
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("the socket %s is left after exit", sock)
	}
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, "[WARN]") || strings.Contains(l, "[ERROR]") {
			t.Errorf("the README's example logs: %s", l)
		}
	}
}
