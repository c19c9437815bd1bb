// This file holds the exec runner's say in GOMAXPROCS: more Ps while programs
// start concurrently, few while requests come one at a time.
//
// Go starts a process with a raw vfork system call: the thread keeps its P
// until the child has begun its execve, 0.2-0.6 ms under load here, and with
// one P nothing else in the bridge runs meanwhile (docs/performance.md). Spare
// Ps fix that, but idle Ps cost CPU on every request (threads woken to spin,
// sysmon): one request at a time 1 P costs ~350 µs of bridge CPU per request
// and 4 Ps ~520. So the bridge runs with its base setting (main.go) and the
// runner raises it while two or more programs are in flight, lowering it again
// after a quiet second. A change stops the world for some µs; it happens at
// most on each change of regime; on the way down the memory the burst used
// is returned to the system.

package execrun

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// defaultProcs is Go's own choice (the CPUs this process may use, cgroup
// limits included), read before main changes it.
var defaultProcs = runtime.GOMAXPROCS(0)

// busyProcs is the P count while programs start concurrently: enough for
// several vfork windows in flight plus the bridge's own work.
var busyProcs = max(4, defaultProcs)

// quietAfter is how long fewer than two programs must have been in flight
// before the base setting returns.
const quietAfter = time.Second

type procsGovernor struct {
	enabled  bool
	inflight atomic.Int32
	lastBusy atomic.Int64 // unix nanoseconds of the last start with another in flight
	raised   atomic.Bool
	mu       sync.Mutex // serialises changes
	base     int
}

var governor = procsGovernor{enabled: os.Getenv("GOMAXPROCS") == ""}

// started counts a program in flight and raises GOMAXPROCS when it is not
// alone; the returned function ends it.
func (g *procsGovernor) started() func() {
	if !g.enabled {
		return func() {}
	}
	if g.inflight.Add(1) >= 2 {
		g.lastBusy.Store(time.Now().UnixNano())
		if !g.raised.Load() {
			g.raise()
		}
	}
	return func() { g.inflight.Add(-1) }
}

func (g *procsGovernor) raise() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.raised.Load() {
		return
	}
	g.base = runtime.GOMAXPROCS(0)
	if g.base >= busyProcs {
		return // nothing to raise: already as many Ps as wanted
	}
	runtime.GOMAXPROCS(busyProcs)
	g.raised.Store(true)
	go g.lowerWhenQuiet()
}

func (g *procsGovernor) quiet() bool {
	return g.inflight.Load() < 2 && time.Since(time.Unix(0, g.lastBusy.Load())) >= quietAfter
}

// lowerWhenQuiet restores the base setting once no two programs have been
// in flight together for quietAfter.
func (g *procsGovernor) lowerWhenQuiet() {
	t := time.NewTicker(quietAfter / 2)
	defer t.Stop()
	for range t.C {
		if !g.quiet() {
			continue
		}
		g.mu.Lock()
		if !g.quiet() {
			g.mu.Unlock()
			continue
		}
		g.raised.Store(false)
		runtime.GOMAXPROCS(g.base)
		g.mu.Unlock()
		// The burst is over: give back the memory it used (a GC and a
		// scavenge, some ms once per burst) rather than keep it resident
		// until the background scavenger gets to it.
		debug.FreeOSMemory()
		return
	}
}
