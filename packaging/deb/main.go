// Command deb builds the Debian package of cgibridge from the checkout:
//
//	go run ./packaging/deb            # writes dist/cgibridge_VERSION_ARCH.deb
//	go run ./packaging/deb -o DIR     # elsewhere
//
// It builds the static binary the README's way (CGO_ENABLED=0, -trimpath,
// -buildvcs, the version stamped with -X main.version), generates the man
// page from that binary (cgibridge man), lays out the tree with the systemd
// units, the configuration (a conffile), the copyright and changelog, and
// the maintainer scripts in files/, and hands it to dpkg-deb
// --root-owner-group. The binary's version is `git describe` of a v* tag,
// or else main.version plus the commit date and hash
// (0.1.0+git20261203.dcc8a78); the package's adds the Debian revision (-1).
// The files' times are the commit's (SOURCE_DATE_EPOCH), so one commit
// gives one package.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed files
var files embed.FS

// Package facts.
const (
	name       = "cgibridge"
	homepage   = "https://github.com/cgibridge/cgibridge"
	section    = "httpd"
	binPath    = "usr/sbin/cgibridge"
	docDir     = "usr/share/doc/cgibridge"
	confPath   = "etc/cgibridge/cgibridge.json"
	unitDir    = "lib/systemd/system"
	manPath    = "usr/share/man/man8/cgibridge.8.gz"
	cgiBinPath = "usr/lib/cgi-bin"
)

const description = `FastCGI server that runs CGI programs (fcgiwrap replacement)
 cgibridge runs CGI programs for nginx (or Apache mod_proxy_fcgi, lighttpd,
 Caddy) over FastCGI, the job of fcgiwrap, without its failures: scripts that
 write before they read their body do not deadlock, every program has a
 timeout and its whole process group is killed, nothing outside the cgi-bin
 root runs, the client's Proxy: header never becomes HTTP_PROXY, output
 streams, and every error says why.
 .
 It is one static binary with systemd socket activation, privilege
 separation, resource limits, a status page with Prometheus metrics, SIGHUP
 reload, and "cgibridge spawn", a spawn-fcgi and multiwatch replacement.`

func main() {
	out := flag.String("o", "dist", "directory to write the .deb to")
	version := flag.String("version", "", "upstream version, as the binary reports it (default: from git)")
	revision := flag.String("revision", "1", "Debian revision: the package's version is VERSION-REVISION")
	flag.Parse()
	deb, err := build(*out, *version, *revision)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging/deb:", err)
		os.Exit(1)
	}
	fmt.Println(deb)
}

// facts are what the build learns from the checkout.
type facts struct {
	// upstream is the version the binary reports; version, the package's:
	// upstream-revision (not native: the Debian changelog is
	// changelog.Debian.gz).
	upstream, version, arch, goarch string
	root                            string
	revision, maintainer            string
	when                            time.Time
	git                             bool
}

func build(outDir, version, revision string) (string, error) {
	f, err := learn(version, revision)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(f.root, outDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp("", "cgibridge-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	tree := filepath.Join(stage, "tree")

	bin := filepath.Join(tree, binPath)
	if err := goBuild(f, bin); err != nil {
		return "", err
	}
	page, err := manPage(f, bin)
	if err != nil {
		return "", err
	}

	put := func(path string, data []byte, mode os.FileMode) error {
		p := filepath.Join(tree, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, mode)
	}
	embedded := func(n string) []byte {
		b, err := files.ReadFile("files/" + n)
		if err != nil {
			panic(err) // the files are compiled in
		}
		return b
	}
	copyright, err := copyrightFile(f, bin)
	if err != nil {
		return "", err
	}
	nginx, err := os.ReadFile(filepath.Join(f.root, "legacy-examples/configs/nginx.conf"))
	if err != nil {
		return "", err
	}
	for _, p := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{manPath, gz(page), 0o644},
		{confPath, embedded("cgibridge.json"), 0o644},
		{unitDir + "/cgibridge.socket", embedded("cgibridge.socket"), 0o644},
		{unitDir + "/cgibridge.service", embedded("cgibridge.service"), 0o644},
		{docDir + "/README.Debian", embedded("README.Debian"), 0o644},
		{docDir + "/copyright", copyright, 0o644},
		{docDir + "/changelog.Debian.gz", gz(changelog(f)), 0o644},
		{docDir + "/examples/nginx.conf", nginx, 0o644},
		{"usr/share/lintian/overrides/cgibridge", embedded("lintian-overrides"), 0o644},
		{"DEBIAN/conffiles", []byte("/" + confPath + "\n"), 0o644},
		{"DEBIAN/postinst", embedded("postinst"), 0o755},
		{"DEBIAN/prerm", embedded("prerm"), 0o755},
		{"DEBIAN/postrm", embedded("postrm"), 0o755},
	} {
		if err := put(p.path, p.data, p.mode); err != nil {
			return "", err
		}
	}
	// Debian's cgi-bin, which other packages share: the configured root
	// exists even where no web server has made it.
	if err := os.MkdirAll(filepath.Join(tree, cgiBinPath), 0o755); err != nil {
		return "", err
	}
	sums, size, err := md5sums(tree)
	if err != nil {
		return "", err
	}
	if err := put("DEBIAN/md5sums", sums, 0o644); err != nil {
		return "", err
	}
	if err := put("DEBIAN/control", control(f, size), 0o644); err != nil {
		return "", err
	}
	if err := normalize(tree, f.when); err != nil {
		return "", err
	}

	deb := filepath.Join(outDir, fmt.Sprintf("%s_%s_%s.deb", name, f.version, f.arch))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, deb)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(f.when.Unix(), 10))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb: %w\n%s", err, msg)
	}
	return deb, nil
}

