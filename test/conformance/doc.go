// Package conformance holds the raw-protocol FastCGI conformance tests of
// cgibridge: a client that speaks like nginx and like an attacker drives an
// in-process bridge.Server and checks the records it gets back. The package
// has no code of its own; everything is in its _test.go files.
package conformance
