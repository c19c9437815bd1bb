package warm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// munin's FastCGI CGIs (package munin) read MUNIN_CONFIG once, at start-up,
// and then serve from the files munin-cron (munin-update, munin-limits)
// keeps in dbdir: datafile.storable, limits.storable and the RRD files.
// The bed makes those by hand: a munin.conf with one host, the storables
// written by munin's own parser, and one RRD for its load graph.
const (
	muninHTML  = "/usr/lib/munin/cgi/munin-cgi-html"
	muninGraph = "/usr/lib/munin/cgi/munin-cgi-graph"
)

// muninStorables writes dbdir/datafile.storable as munin-update would for a
// host web1.example in group warm with a load graph, and limits.storable as
// munin-limits would with nothing to report.
const muninStorables = `use strict; use warnings;
use Munin::Master::Utils; use Storable;
my $dbdir = shift;
my $c = Munin::Master::Utils::munin_parse_config([
  "version 2.0.73",
  "warm;web1.example:load.graph_title Load average",
  "warm;web1.example:load.graph_vlabel load",
  "warm;web1.example:load.graph_category system",
  "warm;web1.example:load.load.label load",
]);
Storable::nstore($c, "$dbdir/datafile.storable");
Storable::nstore({}, "$dbdir/limits.storable");
`