// learn finds the module root, the version, the architecture and the
// commit.
func learn(version, revision string) (*facts, error) {
	f := &facts{goarch: cmpOr(os.Getenv("GOARCH"), runtime.GOARCH)}
	gomod, err := output(exec.Command("go", "env", "GOMOD"))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return nil, fmt.Errorf("run from the cgibridge checkout (go env GOMOD: %q, %v)", gomod, err)
	}
	f.root = filepath.Dir(gomod)
	arches := map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64", "loong64": "loong64", "mips64le": "mips64el"}
	if f.arch = arches[f.goarch]; f.arch == "" {
		return nil, fmt.Errorf("GOARCH %s: no Debian architecture known", f.goarch)
	}

	git := func(args ...string) (string, error) {
		return output(exec.Command("git", append([]string{"-C", f.root}, args...)...))
	}
	if rev, err := git("rev-parse", "HEAD"); err == nil {
		f.git, f.revision = true, rev
		ct, err := git("log", "-1", "--format=%ct")
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("commit time %q: %w", ct, err)
		}
		f.when = time.Unix(n, 0).UTC()
		f.maintainer, _ = git("log", "-1", "--format=%an <%ae>")
	} else {
		f.when = time.Now().UTC()
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			f.when = time.Unix(n, 0).UTC()
		}
	}
	if f.maintainer == "" {
		f.maintainer = "cgibridge maintainers <cgibridge@localhost>"
	}

	switch {
	case version != "":
		f.upstream = version
	case f.git:
		if tag, err := git("describe", "--tags", "--match", "v[0-9]*"); err == nil {
			// v1.2.0 or v1.2.0-3-gabcdef0, as Debian spells it: 1.2.0+3.gabcdef0.
			v := strings.TrimPrefix(tag, "v")
			if m := regexp.MustCompile(`^(.*)-(\d+)-g([0-9a-f]+)$`).FindStringSubmatch(v); m != nil {
				v = m[1] + "+" + m[2] + ".g" + m[3]
			}
			f.upstream = v
			break
		}
		base, err := sourceVersion(f.root)
		if err != nil {
			return nil, err
		}
		f.upstream = base + "+git" + f.when.Format("20060102") + "." + f.revision[:7]
	default:
		base, err := sourceVersion(f.root)
		if err != nil {
			return nil, err
		}
		f.upstream = base
	}
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(f.upstream) {
		return nil, fmt.Errorf("upstream version %q: want a digit, then letters, digits and . + ~", f.upstream)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9.+~]+$`).MatchString(revision) {
		return nil, fmt.Errorf("-revision %q: want letters, digits and . + ~", revision)
	}
	f.version = f.upstream + "-" + revision
	return f, nil
}

// sourceVersion is main.version as main.go declares it.
func sourceVersion(root string) (string, error) {
	src, err := os.ReadFile(filepath.Join(root, "main.go"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^var version = "([^"]+)"`).FindSubmatch(src)
	if m == nil {
		return "", errors.New(`main.go: no var version = "..."`)
	}
	return string(m[1]), nil
}

// goBuild builds the static binary, as the README's Install section says.
func goBuild(f *facts, out string) error {
	vcs := "-buildvcs=auto"
	if f.git {
		vcs = "-buildvcs=true"
	}
	cmd := exec.Command("go", "build", "-trimpath", vcs,
		"-ldflags", "-s -w -X main.version="+f.upstream, "-o", out, ".")
	cmd.Dir = f.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+f.goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, msg)
	}
	return os.Chmod(out, 0o755)
}

