// This file tests owner mode's checks, one refusal each, with files chowned to nobody.

package sandbox

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nobodyUID = 65534

func TestOwnerIdentityChecks(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name      string
		setup     func(t *testing.T, root, script string) string // returns the path to check
		minUID    uint32
		allowRoot bool
		wantErr   string // "" means nobody's identity is expected
	}{
		{name: "good script runs as its owner", setup: keep},
		{name: "script in subdirectory", setup: func(t *testing.T, root, _ string) string {
			sub := filepath.Join(root, "sub")
			mkdir(t, sub, nobodyUID, 0o755)
			return writeScript(t, filepath.Join(sub, "s.cgi"), nobodyUID, 0o755)
		}},
		{name: "root-owned script refused", setup: chown(0), wantErr: "owned by root"},
		{name: "root-owned script allowed with allowRoot", setup: chown(0), allowRoot: true, minUID: 1000, wantErr: "root-ok"},
		{name: "uid below minimum refused", setup: keep, minUID: 70000, wantErr: "below the minimum uid 70000"},
		{name: "uid at minimum accepted", setup: keep, minUID: nobodyUID},
		{name: "group-writable script refused", setup: chmod(0o775), wantErr: "writable by group or others"},
		{name: "world-writable script refused", setup: chmod(0o757), wantErr: "writable by group or others"},
		{name: "setuid script refused", setup: chmod(0o755 | os.ModeSetuid), wantErr: "setuid or setgid"},
		{name: "setgid script refused", setup: chmod(0o755 | os.ModeSetgid), wantErr: "setuid or setgid"},
		{name: "symlink refused", setup: func(t *testing.T, root, script string) string {
			link := filepath.Join(root, "link.cgi")
			if err := os.Symlink(script, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, wantErr: "not a regular file"},
		{name: "directory refused", setup: func(t *testing.T, root, _ string) string {
			d := filepath.Join(root, "d")
			mkdir(t, d, nobodyUID, 0o755)
			return d
		}, wantErr: "not a regular file"},
		{name: "owner without passwd entry refused", setup: chown(4000003), wantErr: "no passwd entry"},
		{name: "group-writable root refused", setup: func(t *testing.T, root, script string) string {
			chmodPath(t, root, 0o775)
			return script
		}, wantErr: "directory is writable by group or others"},
		{name: "world-writable subdirectory refused", setup: func(t *testing.T, root, _ string) string {
			sub := filepath.Join(root, "sub")
			mkdir(t, sub, nobodyUID, 0o757)
			return writeScript(t, filepath.Join(sub, "s.cgi"), nobodyUID, 0o755)
		}, wantErr: "directory is writable by group or others"},
		{name: "subdirectory of another user refused", setup: func(t *testing.T, root, _ string) string {
			sub := filepath.Join(root, "sub")
			mkdir(t, sub, 1234, 0o755)
			return writeScript(t, filepath.Join(sub, "s.cgi"), nobodyUID, 0o755)
		}, wantErr: "owned by uid 1234, neither the script's owner 65534 nor root"},
		{name: "root-owned directories accepted", setup: func(t *testing.T, root, _ string) string {
			chownPath(t, root, 0)
			sub := filepath.Join(root, "sub")
			mkdir(t, sub, 0, 0o755)
			return writeScript(t, filepath.Join(sub, "s.cgi"), nobodyUID, 0o755)
		}},
		{name: "script outside root refused", setup: func(t *testing.T, root, _ string) string {
			other := t.TempDir()
			chownPath(t, other, nobodyUID)
			chmodPath(t, other, 0o755)
			return writeScript(t, filepath.Join(other, "s.cgi"), nobodyUID, 0o755)
		}, wantErr: "outside the root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			chownPath(t, root, nobodyUID)
			chmodPath(t, root, 0o755)
			script := writeScript(t, filepath.Join(root, "s.cgi"), nobodyUID, 0o755)
			path := tc.setup(t, root, script)

			id, err := OwnerIdentity(root, path, tc.minUID, tc.allowRoot)
			switch tc.wantErr {
			case "":
				if err != nil {
					t.Fatalf("OwnerIdentity: %v", err)
				}
				if id.UID != nobodyUID || id.GID != 65534 || id.Name != "nobody" {
					t.Errorf("identity %+v, want nobody", id)
				}
			case "root-ok":
				if err != nil || id.UID != 0 {
					t.Fatalf("OwnerIdentity = %v, %v; want root", id, err)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("OwnerIdentity = %v, %v; want error containing %q", id, err, tc.wantErr)
				}
				if !errors.Is(err, ErrRefused) {
					t.Errorf("error %v does not wrap ErrRefused", err)
				}
			}
		})
	}
}

func TestOwnerIdentityMissingFileIsNotExistNotRefused(t *testing.T) {
	root := t.TempDir()
	_, err := OwnerIdentity(root, filepath.Join(root, "gone.cgi"), 0, false)
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v; want fs.ErrNotExist and not ErrRefused", err)
	}
}

func keep(_ *testing.T, _, script string) string { return script }

// chown gives the script to uid and the root to root, so only the script's owner matters.
func chown(uid int) func(*testing.T, string, string) string {
	return func(t *testing.T, root, script string) string {
		chownPath(t, root, 0)
		chownPath(t, script, uid)
		chmodPath(t, script, 0o755)
		return script
	}
}

func chmod(mode os.FileMode) func(*testing.T, string, string) string {
	return func(t *testing.T, _, script string) string {
		chmodPath(t, script, mode)
		return script
	}
}

func writeScript(t *testing.T, path string, uid int, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho ok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownPath(t, path, uid)
	chmodPath(t, path, mode)
	return path
}

func mkdir(t *testing.T, path string, uid int, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	chownPath(t, path, uid)
	chmodPath(t, path, mode)
}

func chownPath(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// chmodPath sets the mode after any chown, which clears setuid bits.
func chmodPath(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
