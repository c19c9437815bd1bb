package warm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Debian's smokeping (package smokeping) ships its web front end as a
// CGI::Fast program, /usr/share/smokeping/smokeping.cgi CONFIG, started by a
// small wrapper (Debian's smokeping.fcgi.dist). It loads CONFIG on its first
// request and, at the end of every request, kill -9s itself when CONFIG's
// mtime is newer than what it loaded (Smokeping::cgi in Smokeping.pm) —
// before CGI::Fast has sent that request's answer.
const smokepingCGI = "/usr/share/smokeping/smokeping.cgi"

const smokepingConfig = `*** General ***
owner    = cgibridge tests
contact  = root@localhost
mailhost = 127.0.0.1
imgcache = %[1]s/cache
imgurl   = /cache
datadir  = %[1]s/data
piddir   = %[1]s/var
cgiurl   = http://127.0.0.1/smokeping.fcgi
smokemail = /etc/smokeping/smokemail
tmail = /etc/smokeping/tmail
display_name = warm smokeping

*** Database ***
step     = 300
pings    = 20
AVERAGE  0.5   1  1008
MIN  0.5 12 4320

*** Presentation ***
template = /etc/smokeping/basepage.html
+ overview
width = 600
height = 50
range = 10h
+ detail
width = 600
height = 200
unison_tolerance = 2
"Last 3 Hours"    3h

*** Probes ***
+ FPing
binary = /usr/bin/fping

*** Targets ***
probe = FPing
menu = Top
title = %[2]s
remark = cgibridge serves this page warm.
+ Local
menu = Local
title = Local machine
++ LocalMachine
menu = Local Machine
title = This host
host = localhost
`

// smokepingBed serves smokeping.fcgi, a wrapper as Debian's, warm.
func smokepingBed(t *testing.T, args ...string) *bed {
	t.Helper()
	need(t, "smokeping", smokepingCGI, "/etc/smokeping/basepage.html")
	return newBed(t, func(b *bed) []string {
		sp := filepath.Join(b.dir, "smokeping")
		for _, d := range []string{"cache", "data", "var"} {
			if err := os.MkdirAll(filepath.Join(sp, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeSmokepingConfig(t, b, "config", "Warm SmokePing")
		own(t, sp)
		return append([]string{"--fastcgi", "smokeping.fcgi", "--fastcgi-procs", "1"}, args...)
	})
}

// writeSmokepingConfig writes smokeping/NAME with the title and points
// smokeping.fcgi at it, replacing the wrapper by mv (a new inode).
func writeSmokepingConfig(t *testing.T, b *bed, name, title string) string {
	t.Helper()
	sp := filepath.Join(b.dir, "smokeping")
	conf := filepath.Join(sp, name)
	writeFile(t, conf, fmt.Sprintf(smokepingConfig, sp, title), 0o644)
	wrapper := filepath.Join(b.root, "smokeping.fcgi")
	writeFile(t, wrapper+".new", "#!/bin/sh\nexec "+smokepingCGI+" "+conf+"\n", 0o755)
	if err := os.Rename(wrapper+".new", wrapper); err != nil {
		t.Fatal(err)
	}
	return conf
}

// TestSmokepingPersists: the main page and a target's page, from one
// smokeping process.
func TestSmokepingPersists(t *testing.T) {
	b := smokepingBed(t)
	url := b.base + "smokeping.fcgi"
	get(t, url, "<title>SmokePing Latency Page for Warm SmokePing</title>")
	get(t, url+"?target=Local", "Local machine")
	b.persists(t, filepath.Join(b.root, "smokeping.fcgi"), url, "Warm SmokePing", 10)
}

// TestSmokepingConfigEditedInPlaceCostsARequest: smokeping's quirk. When
// its config file is edited under a running process, the next request's
// answer is lost with the process (kill -9 before CGI::Fast sends it): a
// 502, what the bridge gives for a child that dies mid-request. In exec
// mode the process would have loaded the new file. The deploy that costs
// nothing: write the new config as a new file and point the wrapper at it
// by mv; the wrapper is the program, so the bridge starts a new
// generation, and the old process never sees its own file change.
func TestSmokepingConfigEditedInPlaceCostsARequest(t *testing.T) {
	b := smokepingBed(t)
	url := b.base + "smokeping.fcgi"
	get(t, url, "Warm SmokePing")
	conf := filepath.Join(b.dir, "smokeping", "config")
	// smokeping compares whole seconds.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(conf, later, later); err != nil {
		t.Fatal(err)
	}
	r := fetch(url)
	if r.err != nil || r.status != 502 {
		t.Fatalf("the request after an in-place edit: %d %v %q, want the lost answer's 502", r.status, r.err, clip(r.body))
	}
	b.logLine(t, "FastCGI child failed mid-request", "signal KILL")
	get(t, url, "Warm SmokePing")

	// The deploy by a new file: 0 failed, 0 stale, under load.
	stop := make(chan struct{})
	type res struct {
		status int
		title  bool
		sent   time.Time
	}
	results := make(chan res, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 400 {
			select {
			case <-stop:
				return
			default:
			}
			sent := time.Now()
			r := fetch(url)
			results <- res{r.status, strings.Contains(r.body, "Second Edition"), sent}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	writeSmokepingConfig(t, b, "config.2", "Second Edition")
	deployed := time.Now()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	close(results)
	var n, failed, stale int
	for r := range results {
		n++
		if r.status != 200 {
			failed++
		}
		if r.sent.After(deployed) && !r.title {
			stale++
		}
	}
	if n < 10 || failed != 0 || stale != 0 {
		t.Errorf("config deployed as a new file under load: %d requests, %d failed, %d stale", n, failed, stale)
	}
	get(t, url, "<title>SmokePing Latency Page for Second Edition</title>")
}
