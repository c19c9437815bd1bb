// This file holds the rule for links installed by packages: Debian puts its
// CGI programs in /usr/lib/cgi-bin as symlinks into /usr/bin and /usr/share
// (mapserv -> ../../bin/mapserv, gitweb.cgi -> ../../share/gitweb/gitweb.cgi,
// php -> /etc/alternatives/php-cgi-bin). Links out of the root stay refused
// by default: a link to /usr/bin/id must never run. With --allow-packaged-links
// a link is followed when only root could have made it and what it leads to —
// Apache's SymLinksIfOwnerMatch, with root as the only owner that matches.

package cgienv

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinkHops bounds a chain of links, as the kernel's 40.
const maxLinkHops = 40

// packagedLink reports whether link (a path in the root) is a symlink that,
// hop by hop, leads to target with every link on the way and target itself
// owned by root and writable by root alone, and so is every directory
// above each of them outside the root.
func packagedLink(link, target string) bool {
	cur := link
	for hop := 0; hop < maxLinkHops; hop++ {
		fi, err := os.Lstat(cur)
		if err != nil || !rootOnly(fi) {
			return false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			// The end of the chain: the file itself, which must be what the
			// walk resolved, and the directories above it.
			real, err := filepath.EvalSymlinks(cur)
			return err == nil && real == target && rootOnlyDirs(filepath.Dir(real)) &&
				(hop == 0 || rootOnlyPath(filepath.Dir(cur)))
		}
		// The root's own directories are the operator's choice; anyone
		// who may write there could replace root's link only with one of
		// their own, which fails the owner check. Past the root, a link
		// counts only where root alone could have put it.
		dir, err := filepath.EvalSymlinks(filepath.Dir(cur))
		if err != nil || hop > 0 && !(rootOnlyDirs(dir) && rootOnlyPath(filepath.Dir(cur))) {
			return false
		}
		to, err := os.Readlink(cur)
		if err != nil {
			return false
		}
		if !filepath.IsAbs(to) {
			to = filepath.Join(dir, to)
		}
		cur = filepath.Clean(to)
	}
	return false
}

// rootOnly: owned by root and not writable by group or others (a symlink's
// own mode is always 0777 and means nothing: only its owner counts).
func rootOnly(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 {
		return false
	}
	return fi.Mode()&os.ModeSymlink != 0 || fi.Mode().Perm()&0o022 == 0
}

// rootOnlyDirs: dir (symlinks resolved) and every directory above it are
// rootOnly.
func rootOnlyDirs(dir string) bool {
	for {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || !rootOnly(fi) {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// rootOnlyPath: every component of the lexical path dir is rootOnly — a
// directory, or a symlink owned by root (whose own directory is an earlier
// component). A link on the way that another user owns would let that
// user choose where the path leads, whatever the resolved directories are.
func rootOnlyPath(dir string) bool {
	p := "/"
	for _, elem := range strings.Split(strings.TrimPrefix(filepath.Clean(dir), "/"), "/") {
		if elem == "" {
			continue
		}
		p = filepath.Join(p, elem)
		fi, err := os.Lstat(p)
		if err != nil || !rootOnly(fi) {
			return false
		}
	}
	return true
}
