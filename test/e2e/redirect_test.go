// This file holds the redirect regression test: a Status with a local
// Location is a client redirect, a local Location alone an internal one.
package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatusWithLocalLocationRedirectsClient pins RFC 3875 6.2.2/6.2.4 through
// a real nginx: a response with a Status of its own and a local Location —
// what Perl CGI.pm's redirect('/x') prints — reaches the client as that
// status with that Location, while a Location alone is still served in
// place as an internal (local) redirect. Before the fix the bridge treated
// any local path as an internal redirect: CGI.pm's redirect ran the target
// and the browser got its 200, never the 302.
func TestStatusWithLocalLocationRedirectsClient(t *testing.T) {
	if err := exec.Command("perl", "-MCGI", "-e", "1").Run(); err != nil {
		t.Fatalf("perl with CGI.pm not installed (%v): apt-get install perl libcgi-pm-perl", err)
	}
	tr := newTree(t)
	// The target leaves no doubt when it is served in place of the redirect.
	writeFile(t, filepath.Join(tr.Root, "target.sh"),
		"#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ntarget ran\\n'\n", 0o755)
	writeFile(t, filepath.Join(tr.Root, "cgipm-redirect.pl"),
		"#!/usr/bin/perl\nuse strict;\nuse CGI;\nprint CGI->new->redirect('/cgi-bin/target.sh');\n", 0o755)
	writeFile(t, filepath.Join(tr.Root, "status302.sh"),
		"#!/bin/sh\nprintf 'Status: 302\\r\\nLocation: /x\\r\\n\\r\\n'\n", 0o755)
	writeFile(t, filepath.Join(tr.Root, "location-only.sh"),
		"#!/bin/sh\nprintf 'Location: /cgi-bin/target.sh\\r\\n\\r\\n'\n", 0o755)
	ngx := stack(t, tr, &upstream{})
	base := ngx.URL
	t.Cleanup(client.CloseIdleConnections) // none left open to this nginx

	// nginx makes a relative Location absolute (absolute_redirect on, the
	// default); either form names the same path.
	locationIs := func(got, path string) bool { return got == path || got == base+path }

	for _, tc := range []struct{ script, location string }{
		{"cgipm-redirect.pl", "/cgi-bin/target.sh"},
		{"status302.sh", "/x"},
	} {
		t.Run(tc.script, func(t *testing.T) {
			r := get(t, base+"/cgi-bin/"+tc.script)
			if r.Status != 302 || !locationIs(r.Header.Get("Location"), tc.location) {
				t.Errorf("status %d Location %q, want 302 %s; body:\n%s", r.Status, r.Header.Get("Location"), tc.location, r.Body)
			}
			if strings.Contains(r.Body, "target ran") {
				t.Errorf("the redirect's target was served in place: %q", r.Body)
			}
		})
	}
	t.Run("location-only.sh", func(t *testing.T) {
		r := wantStatusBody(t, get(t, base+"/cgi-bin/location-only.sh"), 200, "target ran")
		if loc := r.Header.Get("Location"); loc != "" {
			t.Errorf("internal redirect leaked Location %q to the client", loc)
		}
	})
}
