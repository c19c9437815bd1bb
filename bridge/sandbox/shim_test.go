// This file tests the exec shim by re-executing the test binary as cgibridge would
// (TestMain hands ShimArg to ShimMain), running real programs under real limits.

package sandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var testEnv = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}

type shimRun struct {
	stdout, stderr string
	code           int            // exit status, or -1 when killed by a signal
	signal         syscall.Signal // the signal when code == -1
}

// runShim runs argv under the shim like the bridge would: own process group, given
// environment, optional credential. Output goes to files so that leftover
// descendants holding them cannot stall Wait; the group is killed afterwards.
func runShim(t *testing.T, self string, l Limits, argv []string, cred *syscall.Credential) shimRun {
	t.Helper()
	args := Wrap(self, l, argv[0], argv)
	cmd := &exec.Cmd{Path: self, Args: args, Env: testEnv}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	dir := t.TempDir()
	outF, errF := createFile(t, filepath.Join(dir, "out")), createFile(t, filepath.Join(dir, "err"))
	cmd.Stdout, cmd.Stderr = outF, errF
	if err := cmd.Start(); err != nil {
		t.Fatalf("start shim: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	r := shimRun{stdout: readAll(t, outF), stderr: readAll(t, errF)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			r.code, r.signal = -1, ws.Signal()
		} else {
			r.code = ws.ExitStatus()
		}
	default:
		t.Fatalf("wait shim: %v", err)
	}
	return r
}

func createFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// binaryForNobody copies the test binary somewhere nobody can execute it: go test
// builds it inside a 0700 directory.
func binaryForNobody(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.Open(testBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "cgibridge")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

var nobodyCred = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}

func TestShimSetsLimitsSeenByShell(t *testing.T) {
	l := Limits{OpenFiles: 77, CPUSeconds: 9, AddressSpace: 512 << 20}
	r := runShim(t, testBinary(t), l, []string{"/bin/sh", "-c", "ulimit -n; ulimit -t; ulimit -v"}, nil)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if want := "77\n9\n524288\n"; r.stdout != want {
		t.Errorf("ulimit printed %q, want %q", r.stdout, want)
	}
}

// TestShimSetsSoftAndHardForAllFive pins soft = hard for every limit but CPU
// time, whose hard limit is one second above the soft one so that SIGXCPU,
// not SIGKILL, ends a program that uses it up.
func TestShimSetsSoftAndHardForAllFive(t *testing.T) {
	l := Limits{CPUSeconds: 11, AddressSpace: 1 << 30, OpenFiles: 50, Processes: 4000, FileSize: 1 << 20}
	r := runShim(t, testBinary(t), l, []string{"/bin/cat", "/proc/self/limits"}, nil)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, tc := range []struct{ row, soft, hard string }{
		{"Max cpu time", "11", "12"},
		{"Max address space", strconv.Itoa(1 << 30), strconv.Itoa(1 << 30)},
		{"Max open files", "50", "50"},
		{"Max processes", "4000", "4000"},
		{"Max file size", strconv.Itoa(1 << 20), strconv.Itoa(1 << 20)},
	} {
		m := regexp.MustCompile(`(?m)^` + tc.row + `\s+(\S+)\s+(\S+)`).FindStringSubmatch(r.stdout)
		if m == nil || m[1] != tc.soft || m[2] != tc.hard {
			t.Errorf("%s: got %q, want soft %s hard %s", tc.row, m, tc.soft, tc.hard)
		}
	}
}

func TestShimWithoutLimitsInheritsOpenFiles(t *testing.T) {
	// Go raises its own soft RLIMIT_NOFILE at start-up; the program must still get the
	// soft limit the shim was started with, as if the shim were not there.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < 300 {
		t.Skipf("hard RLIMIT_NOFILE %d too low for this test", lim.Max)
	}
	cmd := exec.Command("/bin/sh", "-c", `ulimit -Sn 256 && exec "$0" "$@"`)
	cmd.Args = append(cmd.Args, Wrap(testBinary(t), Limits{}, "/bin/sh", []string{"/bin/sh", "-c", "ulimit -Sn"})...)
	cmd.Env = testEnv
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "256\n" {
		t.Fatalf("got %q, %v; want the inherited soft limit 256", out, err)
	}
}

