package zygote

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/test/harness"
)

// TestStatusShowsHelpersAndColdReasons: the status page and /metrics show
// each warm script: its helper, its warm requests, and why requests ran
// cold.
func TestStatusShowsHelpersAndColdReasons(t *testing.T) {
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	root := newRoot(t)
	b := serve(t, root, "--warm", "*.py", "--status", addr)
	b.warmUp(t, "hello.py")
	for range 5 {
		b.do(t, "hello.py", "", nil)
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return string(data)
	}
	var page struct {
		Warm []status.Warm `json:"warm"`
	}
	if err := json.Unmarshal([]byte(get("/status?json")), &page); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "hello.py")
	var u *status.Warm
	for i := range page.Warm {
		if page.Warm[i].Program == script {
			u = &page.Warm[i]
		}
	}
	if u == nil || u.Runner != "warm" || u.Requests < 5 || u.Generation != 1 || u.Idle+u.Busy != 1 || u.Cold["helper starting"] < 1 {
		t.Fatalf("status of %s: %+v", script, page.Warm)
	}
	if text := get("/status"); !strings.Contains(text, "warm "+script+":") || !strings.Contains(text, "cold (helper starting):") {
		t.Errorf("text status:\n%s", text)
	}
	if m := get("/metrics"); !strings.Contains(m, `cgibridge_warm_requests_total{runner="warm",program="`+script+`"}`) {
		t.Errorf("metrics lack the warm script:\n%s", m)
	}
}
