// This file tests the cgroup v2 support: the parsers always, and the real thing when
// this machine has a writable cgroup v2 hierarchy.

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseCgroup2MountsFindsWholeHierarchies(t *testing.T) {
	tests := []struct {
		name, mountinfo string
		want            []string
	}{
		{"unified", "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", []string{"/sys/fs/cgroup"}},
		{"hybrid", "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n" +
			"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n", []string{"/sys/fs/cgroup/unified"}},
		{"v1 only", "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", nil},
		{"optional fields before separator", "30 23 0:26 / /sys/fs/cgroup rw shared:4 master:1 - cgroup2 cgroup2 rw\n", []string{"/sys/fs/cgroup"}},
		{"bind mount of a subtree skipped", "50 23 0:26 /sub /mnt/cg rw - cgroup2 cgroup2 rw\n", nil},
		{"escaped space in mount point", `60 23 0:26 / /mnt/my\040cg rw - cgroup2 cgroup2 rw` + "\n", []string{"/mnt/my cg"}},
		{"garbage line", "nonsense\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCgroup2Mounts(strings.NewReader(tc.mountinfo))
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseOwnCgroupPicksV2Entry(t *testing.T) {
	tests := []struct{ name, in, want, wantErr string }{
		{"unified", "0::/system.slice/cgibridge.service\n", "/system.slice/cgibridge.service", ""},
		{"hybrid", "4:memory:/x\n1:name=systemd:/y\n0::/\n", "/", ""},
		{"v1 only", "4:memory:/x\n", "", "no cgroup v2 entry"},
		{"relative path", "0::oops\n", "", "unexpected path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOwnCgroup(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestValidCgroupNameRefusesEscapesAndInterfaceNames(t *testing.T) {
	for name, want := range map[string]bool{
		"req-1": true, "A_b9": true, strings.Repeat("a", 64): true,
		"": false, ".": false, "..": false, "a/b": false, "memory.max": false,
		"cgroup.procs": false, strings.Repeat("a", 65): false, "a b": false,
	} {
		if got := validCgroupName(name); got != want {
			t.Errorf("validCgroupName(%q) = %v, want %v", name, got, want)
		}
	}
}

// writableCgroup2 says where a writable cgroup v2 hierarchy is, or why there is none,
// without using the code under test.
func writableCgroup2() (string, string) {
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(m, "cgroup.controllers")); err != nil {
			continue
		}
		if err := unix.Access(m, unix.W_OK); err != nil {
			return "", fmt.Sprintf("cgroup v2 at %s is not writable: %v", m, err)
		}
		return m, ""
	}
	return "", "no cgroup v2 hierarchy (no cgroup.controllers under /sys/fs/cgroup or /sys/fs/cgroup/unified)"
}

func openTestParent(t *testing.T) *CgroupParent {
	t.Helper()
	if _, why := writableCgroup2(); why != "" {
		t.Skip(why)
	}
	p, err := OpenCgroupParent(fmt.Sprintf("cgibridge-test-%d", os.Getpid()))
	if err != nil {
		t.Fatalf("OpenCgroupParent on a machine with writable cgroup v2: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Remove(); err != nil {
			t.Errorf("remove parent: %v", err)
		}
	})
	return p
}

func TestCgroupChildHoldsProcessAndCleanupKillsLeftovers(t *testing.T) {
	p := openTestParent(t)
	mount, _ := writableCgroup2()
	fd, cleanup, err := p.NewChild("req-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cleanup() })
	dir := filepath.Join(p.Path(), "req-1")

	out := createFile(t, filepath.Join(t.TempDir(), "out"))
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & echo $!")
	cmd.Stdout = out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setpgid: true}
	if err := cmd.Run(); err != nil {
		t.Fatalf("run in cgroup: %v", err)
	}
	leftover, err := strconv.Atoi(strings.TrimSpace(readAll(t, out)))
	if err != nil {
		t.Fatalf("leftover pid: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(leftover, syscall.SIGKILL) })
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", leftover))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0::" + strings.TrimPrefix(dir, mount) + "\n"; !strings.Contains(string(b), want) {
		t.Fatalf("leftover's cgroups %q lack %q", b, want)
	}

	if err := cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup dir still there after cleanup: %v", err)
	}
	if alive(leftover) {
		t.Errorf("leftover process %d survived cleanup", leftover)
	}
	if err := cleanup(); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		if _, rest, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(rest, "Z") {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestCgroupChildLimitsOrRefusesWithoutController(t *testing.T) {
	p := openTestParent(t)
	tests := []struct {
		controller, file string
		mem, pids        uint64
		want             string
	}{
		{"memory", "memory.max", 64 << 20, 0, strconv.Itoa(64 << 20)},
		{"pids", "pids.max", 0, 17, "17"},
	}
	for _, tc := range tests {
		t.Run(tc.controller, func(t *testing.T) {
			fd, cleanup, err := p.NewChild("lim-"+tc.controller, tc.mem, tc.pids)
			if !p.Has(tc.controller) {
				if err == nil || !strings.Contains(err.Error(), tc.controller+" controller is not enabled") {
					t.Fatalf("without the %s controller: fd %d err %v; want a refusal", tc.controller, fd, err)
				}
				if _, serr := os.Stat(filepath.Join(p.Path(), "lim-"+tc.controller)); !errors.Is(serr, os.ErrNotExist) {
					t.Errorf("refused child left a directory behind: %v", serr)
				}
				t.Logf("%s controller not available under %s: refusal checked", tc.controller, p.Path())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			b, err := os.ReadFile(filepath.Join(p.Path(), "lim-"+tc.controller, tc.file))
			if err != nil || strings.TrimSpace(string(b)) != tc.want {
				t.Errorf("%s = %q, %v; want %s", tc.file, b, err, tc.want)
			}
		})
	}
}

func TestCgroupNewChildRefusesBadNameAndDuplicate(t *testing.T) {
	p := openTestParent(t)
	if _, _, err := p.NewChild("../escape", 0, 0); err == nil {
		t.Error("NewChild accepted ../escape")
	}
	_, cleanup, err := p.NewChild("dup", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if _, _, err := p.NewChild("dup", 0, 0); !errors.Is(err, unix.EEXIST) {
		t.Errorf("second NewChild(dup) err = %v, want EEXIST", err)
	}
}

func TestOpenCgroupParentRefusesHierarchyRoot(t *testing.T) {
	if _, why := writableCgroup2(); why != "" {
		t.Skip(why)
	}
	for _, dir := range []string{"/", "/..", "../../../../../../.."} {
		if p, err := OpenCgroupParent(dir); err == nil {
			t.Errorf("OpenCgroupParent(%q) = %s, want a refusal", dir, p.Path())
		}
	}
}

// FuzzParseCgroup2Mounts feeds arbitrary mountinfo text: no panic, and never more
// mounts found than lines that name cgroup2.
func FuzzParseCgroup2Mounts(f *testing.F) {
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	f.Add(`60 23 0:26 / /mnt/my\040cg rw - cgroup2 cgroup2 rw` + "\n")
	f.Add("1 2 3 / x - cgroup2\n - \n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseCgroup2Mounts(strings.NewReader(s))
		if err != nil {
			return // bufio.ErrTooLong on a huge line is fine
		}
		if len(got) > strings.Count(s, "cgroup2") {
			t.Fatalf("found %d mounts in text naming cgroup2 %d times", len(got), strings.Count(s, "cgroup2"))
		}
	})
}
