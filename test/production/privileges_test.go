// This file tests point 1 of "Run it in production": who the bridge and its
// programs run as — --user, the safe default of nobody, --allow-root, and
// --owner-mode with its suexec-like refusals.

package production

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cgibridge/cgibridge/test/harness"
)

const idScript = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nid -u\n"

// requireRoot fails the test when not run as root: CI and this machine run as
// root, and privilege tests mean nothing otherwise.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test must run as root (euid %d): it checks switching users", os.Geteuid())
	}
}

func TestProgramsRunAsConfiguredIdentity(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name          string
		args          []string
		wantProgUID   int
		wantBridgeUID int // effective uid of the bridge itself once serving
	}{
		{"user nobody drops bridge and programs", []string{"--user", "nobody"}, harness.NobodyUID, harness.NobodyUID},
		{"root without user defaults to nobody", nil, harness.NobodyUID, harness.NobodyUID},
		{"allow-root runs programs as root", []string{"--allow-root"}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := scriptDir(t)
			writeScript(t, dir, "id.cgi", idScript)
			b := harness.StartBridge(t, append([]string{"--root", dir}, tc.args...))
			res := do(t, b.Socket, req{Dir: dir, Script: "id.cgi"})
			if res.Status != 200 {
				t.Fatalf("status %d, body %q", res.Status, res.Body)
			}
			if got := strings.TrimSpace(res.Body); got != strconv.Itoa(tc.wantProgUID) {
				t.Errorf("program's id -u = %q, want %d", got, tc.wantProgUID)
			}
			// The socket accepted before the request, so any drop has happened.
			uids := procUID(t, b.PID())
			for i, u := range uids {
				if u != tc.wantBridgeUID {
					t.Errorf("bridge uid #%d (real, effective, saved, fs) = %d, want %d (all %v)", i, u, tc.wantBridgeUID, uids)
				}
			}
		})
	}
}

// addUser creates a system user for the test and removes it afterwards.
func addUser(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	_ = exec.Command("userdel", name).Run() // left over from an interrupted run
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

func TestOwnerModeRunsEachScriptAsItsOwner(t *testing.T) {
	requireRoot(t)
	uid1, gid1 := addUser(t, "cgbtest1")
	uid2, gid2 := addUser(t, "cgbtest2")

	dir := scriptDir(t) // root-owned 0755: an acceptable parent for any owner
	own := func(name string, uid, gid int, mode os.FileMode) {
		t.Helper()
		p := writeScript(t, dir, name, idScript)
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	own("one.cgi", uid1, gid1, 0o755)
	own("two.cgi", uid2, gid2, 0o755)
	own("groupw.cgi", uid1, gid1, 0o775)
	own("worldw.cgi", uid1, gid1, 0o757)
	own("rootowned.cgi", 0, 0, 0o755)
	// A directory anyone may write to: a script in it could be swapped by anyone.
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	own("open/in-open-dir.cgi", uid1, gid1, 0o755)

	b := harness.StartBridge(t, []string{"--root", dir, "--owner-mode", "--min-uid", "100"})

	tests := []struct {
		script     string
		wantStatus int
		wantUID    int    // for 200
		wantReason string // in the bridge's log, for 403
	}{
		{"one.cgi", 200, uid1, ""},
		{"two.cgi", 200, uid2, ""},
		{"groupw.cgi", 403, 0, "writable by group or others"},
		{"worldw.cgi", 403, 0, "writable by group or others"},
		{"open/in-open-dir.cgi", 403, 0, "directory is writable by group or others"},
		{"rootowned.cgi", 403, 0, "is owned by root"},
	}
	for _, tc := range tests {
		t.Run(tc.script, func(t *testing.T) {
			res := do(t, b.Socket, req{Dir: dir, Script: tc.script})
			if res.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", res.Status, tc.wantStatus, res.Body)
			}
			if tc.wantStatus == 200 {
				if got := strings.TrimSpace(res.Body); got != strconv.Itoa(tc.wantUID) {
					t.Errorf("id -u = %q, want %d (the file's owner)", got, tc.wantUID)
				}
				return
			}
			want := filepath.Join(dir, tc.script)
			if _, err := b.WaitLogLine(3*time.Second, "refused", want, tc.wantReason); err != nil {
				t.Errorf("no log line explaining the refusal: %v", err)
			}
		})
	}
}
