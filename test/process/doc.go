// Package process tests how the cgibridge binary treats the programs it runs and
// the sockets it serves on: timeouts, aborts, grandchildren, slot limits, leaks,
// inherited listeners (spawn-fcgi, systemd) and shutdown. Every test talks raw
// FastCGI to a real `cgibridge serve` process over a unix socket; the scripts it
// runs live in testdata/.
package process
