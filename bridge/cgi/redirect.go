// This file holds local redirects (RFC 3875 6.2.2): a response that is only
// a Location with a local path is served by running the new path's program.

package cgi

import (
	"strings"

	"github.com/cgibridge/cgibridge/cgienv"
)

// maxLocalRedirects bounds local redirects per request.
const maxLocalRedirects = 5

// redirectParams rewrites the params for a local redirect: a GET of the new
// path with no body, as RFC 3875 6.2.2 asks of the server.
func redirectParams(params []cgienv.Param, location string) []cgienv.Param {
	path, query, _ := strings.Cut(location, "?")
	docRoot := lastValue(params, "DOCUMENT_ROOT")
	out := make([]cgienv.Param, 0, len(params))
	for _, p := range params {
		switch p.Name {
		case "SCRIPT_FILENAME", "SCRIPT_NAME", "PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING",
			"REQUEST_URI", "DOCUMENT_URI", "REQUEST_METHOD", "CONTENT_LENGTH", "CONTENT_TYPE":
			continue
		}
		out = append(out, p)
	}
	out = append(out,
		cgienv.Param{Name: "REQUEST_METHOD", Value: "GET"},
		cgienv.Param{Name: "SCRIPT_NAME", Value: path},
		cgienv.Param{Name: "QUERY_STRING", Value: query},
		cgienv.Param{Name: "REQUEST_URI", Value: location},
	)
	if docRoot != "" {
		out = append(out, cgienv.Param{Name: "SCRIPT_FILENAME", Value: docRoot + path})
	}
	return out
}

func lastValue(params []cgienv.Param, name string) string {
	for i := len(params) - 1; i >= 0; i-- {
		if params[i].Name == name {
			return params[i].Value
		}
	}
	return ""
}
