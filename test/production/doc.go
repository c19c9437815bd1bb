// Package production holds end-to-end tests of the features an operator relies on
// to run cgibridge in production: privilege separation, resource limits, request
// caps, access and slow-request logs, the status endpoint, and SIGHUP reloads.
// Each test starts the built binary through test/harness and talks to it over its
// unix socket the way nginx does, or over HTTP where the operator would.
package production