func TestShimClampsLimitAboveHardLimitForUnprivileged(t *testing.T) {
	self := binaryForNobody(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max == unix.RLIM_INFINITY {
		t.Skip("hard RLIMIT_NOFILE is unlimited")
	}
	r := runShim(t, self, Limits{OpenFiles: lim.Max + 1000}, []string{"/bin/sh", "-c", "ulimit -Hn"}, nobodyCred)
	if want := strconv.FormatUint(lim.Max, 10) + "\n"; r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d stdout %q stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestShimAddressSpaceStopsMemoryHog(t *testing.T) {
	// The shell builds a 64 MiB string in memory; under a 32 MiB address space it must
	// fail (or be killed), and without the limit the same command must succeed.
	hog := []string{"/bin/sh", "-c", `x=$(head -c 67108864 /dev/zero | tr '\0' a); echo survived ${#x}`}
	free := runShim(t, testBinary(t), Limits{}, hog, nil)
	if free.code != 0 || free.stdout != "survived 67108864\n" {
		t.Fatalf("without a limit: exit %d stdout %q stderr %q", free.code, free.stdout, free.stderr)
	}
	capped := runShim(t, testBinary(t), Limits{AddressSpace: 32 << 20}, hog, nil)
	if capped.code == 0 || strings.Contains(capped.stdout, "survived") {
		t.Fatalf("under 32 MiB: exit %d stdout %q stderr %q; want failure", capped.code, capped.stdout, capped.stderr)
	}
}

// bombCred is a uid no one else uses: RLIMIT_NPROC counts every process of
// the real uid machine-wide, and other test packages run programs as nobody
// at the same time.
var bombCred = &syscall.Credential{Uid: 59998, Gid: 59998, Groups: []uint32{}}

func TestShimProcessesStopsForkBombOfUnprivilegedUser(t *testing.T) {
	// RLIMIT_NPROC does not bind root, so the bomb runs as an unprivileged,
	// otherwise unused uid. It is bounded (200 sleeps of 5 s) and its group is
	// killed by runShim either way.
	self := binaryForNobody(t)
	bomb := func(n int) []string {
		return []string{"/bin/sh", "-c", "for i in $(seq " + strconv.Itoa(n) + "); do sleep 5 & done; echo spawned-all"}
	}
	small := runShim(t, self, Limits{Processes: 20}, bomb(3), bombCred)
	if small.code != 0 || small.stdout != "spawned-all\n" {
		t.Fatalf("3 processes under a limit of 20: exit %d stdout %q stderr %q", small.code, small.stdout, small.stderr)
	}
	start := time.Now()
	big := runShim(t, self, Limits{Processes: 20}, bomb(200), bombCred)
	if big.code == 0 || strings.Contains(big.stdout, "spawned-all") || !strings.Contains(strings.ToLower(big.stderr), "fork") {
		t.Fatalf("200 processes under a limit of 20: exit %d stdout %q stderr %q; want a fork failure", big.code, big.stdout, big.stderr)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("fork failure took %v; the shell should fail fast", time.Since(start))
	}
}

func TestShimReportsExecFailures(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noShebang := write("plain.cgi", "echo hi\n", 0o755)
	notExec := write("noexec.cgi", "#!/bin/sh\necho hi\n", 0o644)
	badInterp := write("badinterp.cgi", "#!/nonexistent/interpreter\n", 0o755)
	tests := []struct {
		name       string
		argv       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"missing program is 127", []string{"/nonexistent/prog"}, 127, "", "cgibridge-exec: /nonexistent/prog: not found\n"},
		{"bare name not in PATH is 127", []string{"no-such-prog-cgibridge"}, 127, "", "cgibridge-exec: no-such-prog-cgibridge: not found in PATH\n"},
		{"bare name found in PATH", []string{"echo", "hi"}, 0, "hi\n", ""},
		{"no shebang is 126 with a hint", []string{noShebang}, 126, "",
			"cgibridge-exec: " + noShebang + ": no #! line — add one or map the extension with --interpreter\n"},
		{"not executable is 126", []string{notExec}, 126, "", "permission denied"},
		{"missing interpreter is 126", []string{badInterp}, 126, "", "interpreter named on its #! line was not found"},
		{"environment passes through unchanged", []string{"/usr/bin/env"}, 0, strings.Join(testEnv, "\n") + "\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runShim(t, testBinary(t), Limits{}, tc.argv, nil)
			if r.code != tc.wantCode || r.stdout != tc.wantStdout || !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d stdout %q stderr containing %q",
					r.code, r.stdout, r.stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			if strings.Count(r.stderr, "\n") > 1 {
				t.Errorf("stderr has more than one line: %q", r.stderr)
			}
		})
	}
}

func TestShimRejectsBadInvocationWith126(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(testBinary(t), ShimArg, "cpu=oops", "/bin/true", "--", "/bin/true")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 126 || !strings.HasPrefix(stderr.String(), "cgibridge-exec: bad invocation") {
		t.Fatalf("err %v stderr %q; want exit 126 and a bad invocation line", err, stderr.String())
	}
}
