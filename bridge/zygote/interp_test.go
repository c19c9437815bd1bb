package zygote

import (
	"strings"
	"testing"
)

// TestPerlSwitchesWarmAreWOnly: a helper honours -w (as $^W in each child);
// taint mode and every other switch send the script to exec mode, named.
func TestPerlSwitchesWarmAreWOnly(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		err   string
	}{
		{nil, ""},
		{[]string{"-w"}, ""},
		{[]string{"-w -w"}, ""},
		{[]string{"-ww"}, ""},
		{[]string{"-T"}, "taint mode (-T) is not supported warm"},
		{[]string{"-wT"}, "taint mode (-T) is not supported warm"},
		{[]string{"-w -t"}, "taint mode (-t) is not supported warm"},
		{[]string{"-l"}, "interpreter flag -l is not supported warm"},
		{[]string{"-"}, "interpreter flag - is not supported warm"},
		{[]string{"x"}, "interpreter flag x is not supported warm"},
	} {
		err := interp{kind: perl, flags: tc.flags}.checkFlags()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.flags, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: got %v, want %q", tc.flags, err, tc.err)
		}
	}
}
