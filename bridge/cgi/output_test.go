package cgi

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cgibridge/cgibridge/bridge/cgiresp"
)

// feed writes the chunks to a fresh cgiOutput and finishes it.
func feed(t *testing.T, max int, chunks ...string) (string, *cgiOutput, error) {
	t.Helper()
	var out bytes.Buffer
	o := newCGIOutput(&out, max)
	var werr error
	for _, c := range chunks {
		if _, err := o.Write([]byte(c)); err != nil {
			werr = err
			break
		}
	}
	if err := o.finish(); err != nil {
		return out.String(), o, err
	}
	return out.String(), o, werr
}

func TestCGIOutputTranslates(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"one write", []string{"Content-Type: text/plain\n\nhello"}, "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"},
		{"header split across writes", []string{"Content-Ty", "pe: text/plain\r", "\n\r", "\nhel", "lo"}, "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"},
		{"NPH status line", []string{"HTTP/1.1 201 Created\r\nContent-Type: a/b\r\n\r\nx"}, "Status: 201 Created\r\nContent-Type: a/b\r\n\r\nx"},
		{"status kept", []string{"Status: 404 Not Found\nContent-Type: a/b\n\n"}, "Status: 404 Not Found\r\nContent-Type: a/b\r\n\r\n"},
		{"client redirect", []string{"Location: https://example.org/\n\n"}, "Status: 302 Found\r\nLocation: https://example.org/\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, o, err := feed(t, 1024, tt.chunks...)
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
			if !o.started() {
				t.Fatal("started() is false after a valid header")
			}
		})
	}
}

func TestCGIOutputRefusesBadOutput(t *testing.T) {
	tests := []struct {
		name    string
		chunks  []string
		wantErr string
	}{
		{"no output", nil, "no output"},
		{"invalid status", []string{"Status: abc\n\nbody"}, "Status"},
		{"no blank line", []string{"Content-Type: text/plain\n"}, "header block"},
		{"oversized header", []string{"X-A: " + strings.Repeat("a", 2000) + "\n"}, "larger than"},
		{"line without colon", []string{"hello world\n\n"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, o, err := feed(t, 1024, tt.chunks...)
			if err == nil {
				t.Fatalf("accepted, sent %q", got)
			}
			if got != "" || o.started() {
				t.Fatalf("bad output reached the front end: %q", got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestCGIOutputNoOutputIsErrNoOutput(t *testing.T) {
	_, _, err := feed(t, 1024)
	if !errors.Is(err, cgiresp.ErrNoOutput) {
		t.Fatalf("got %v, want ErrNoOutput", err)
	}
}

func TestCGIOutputLocalRedirectSendsNothing(t *testing.T) {
	got, o, err := feed(t, 1024, "Location: /cgi-bin/other.cgi?x=1\n\n", "ignored body")
	if err == nil || !errors.Is(err, errStopOutput) {
		t.Fatalf("want errStopOutput after a local redirect, got %v", err)
	}
	if got != "" || o.started() {
		t.Fatalf("local redirect reached the front end: %q", got)
	}
	if o.head.Kind != cgiresp.LocalRedirect || o.head.Location != "/cgi-bin/other.cgi?x=1" {
		t.Fatalf("head %+v", o.head)
	}
}

func TestHeaderEnd(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"A: b\n\nbody", 6},
		{"A: b\r\n\r\nbody", 8},
		{"A: b\r\nC: d\n\nx", 12},
		{"A: b\n\r\nx", 7},
		{"\nbody", 1},
		{"\r\nbody", 2},
		{"A: b\n", -1},
		{"A: b\r\n", -1},
	}
	for _, tt := range tests {
		if got := headerEnd([]byte(tt.in)); got != tt.want {
			t.Errorf("headerEnd(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
