// Package harness starts the pieces of an end-to-end test — the cgibridge binary,
// a throwaway nginx in front of it — and inspects the processes they leave behind.
//
// Every function that can fail has a form that returns an error, so a benchmark or
// a standalone tool can use it; the Start*/Must* forms take a testing.TB, fail the
// test on error, and register their own cleanup.
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// ModulePath is the module whose root RepoRoot looks for.
const ModulePath = "github.com/cgibridge/cgibridge"

// BinaryEnv names an environment variable that, when set, is used as the path of a
// prebuilt cgibridge binary instead of building one (for benchmarking a release build).
const BinaryEnv = "CGIBRIDGE_TEST_BINARY"

// RepoRoot returns the module root: the nearest directory, walking up from the
// working directory (a test's package directory) or failing that from this source
// file, whose go.mod declares ModulePath.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	// The source location still works when the caller runs from elsewhere, as long
	// as the binary was built from this checkout.
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, start := range starts {
		if root, ok := findModuleRoot(start); ok {
			return root, nil
		}
	}
	return "", fmt.Errorf("find module root: no go.mod declaring %s above %q", ModulePath, starts)
}

// findModuleRoot walks up from dir to the directory whose go.mod declares ModulePath.
func findModuleRoot(dir string) (string, bool) {
	want := []byte("module " + ModulePath)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range bytes.Lines(data) {
				if bytes.Equal(bytes.TrimSpace(line), want) {
					return dir, true
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// Binary returns the path of a cgibridge binary built from the module root with a
// plain `go build` (not -race: the race runtime slows every exec a test measures).
// It builds once per process into a temporary directory; RemoveBinary deletes it.
// If BinaryEnv is set, that binary is used as is.
func Binary() (string, error) {
	binaryOnce.Do(func() {
		binaryPath, binaryErr = buildBinary()
	})
	return binaryPath, binaryErr
}

func buildBinary() (string, error) {
	if prebuilt := os.Getenv(BinaryEnv); prebuilt != "" {
		if _, err := exec.LookPath(prebuilt); err != nil {
			return "", fmt.Errorf("use %s=%s: %w", BinaryEnv, prebuilt, err)
		}
		return prebuilt, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("build cgibridge: %w", err)
	}
	goTool, err := goCommand()
	if err != nil {
		return "", fmt.Errorf("build cgibridge: %w", err)
	}
	dir, err := os.MkdirTemp("", "cgibridge-bin-")
	if err != nil {
		return "", fmt.Errorf("build cgibridge: %w", err)
	}
	// Like an installed /usr/bin binary, it must be executable by the users
	// programs run as: the limits shim re-executes it after the switch.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("build cgibridge: %w", err)
	}
	out := filepath.Join(dir, "cgibridge")
	cmd := exec.Command(goTool, "build", "-o", out, ".")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("build cgibridge in %s: %w\n%s", root, err, msg)
	}
	return out, nil
}

// goCommand finds the go tool: the one on PATH, else the one of the running toolchain.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("go tool not found on PATH or at /usr/local/go/bin/go")
	}
	return p, nil
}

// RemoveBinary deletes the directory Binary built into, if it built one. Call it from
// TestMain after m.Run; later calls to Binary in the same process do not rebuild.
func RemoveBinary() error {
	if binaryPath == "" || os.Getenv(BinaryEnv) != "" {
		return nil
	}
	if err := os.RemoveAll(filepath.Dir(binaryPath)); err != nil {
		return fmt.Errorf("remove built cgibridge: %w", err)
	}
	return nil
}

// Main runs a test package's tests and then removes the binary built for
// them: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// NobodyUID is the uid of Debian's nobody, which a root bridge runs programs
// as by default; directories scripts write to are chowned to it.
const NobodyUID = 65534

// SafePath is the PATH for bridges and programs in tests. A developer's PATH
// may name directories under /root that nobody cannot enter (pyenv shims),
// which would make `#!/usr/bin/env python3` fail for reasons that have
// nothing to do with the bridge.
const SafePath = "PATH=/usr/local/bin:/usr/bin:/bin"

// MustBinary is Binary for tests: it fails tb if the build fails.
func MustBinary(tb testing.TB) string {
	tb.Helper()
	p, err := Binary()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
