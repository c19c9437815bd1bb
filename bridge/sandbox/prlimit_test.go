package sandbox

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

func TestWrapPrlimitSetsTheSameLimitsAsTheShim(t *testing.T) {
	p := FindPrlimit()
	if p == "" {
		t.Fatal("prlimit(1) not found: install util-linux")
	}
	l := Limits{CPUSeconds: 11, AddressSpace: 1 << 30, OpenFiles: 50, Processes: 4000, FileSize: 1 << 20}
	argv := WrapPrlimit(p, l, []string{"/bin/cat", "/proc/self/limits"})
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, tc := range []struct{ row, soft, hard string }{
		{"Max cpu time", "11", "12"},
		{"Max address space", strconv.Itoa(1 << 30), strconv.Itoa(1 << 30)},
		{"Max open files", "50", "50"},
		{"Max processes", "4000", "4000"},
		{"Max file size", strconv.Itoa(1 << 20), strconv.Itoa(1 << 20)},
	} {
		m := regexp.MustCompile(`(?m)^` + tc.row + `\s+(\S+)\s+(\S+)`).FindStringSubmatch(string(out))
		if m == nil || m[1] != tc.soft || m[2] != tc.hard {
			t.Errorf("%s: got %q, want soft %s hard %s", tc.row, m, tc.soft, tc.hard)
		}
	}
}

func TestWrapPrlimitOnlyNamesSetLimits(t *testing.T) {
	got := WrapPrlimit("/usr/bin/prlimit", Limits{OpenFiles: 16}, []string{"/x", "a"})
	want := []string{"/usr/bin/prlimit", "--nofile=16:16", "--", "/x", "a"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
