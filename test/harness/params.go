// This file holds the standard nginx FastCGI parameter set, inlined so test configs
// do not depend on /etc/nginx being present or on which Debian revision wrote it.
package harness

import "strings"

// fastCGIParams is the parameter set Debian's and upstream nginx's fastcgi_params
// file has carried for years. Recent Debian security updates also force
// HTTP_HOST to $host; that is left out so the client's own Host header (with its
// port) reaches the script as it does on most installed systems.
var fastCGIParams = [][2]string{
	{"QUERY_STRING", "$query_string"},
	{"REQUEST_METHOD", "$request_method"},
	{"CONTENT_TYPE", "$content_type"},
	{"CONTENT_LENGTH", "$content_length"},
	{"SCRIPT_NAME", "$fastcgi_script_name"},
	{"REQUEST_URI", "$request_uri"},
	{"DOCUMENT_URI", "$document_uri"},
	{"DOCUMENT_ROOT", "$document_root"},
	{"SERVER_PROTOCOL", "$server_protocol"},
	{"REQUEST_SCHEME", "$scheme"},
	{"HTTPS", "$https if_not_empty"},
	{"GATEWAY_INTERFACE", "CGI/1.1"},
	{"SERVER_SOFTWARE", "nginx/$nginx_version"},
	{"REMOTE_ADDR", "$remote_addr"},
	{"REMOTE_PORT", "$remote_port"},
	{"REMOTE_USER", "$remote_user"},
	{"SERVER_ADDR", "$server_addr"},
	{"SERVER_PORT", "$server_port"},
	{"SERVER_NAME", "$server_name"},
	// php-cgi built with force-cgi-redirect refuses to run without it.
	{"REDIRECT_STATUS", "200"},
}

// FastCGIParams returns the standard set of `fastcgi_param` lines (what
// `include fastcgi_params;` gives on Debian), one per line, for pasting into a
// location block. It sets no SCRIPT_FILENAME: each config chooses its own.
func FastCGIParams() string {
	var b strings.Builder
	for _, p := range fastCGIParams {
		b.WriteString("fastcgi_param ")
		b.WriteString(p[0])
		b.WriteString(" ")
		b.WriteString(p[1])
		b.WriteString(";\n")
	}
	return b.String()
}