// muninBed serves munin's CGIs warm, or with warm false in exec mode (one
// process per request, MUNIN_CONFIG through --set-env). With cron set, it
// runs munin-html as munin-cron would, which writes htmlconf.storable.
func muninBed(t *testing.T, warm, cron bool, args ...string) (*bed, string) {
	t.Helper()
	need(t, "munin", muninHTML, muninGraph, "/usr/share/munin/munin-html", "/usr/bin/rrdtool")
	var dbdir string
	b := newBed(t, func(b *bed) []string {
		m := filepath.Join(b.dir, "munin")
		dbdir = filepath.Join(m, "db")
		for _, d := range []string{"db/warm", "html", "log", "run", "cgi-tmp"} {
			if err := os.MkdirAll(filepath.Join(m, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		conf := filepath.Join(m, "munin.conf")
		writeFile(t, conf, fmt.Sprintf(`dbdir %[1]s/db
htmldir %[1]s/html
logdir %[1]s/log
rundir %[1]s/run
cgitmpdir %[1]s/cgi-tmp
tmpldir /etc/munin/templates
staticdir /etc/munin/static
graph_strategy cgi
html_strategy cgi
[warm;web1.example]
    address 127.0.0.1
`, m), 0o644)
		writeFile(t, filepath.Join(m, "storables.pl"), muninStorables, 0o644)
		run(t, m, "perl", "storables.pl", dbdir)
		rrd := filepath.Join(dbdir, "warm", "web1.example-load-load-g.rrd")
		now := time.Now().Unix()
		run(t, m, "rrdtool", "create", rrd, "--start", strconv.FormatInt(now-3600, 10), "--step", "300",
			"DS:42:GAUGE:600:U:U", "RRA:AVERAGE:0.5:1:576", "RRA:MIN:0.5:1:576", "RRA:MAX:0.5:1:576")
		for i := int64(11); i > 0; i-- {
			run(t, m, "rrdtool", "update", rrd, fmt.Sprintf("%d:0.%d", now-i*300, i))
		}
		if cron {
			run(t, m, "/usr/share/munin/munin-html", "--config", conf, "--force-run-as-root")
		}
		own(t, m)
		if !warm {
			return []string{"--allow", "/usr/lib/munin/cgi", "--set-env", "MUNIN_CONFIG=" + conf}
		}
		return []string{"--allow", "/usr/lib/munin/cgi", "--fastcgi", "/usr/lib/munin/cgi/munin-cgi-*",
			"--fastcgi-env", "/usr/lib/munin/cgi/munin-cgi-*:MUNIN_CONFIG=" + conf}
	}, args...)
	return b, dbdir
}

// TestMuninPersists: the overview page names the host, the host page its
// category, the graph is a PNG — each program one process throughout
// (munin-cgi-graph says its pid in X-Munin-Pid).
func TestMuninPersists(t *testing.T) {
	b, _ := muninBed(t, true, true)
	get(t, b.sys+muninHTML+"/", `href="warm/web1.example/index.html">web1.example</a>`)
	b.persists(t, muninHTML, b.sys+muninHTML+"/warm/web1.example/index.html", `href="../../system-day.html"`, 10)

	graph := b.sys + muninGraph + "/warm/web1.example/load-day.png"
	first := get(t, graph, "\x89PNG")
	pid := first.header.Get("X-Munin-Pid")
	if pid == "" || first.header.Get("Content-Type") != "image/png" {
		t.Fatalf("graph headers %v", first.header)
	}
	for i := range 10 {
		r := get(t, graph, "\x89PNG")
		if p := r.header.Get("X-Munin-Pid"); p != pid {
			t.Fatalf("graph %d drawn by pid %s, the first by %s", i, p, pid)
		}
	}
	if p := b.pool(t, muninGraph); p.Started != 1 || p.Requests != 11 {
		t.Errorf("munin-cgi-graph pool %+v: want one process, 11 requests", p)
	}
}

// TestMuninWithoutTheCronCache: munin-cgi-html needs what munin-cron
// writes. Without htmlconf.storable it reads datafile.storable and
// limits.storable per request; without limits.storable it prints its header, logs
// "[FATAL] munin_readconfig_part(limits) - missing file" and exits 1 in the
// middle of the request; CGI::Fast's exit still ends the request, so the
// client gets a 200 with an empty page — what exec mode gives too. The
// warm child is counted as a crash and replaced, and once the cache is
// back the page answers.
func TestMuninWithoutTheCronCache(t *testing.T) {
	for _, warm := range []bool{false, true} {
		t.Run(map[bool]string{false: "exec", true: "warm"}[warm], func(t *testing.T) {
			b, dbdir := muninBed(t, warm, false)
			url := b.sys + muninHTML + "/"
			get(t, url, "web1.example")
			limits := filepath.Join(dbdir, "limits.storable")
			if err := os.Rename(limits, limits+".away"); err != nil {
				t.Fatal(err)
			}
			r := fetch(url)
			if r.err != nil || r.status != 200 || r.body != "" || r.header.Get("Content-Type") != "text/html; charset=ISO-8859-1" {
				t.Fatalf("without limits.storable: %d %v %v %q, want munin's header and nothing else", r.status, r.err, r.header, clip(r.body))
			}
			if err := os.Rename(limits+".away", limits); err != nil {
				t.Fatal(err)
			}
			if warm {
				// The exit races the next request: see
				// TestChildExitingNonZeroBetweenRequestsCostsNoRequest.
				waitFor(t, 5*time.Second, "the child that exited 1 reaped", func() bool { return b.pool(t, muninHTML).Crashes == 1 })
			}
			get(t, url, "web1.example")
			if !warm {
				return
			}
			b.logLine(t, "FastCGI child exited", `exit="exit 1"`)
			if p := b.pool(t, muninHTML); p.Started != 2 || p.Crashes != 1 || p.LastExit != "exit 0" && p.LastExit != "exit 1" {
				t.Errorf("pool %+v: want the crashed child counted and replaced", p)
			}
		})
	}
}

// TestMuninHTMLWithoutHtmlconfDegradesAfterItsFirstRequest: munin's own
// quirk. Without the htmlconf.storable munin-html writes, munin-cgi-html
// builds its page tree once, and every later request in the same process
// (generate_config in Munin/Master/HTMLConfig.pm drops the tree, and only
// rebuilds it when datafile.storable changed) gets a page without the host's
// categories. Exec mode never sees it; warm, run munin-cron (munin-html)
// first, or give each child one request (--fastcgi-max-requests 1).
func TestMuninHTMLWithoutHtmlconfDegradesAfterItsFirstRequest(t *testing.T) {
	const want = `href="../../system-day.html"`
	page := func(b *bed) string { return fetch(b.sys + muninHTML + "/warm/web1.example/index.html").body }
	for _, c := range []struct {
		name       string
		warm       bool
		args       []string
		secondGood bool
	}{
		{"exec", false, nil, true},
		{"warm", true, nil, false},
		{"warm, one request per child", true, []string{"--fastcgi-max-requests", "1"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, _ := muninBed(t, c.warm, false, c.args...)
			if first := page(b); !strings.Contains(first, want) {
				t.Fatalf("first request: no %q in\n%s", want, clip(first))
			}
			for i := range 3 {
				if good := strings.Contains(page(b), want); good != c.secondGood {
					t.Fatalf("request %d: page has the host's categories: %v, want %v", i+2, good, c.secondGood)
				}
			}
		})
	}
}
