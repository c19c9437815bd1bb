// This file tests the /proc readers against real processes and the stat parser
// against the awkward command names the kernel allows.
package harness

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{name: "plain", in: "42 (sleep) S 7 42 42 0 -1 4194304 90 0 0 0",
			want: procStat{PID: 42, Comm: "sleep", State: 'S', PPID: 7}},
		{name: "comm with spaces and parens", in: "9 (a) b (c)) Z 1 9 9 0",
			want: procStat{PID: 9, Comm: "a) b (c)", State: 'Z', PPID: 1}},
		{name: "init has ppid 0", in: "1 (init) S 0 1 1 0",
			want: procStat{PID: 1, Comm: "init", State: 'S', PPID: 0}},
		{name: "missing ppid", in: "5 (x) R", wantErr: true},
		{name: "no comm", in: "5 x R 1", wantErr: true},
		{name: "bad pid", in: "x5 (x) R 1", wantErr: true},
		{name: "negative ppid", in: "5 (x) R -1", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseStat(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (sleep) S 7 42 42 0 -1 4194304 90 0 0 0"))
	f.Add([]byte("9 (a) b (c)) Z 1 9 9 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStat(data)
		if err != nil {
			return
		}
		if st.PID <= 0 || st.PPID < 0 {
			t.Errorf("parseStat(%q) accepted pid %d ppid %d", data, st.PID, st.PPID)
		}
	})
}

func TestReadStatOfSelf(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() {
		t.Errorf("readStat(self) = %+v, want pid %d ppid %d", st, os.Getpid(), os.Getppid())
	}
}

// startGroup starts argv in its own process group and kills the group on cleanup.
func startGroup(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd
}

func TestChildrenFindsGrandchildren(t *testing.T) {
	// sh -> (sleep, sh -> sleep): three descendants, one of them a grandchild.
	cmd := startGroup(t, exec.Command("sh", "-c", `sleep 30 & sh -c 'sleep 30 & wait' & wait`))
	var kids []int
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if kids, err = Children(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		if len(kids) == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(kids) != 3 {
		t.Fatalf("Children(%d) = %v, want 3 descendants", cmd.Process.Pid, kids)
	}
	if !slices.IsSorted(kids) {
		t.Errorf("Children = %v, want ascending", kids)
	}
	grandchild := false
	for _, k := range kids {
		st, err := readStat(k)
		if err == nil && st.PPID != cmd.Process.Pid {
			grandchild = true
		}
	}
	if !grandchild {
		t.Errorf("Children = %v has no grandchild", kids)
	}
	if got, err := Children(kids[0] + 1_000_000); err != nil || len(got) != 0 {
		t.Errorf("Children of a missing pid = %v, %v; want none", got, err)
	}
}

func TestOpenFDsCountsInheritedDescriptors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := closeInheritedOnExec(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	cmd.ExtraFiles = []*os.File{r, w, r} // fds 3, 4, 5
	startGroup(t, cmd)
	// stdin, stdout, stderr (all /dev/null) plus the three extra. sleep's own
	// start-up briefly opens locale files, so the count is read until it
	// settles rather than once right after exec.
	var got int
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err = OpenFDs(cmd.Process.Pid)
		if (err == nil && got == 6) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || got != 6 {
		t.Errorf("OpenFDs(sleep with 3 extra files) = %d, %v; want 6", got, err)
	}
	if _, err := OpenFDs(-1); err == nil {
		t.Error("OpenFDs(-1) returned no error")
	}
}

func TestCloseInheritedOnExecKeepsStrayDescriptorsFromChildren(t *testing.T) {
	// dup(2) clears close-on-exec, like a descriptor inherited from a shell.
	stray, err := syscall.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(stray)
	childHasStray := func() bool {
		cmd := startGroup(t, exec.Command("sleep", "30"))
		_, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", cmd.Process.Pid, stray))
		return err == nil
	}
	if !childHasStray() {
		t.Fatalf("child did not inherit fd %d before marking: the test cannot see the fix", stray)
	}
	if err := closeInheritedOnExec(); err != nil {
		t.Fatal(err)
	}
	if childHasStray() {
		t.Errorf("child still inherits fd %d after closeInheritedOnExec", stray)
	}
}

func TestWaitGone(t *testing.T) {
	running := startGroup(t, exec.Command("sleep", "30"))
	if err := WaitGone(running.Process.Pid, 50*time.Millisecond); err == nil {
		t.Error("WaitGone on a running process returned nil")
	}
	reaped := exec.Command("true")
	if err := reaped.Run(); err != nil {
		t.Fatal(err)
	}
	// An exited but unreaped child is a zombie, which counts as gone.
	zombie := startGroup(t, exec.Command("true"))
	for _, tt := range []struct {
		name string
		pid  int
	}{
		{"reaped", reaped.Process.Pid},
		{"zombie", zombie.Process.Pid},
	} {
		if err := WaitGone(tt.pid, 5*time.Second); err != nil {
			t.Errorf("WaitGone(%s) = %v, want nil", tt.name, err)
		}
	}
}
