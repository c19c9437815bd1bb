// Package install tests what an operator installs: the static binary built
// the README's way, its man page, and the Debian package built by
// `go run ./packaging/deb` — its files, modes and conffiles; installed with
// dpkg into a scratch root (the machine's /usr is not touched), started the
// way its systemd units say (socket activation without systemd, as
// test/process does: the socket bound by the test and passed as fd 3 with
// LISTEN_FDS/LISTEN_PID), serving a real CGI script over FastCGI, reloaded
// and stopped; then removed and purged.
package install
