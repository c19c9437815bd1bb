// This file tests the limits encoding between the bridge and the exec shim.

package sandbox

import (
	"slices"
	"strings"
	"testing"
)

func TestLimitsEncodeAndParseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		l    Limits
		enc  string
	}{
		{"no limits", Limits{}, "none"},
		{"cpu and address space", Limits{CPUSeconds: 10, AddressSpace: 268435456}, "cpu=10,as=268435456"},
		{"all five in fixed order", Limits{1, 2, 3, 4, 5}, "cpu=1,as=2,nofile=3,nproc=4,fsize=5"},
		{"largest value", Limits{FileSize: 1<<64 - 1}, "fsize=18446744073709551615"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.String(); got != tc.enc {
				t.Errorf("String() = %q, want %q", got, tc.enc)
			}
			got, err := ParseLimits(tc.enc)
			if err != nil || got != tc.l {
				t.Errorf("ParseLimits(%q) = %+v, %v; want %+v", tc.enc, got, err, tc.l)
			}
			if tc.l.IsZero() != (tc.enc == "none") {
				t.Errorf("IsZero() = %v for %+v", tc.l.IsZero(), tc.l)
			}
		})
	}
}

func TestParseLimitsRejectsMalformed(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "empty"},
		{"cpu", "not key=value"},
		{"cpu=10,", "not key=value"},
		{"mem=5", "unknown limit"},
		{"cpu=1,cpu=2", "given twice"},
		{"cpu=0", "zero means unset"},
		{"cpu=-1", "invalid syntax"},
		{"cpu= 1", "invalid syntax"},
		{"as=18446744073709551616", "out of range"},
		{"NONE", "not key=value"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			l, err := ParseLimits(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseLimits(%q) = %+v, %v; want error containing %q", tc.in, l, err, tc.wantErr)
			}
		})
	}
}

func TestWrapBuildsShimCommandLineThatUnwraps(t *testing.T) {
	l := Limits{OpenFiles: 64}
	argv := []string{"/srv/cgi-bin/x.cgi", "--", "arg"}
	got := Wrap("/usr/bin/cgibridge", l, "/data/cgi/x.cgi", argv)
	want := []string{"/usr/bin/cgibridge", ShimArg, "nofile=64", "/data/cgi/x.cgi", "--", "/srv/cgi-bin/x.cgi", "--", "arg"}
	if !slices.Equal(got, want) {
		t.Fatalf("Wrap = %q, want %q", got, want)
	}
	gl, path, gargv, err := unwrap(got)
	if err != nil || gl != l || path != "/data/cgi/x.cgi" || !slices.Equal(gargv, argv) {
		t.Fatalf("unwrap = %+v, %q, %q, %v", gl, path, gargv, err)
	}
}

func TestUnwrapRejectsBadInvocations(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no program", []string{"self", ShimArg, "none", "x", "--"}},
		{"missing separator", []string{"self", ShimArg, "none", "x", "y", "z"}},
		{"not the shim", []string{"self", "serve", "none", "x", "--", "x"}},
		{"bad limits", []string{"self", ShimArg, "cpu=x", "x", "--", "x"}},
		{"empty program", []string{"self", ShimArg, "none", "", "--", "x"}},
		{"empty argv0", []string{"self", ShimArg, "none", "x", "--", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := unwrap(tc.args); err == nil || !strings.Contains(err.Error(), "bad invocation") {
				t.Fatalf("unwrap(%q) err = %v, want a bad invocation", tc.args, err)
			}
		})
	}
}

// FuzzParseLimits checks that whatever parses re-encodes to something that parses to
// the same limits, and that nothing panics.
func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{"none", "cpu=10,as=268435456", "nofile=3,nproc=4", "cpu=1,cpu=1", "x=1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimits(s)
		if err != nil {
			return
		}
		again, err := ParseLimits(l.String())
		if err != nil || again != l {
			t.Fatalf("%q parsed to %+v, re-encoded %q parsed to %+v, %v", s, l, l.String(), again, err)
		}
	})
}
