package warm_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Debian's mapserv (cgi-mapserver) is linked with libfcgi: with a listening
// socket on fd 0 it serves requests in a loop. MapServer 8 reads its
// configuration file (MAPSERVER_CONFIG_FILE) once, at start-up, before that
// loop: a value nginx sent per request would come too late, so it is set
// with --fastcgi-env.
const mapserv = "/usr/lib/cgi-bin/mapserv"

const tinyMap = `MAP
  NAME "tiny"
  EXTENT 0 0 100 100
  SIZE 64 64
  UNITS METERS
  IMAGECOLOR 255 255 255
  PROJECTION
    "init=epsg:3857"
  END
  WEB
    METADATA
      "wms_title" "cgibridge warm tiny map"
      "wms_onlineresource" "http://127.0.0.1/mapserv?"
      "wms_srs" "EPSG:3857"
      "wms_enable_request" "*"
    END
  END
  LAYER
    NAME "square"
    TYPE POLYGON
    STATUS ON
    FEATURE
      POINTS 10 10 90 10 90 90 10 90 10 10 END
    END
    CLASS
      STYLE
        COLOR 200 0 0
      END
    END
    METADATA
      "wms_title" "square"
    END
  END
END
`

// mapservBed serves Debian's mapserv warm with a tiny map as its default
// mapfile.
func mapservBed(t *testing.T, args ...string) *bed {
	t.Helper()
	need(t, "cgi-mapserver", mapserv)
	return newBed(t, func(b *bed) []string {
		writeFile(t, filepath.Join(b.dir, "tiny.map"), tinyMap, 0o644)
		conf := filepath.Join(b.dir, "mapserver.conf")
		writeFile(t, conf, "CONFIG\n  ENV\n    MS_MAPFILE \""+filepath.Join(b.dir, "tiny.map")+"\"\n  END\nEND\n", 0o644)
		return []string{"--allow", mapserv, "--fastcgi", mapserv, "--fastcgi-env", mapserv + ":MAPSERVER_CONFIG_FILE=" + conf}
	}, args...)
}

const getMap = "?SERVICE=WMS&REQUEST=GetMap&VERSION=1.3.0&LAYERS=square&STYLES=&CRS=EPSG:3857&BBOX=0,0,100,100&WIDTH=64&HEIGHT=64&FORMAT=image/png"

// TestMapservPersists: GetCapabilities names the tiny map's title, GetMap
// returns a PNG, and one mapserv process answers them all.
func TestMapservPersists(t *testing.T) {
	b := mapservBed(t)
	url := b.sys + mapserv
	get(t, url+"?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0", "<Title>cgibridge warm tiny map</Title>")
	png := get(t, url+getMap, "\x89PNG\r\n")
	if ct := png.header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("GetMap Content-Type %q", ct)
	}
	b.persists(t, mapserv, url+getMap, "\x89PNG", 20)
}

// TestMapservIgnoringSIGTERMIsKilledAfterTheGrace: an idle mapserv catches
// SIGTERM (msCleanupOnSignal only sets a flag, and FCGI_Accept goes on
// waiting), so a child stopped for idleness is killed after --kill-grace,
// and the next request gets a new one.
func TestMapservIgnoringSIGTERMIsKilledAfterTheGrace(t *testing.T) {
	const grace = 700 * time.Millisecond
	b := mapservBed(t, "--fastcgi-idle", "300ms", "--kill-grace", grace.String())
	url := b.sys + mapserv + getMap
	get(t, url, "\x89PNG")
	pid := b.kids(t)[0]
	line := b.logLine(t, "stopping idle FastCGI child", "pid="+itoa(pid))
	stopped := time.Now()
	waitFor(t, 10*time.Second, "the idle mapserv gone", func() bool { return gone(pid) })
	if d := time.Since(stopped); d < grace/2 {
		t.Errorf("mapserv went %v after the stop: it did not ignore SIGTERM (%s)", d, line)
	}
	b.logLine(t, "FastCGI child stopped", "pid="+itoa(pid), `exit="signal KILL"`)
	r := get(t, url, "\x89PNG")
	if kids := b.kids(t); len(kids) != 1 || kids[0] == pid {
		t.Fatalf("after the kill: children %v (%d bytes)", kids, len(r.body))
	}
	if p := b.pool(t, mapserv); p.Started != 2 || p.Crashes != 0 {
		t.Errorf("status %+v: want 2 started, no crash (a stop is not a crash)", p)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
