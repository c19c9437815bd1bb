// This file holds the warm units on the status page: each FastCGI pool and
// interpreter helper, as its runner reports it.

package status

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Warm is one warm unit: a pool of FastCGI children of one program, or the
// helpers of one script. The runners fill it; this package only shows it.
type Warm struct {
	Runner     string `json:"runner"`  // "fastcgi", "warm"
	Program    string `json:"program"` // the program, or the script
	Generation int    `json:"generation"`
	Busy       int    `json:"busy"`
	Idle       int    `json:"idle"`
	Starting   int    `json:"starting"`
	Draining   int    `json:"draining"` // of old generations
	Requests   uint64 `json:"requests"`
	Started    uint64 `json:"started"` // processes started
	Crashes    uint64 `json:"crashes"`
	LastExit   string `json:"last_exit,omitempty"`
	// Failing says why new processes cannot start, when they cannot.
	Failing string `json:"failing,omitempty"`
	// Cold counts requests a warm runner passed to exec mode, by reason.
	Cold map[string]uint64 `json:"cold,omitempty"`
}

// warmSource returns the warm units now.
type warmSource func() []Warm

// AddWarm adds a source of warm units (a runner's Status), read at every
// Snapshot.
func (s *Stats) AddWarm(source func() []Warm) {
	if s == nil {
		return
	}
	for {
		old := s.warm.Load()
		var next []warmSource
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, source)
		if s.warm.CompareAndSwap(old, &next) {
			return
		}
	}
}

func (s *Stats) warmUnits() []Warm {
	srcs := s.warm.Load()
	if srcs == nil {
		return nil
	}
	var out []Warm
	for _, src := range *srcs {
		out = append(out, src()...)
	}
	return out
}

// appendWarmText renders one block of lines per unit.
func appendWarmText(b *bytes.Buffer, units []Warm) {
	for _, u := range units {
		fmt.Fprintf(b, "\n%s %s:\n", u.Runner, u.Program)
		fmt.Fprintf(b, "  generation: %d\n  busy: %d\n  idle: %d\n  starting: %d\n  draining: %d\n", u.Generation, u.Busy, u.Idle, u.Starting, u.Draining)
		fmt.Fprintf(b, "  requests: %d\n  processes started: %d\n  crashes: %d\n", u.Requests, u.Started, u.Crashes)
		if u.LastExit != "" {
			fmt.Fprintf(b, "  last exit: %s\n", u.LastExit)
		}
		if u.Failing != "" {
			fmt.Fprintf(b, "  failing: %s\n", u.Failing)
		}
		for _, reason := range sortedKeys(u.Cold) {
			fmt.Fprintf(b, "  cold (%s): %d\n", reason, u.Cold[reason])
		}
	}
}

// appendWarmMetrics writes the warm units' families.
func appendWarmMetrics(p *promWriter, units []Warm) {
	if len(units) == 0 {
		return
	}
	id := func(u Warm) string { return label("runner", u.Runner) + "," + label("program", u.Program) }
	p.family("cgibridge_warm_processes", "gauge", "Warm processes by state.")
	for _, u := range units {
		for _, st := range []struct {
			name string
			n    int
		}{{"busy", u.Busy}, {"idle", u.Idle}, {"starting", u.Starting}, {"draining", u.Draining}} {
			p.sample("cgibridge_warm_processes", id(u)+","+label("state", st.name), float64(st.n))
		}
	}
	p.family("cgibridge_warm_generation", "gauge", "Current generation of each warm unit.")
	for _, u := range units {
		p.sample("cgibridge_warm_generation", id(u), float64(u.Generation))
	}
	p.family("cgibridge_warm_requests_total", "counter", "Requests a warm unit served.")
	for _, u := range units {
		p.sample("cgibridge_warm_requests_total", id(u), float64(u.Requests))
	}
	p.family("cgibridge_warm_starts_total", "counter", "Warm processes started.")
	for _, u := range units {
		p.sample("cgibridge_warm_starts_total", id(u), float64(u.Started))
	}
	p.family("cgibridge_warm_crashes_total", "counter", "Warm processes that ended unasked.")
	for _, u := range units {
		p.sample("cgibridge_warm_crashes_total", id(u), float64(u.Crashes))
	}
	cold := false
	for _, u := range units {
		cold = cold || len(u.Cold) > 0
	}
	if cold {
		p.family("cgibridge_warm_cold_requests_total", "counter", "Requests a warm runner passed to exec mode, by reason.")
		for _, u := range units {
			for _, reason := range sortedKeys(u.Cold) {
				p.sample("cgibridge_warm_cold_requests_total", id(u)+","+label("reason", reason), float64(u.Cold[reason]))
			}
		}
	}
}

// label renders k="v" with v escaped as the exposition format asks.
func label(k, v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return k + `="` + r.Replace(v) + `"`
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