// manPage is cgibridge(8) as the built binary prints it (a binary for this
// machine when the package is for another architecture).
func manPage(f *facts, bin string) ([]byte, error) {
	if f.goarch != runtime.GOARCH {
		host := filepath.Join(filepath.Dir(filepath.Dir(bin)), "cgibridge-host")
		defer os.Remove(host)
		native := *f
		native.goarch = runtime.GOARCH
		if err := goBuild(&native, host); err != nil {
			return nil, err
		}
		bin = host
	}
	cmd := exec.Command(bin, "man")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(f.when.Unix(), 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	page, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cgibridge man: %w\n%s", err, stderr.String())
	}
	if !bytes.HasPrefix(page, []byte(`.\"`)) || !bytes.Contains(page, []byte("\n.TH ")) {
		return nil, fmt.Errorf("cgibridge man printed no man page:\n%.200s", page)
	}
	return page, nil
}

// copyrightFile names the upstream and every Go module linked into the
// binary, with its licence text from the module cache.
func copyrightFile(f *facts, bin string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "cgibridge\n\nSource: %s\nThis package was built from revision %s.\n\n", homepage, cmpOr(f.revision, "(not a git checkout)"))
	fmt.Fprintf(&b, "Copyright: the cgibridge authors.\n")
	if lic := firstLicense(f.root); lic != "" {
		text, err := os.ReadFile(lic)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n%s\n", indentText(text))
	} else {
		fmt.Fprintf(&b, "License: the source repository carries no license file.\n")
	}
	mods, err := output(exec.Command("go", "version", "-m", bin))
	if err != nil {
		return nil, fmt.Errorf("go version -m: %w", err)
	}
	b.WriteString("\nThe binary is statically linked with these Go modules, under their own\nlicenses (the Go standard library: BSD-3-Clause, Copyright The Go Authors):\n")
	sc := bufio.NewScanner(strings.NewReader(mods))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[0] != "dep" && fields[0] != "=>" {
			continue
		}
		path, ver := fields[1], fields[2]
		dir, err := output(exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path+"@"+ver))
		if err != nil || dir == "" {
			fmt.Fprintf(&b, "\n%s %s\n", path, ver)
			continue
		}
		fmt.Fprintf(&b, "\n-- %s %s --\n", path, ver)
		if lic := firstLicense(dir); lic != "" {
			text, err := os.ReadFile(lic)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "%s\n", indentText(text))
		}
	}
	return b.Bytes(), nil
}

func firstLicense(dir string) string {
	for _, n := range []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING", "LICENCE"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return filepath.Join(dir, n)
		}
	}
	return ""
}

func indentText(text []byte) string {
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight("  "+l, " ")
	}
	return strings.Join(lines, "\n")
}

// changelog is the one entry of changelog.Debian for this build.
func changelog(f *facts) []byte {
	what := "Built with go run ./packaging/deb from the checkout."
	if f.revision != "" {
		what = "Built with go run ./packaging/deb from git revision\n    " + f.revision + "."
	}
	return fmt.Appendf(nil, "%s (%s) unstable; urgency=medium\n\n  * %s\n\n -- %s  %s\n",
		name, f.version, what, f.maintainer, f.when.Format(time.RFC1123Z))
}

// control is DEBIAN/control. A static binary depends on nothing.
func control(f *facts, installedKiB int64) []byte {
	return fmt.Appendf(nil, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: %s\nInstalled-Size: %d\nSection: %s\nPriority: optional\nEnhances: nginx, apache2, lighttpd\nHomepage: %s\nDescription: %s\n",
		name, f.version, f.arch, f.maintainer, installedKiB, section, homepage, description)
}

// md5sums lists every file outside DEBIAN, as dpkg expects; it also
// returns the installed size in KiB.
func md5sums(tree string) ([]byte, int64, error) {
	var lines []string
	var kib int64
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		if rel == "DEBIAN" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			kib++
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		kib += (int64(len(data)) + 1023) / 1024
		lines = append(lines, fmt.Sprintf("%x  %s", md5.Sum(data), filepath.ToSlash(rel)))
		return nil
	})
	sort.Strings(lines)
	return []byte(strings.Join(lines, "\n") + "\n"), kib, err
}

// normalize gives directories mode 0755 and every entry the commit's time,
// whatever the umask and the clock.
func normalize(tree string, when time.Time) error {
	return filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := os.Chmod(p, 0o755); err != nil {
				return err
			}
		}
		return os.Chtimes(p, when, when)
	})
}

// gz compresses as gzip -9n: no name, no time.
func gz(data []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func output(cmd *exec.Cmd) (string, error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
