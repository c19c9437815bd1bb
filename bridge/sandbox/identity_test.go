// This file tests identity lookup and dropping privileges (in a re-executed child).

package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// helperDropArg makes the test binary drop to nobody and report, instead of testing.
const helperDropArg = "__sandbox-test-drop"

// TestMain lets the test binary stand in for cgibridge: as the exec shim, or as a
// process that drops its privileges (never the test process itself).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case ShimArg:
			ShimMain(os.Args)
		case helperDropArg:
			os.Exit(dropHelper())
		}
	}
	os.Exit(m.Run())
}

// dropHelper drops to nobody and prints what a test must check.
func dropHelper() int {
	id, err := LookupIdentity("nobody", "")
	if err != nil {
		fmt.Println("lookup:", err)
		return 1
	}
	if err := DropPrivileges(id); err != nil {
		fmt.Println("drop:", err)
		return 1
	}
	fmt.Printf("uid=%d euid=%d gid=%d\n", os.Getuid(), os.Geteuid(), os.Getgid())
	if err := syscall.Setuid(0); err != nil {
		fmt.Println("setuid0=refused")
	} else {
		fmt.Println("setuid0=ALLOWED")
	}
	// Every thread must have switched, not only the one that made the call.
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, st := range tasks {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "Uid:") && strings.Fields(line)[1] != "65534" {
				fmt.Println("thread still", line)
			}
		}
	}
	return 0
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (the machine and CI run tests as root)")
	}
}

func TestLookupIdentityResolvesNamesNumbersAndRefusesUnknown(t *testing.T) {
	tests := []struct {
		name, user, group string
		wantUID, wantGID  uint32
		wantName          string
		wantErr           string
	}{
		{name: "root by name", user: "root", wantUID: 0, wantGID: 0, wantName: "root"},
		{name: "nobody by name", user: "nobody", wantUID: 65534, wantGID: 65534, wantName: "nobody"},
		{name: "nobody by number", user: "65534", wantUID: 65534, wantGID: 65534, wantName: "nobody"},
		{name: "explicit group name", user: "nobody", group: "root", wantUID: 65534, wantGID: 0, wantName: "nobody"},
		{name: "explicit group number", user: "root", group: "4242", wantUID: 0, wantGID: 4242, wantName: "root"},
		{name: "uid without passwd entry needs group", user: "4000001", wantErr: "no passwd entry"},
		{name: "uid without passwd entry and group", user: "4000001", group: "4000002", wantUID: 4000001, wantGID: 4000002, wantName: "4000001"},
		{name: "unknown user", user: "no-such-user-cgibridge", wantErr: `unknown user "no-such-user-cgibridge"`},
		{name: "unknown group", user: "nobody", group: "no-such-group-cgibridge", wantErr: `unknown group "no-such-group-cgibridge"`},
		{name: "empty user", user: "", wantErr: "empty user"},
		{name: "reserved uid", user: "4294967295", wantErr: "unknown user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := LookupIdentity(tc.user, tc.group)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LookupIdentity(%q, %q) = %v, %v; want error containing %q", tc.user, tc.group, id, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LookupIdentity(%q, %q): %v", tc.user, tc.group, err)
			}
			if id.UID != tc.wantUID || id.GID != tc.wantGID || id.Name != tc.wantName {
				t.Errorf("got %+v; want uid %d gid %d name %q", id, tc.wantUID, tc.wantGID, tc.wantName)
			}
		})
	}
}

func TestLookupIdentityIncludesSupplementaryGroups(t *testing.T) {
	id, err := LookupIdentity("root", "")
	if err != nil {
		t.Fatal(err)
	}
	// root is a member of its primary group 0 in every group database.
	if !slices.Contains(id.Groups, 0) {
		t.Errorf("root's groups %v lack group 0", id.Groups)
	}
	if !slices.IsSorted(id.Groups) {
		t.Errorf("groups %v are not sorted", id.Groups)
	}
}

func TestCredentialCopiesIdentityAndNilMeansSelf(t *testing.T) {
	id := &Identity{UID: 7, GID: 8, Groups: []uint32{8, 9}, Name: "x"}
	c := id.Credential()
	if c.Uid != 7 || c.Gid != 8 || !slices.Equal(c.Groups, []uint32{8, 9}) || c.NoSetGroups {
		t.Errorf("Credential() = %+v", c)
	}
	c.Groups[0] = 99
	if id.Groups[0] != 8 {
		t.Error("Credential shares the Groups slice with the identity")
	}
	var none *Identity
	if none.Credential() != nil {
		t.Error("nil identity should give a nil credential")
	}
}

func TestDropPrivilegesRefusesRootAndNil(t *testing.T) {
	// Both are refused before any system call, so this is safe in the test process.
	for _, id := range []*Identity{nil, {UID: 0, GID: 0, Name: "root"}} {
		if err := DropPrivileges(id); err == nil {
			t.Errorf("DropPrivileges(%v) succeeded", id)
		}
	}
}

func TestDropPrivilegesSwitchesAllThreadsAndCannotRegainRoot(t *testing.T) {
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(self, helperDropArg)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"uid=65534 euid=65534 gid=65534", "setuid0=refused"} {
		if !strings.Contains(got, want) {
			t.Errorf("helper output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "thread still") || strings.Contains(got, "ALLOWED") {
		t.Errorf("privileges not fully dropped:\n%s", got)
	}
}
