package execrun

import (
	"runtime"
	"testing"
	"time"
)

// The governor raises GOMAXPROCS while two programs are in flight and
// restores the base setting after a quiet second; one at a time it never
// touches it.
func TestProcsGovernor(t *testing.T) {
	base := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(base)
	if busyProcs <= 1 {
		t.Skip("busyProcs is 1")
	}
	g := &procsGovernor{enabled: true}

	done := g.started()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("one program in flight: GOMAXPROCS %d, want 1", n)
	}
	done2 := g.started()
	if n := runtime.GOMAXPROCS(0); n != busyProcs {
		t.Fatalf("two programs in flight: GOMAXPROCS %d, want %d", n, busyProcs)
	}
	done2()
	done()
	deadline := time.Now().Add(quietAfter + 3*time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS still %d after a quiet %v", runtime.GOMAXPROCS(0), quietAfter)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g.raised.Load() {
		t.Fatal("lowered but still marked raised")
	}

	off := &procsGovernor{enabled: false}
	d1, d2 := off.started(), off.started()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("disabled (GOMAXPROCS set in the environment): GOMAXPROCS %d, want 1", n)
	}
	d1()
	d2()
}
