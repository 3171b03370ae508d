package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, roots, floor uint64
		want               int
	}{
		{live: 40 * mib, floor: 160 * mib, want: 300},                  // goal 40 + 40 × 3 = 160 MiB
		{live: 40 * mib, roots: 20 * mib, floor: 160 * mib, want: 200}, // roots count: 40 + 60 × 2
		{live: 80 * mib, floor: 160 * mib, want: 100},                  // half the floor: the default pace
		{live: 500 * mib, floor: 160 * mib, want: 100},                 // a large world
		{live: 3 * mib, floor: 10 * mib, want: 234},                    // rounded up: 3 + 3 × 2.34 ≥ 10
		{live: 10 * mib, roots: 30 * mib, floor: 24 * mib, want: 100},  // never under the default pace
		{live: 0, floor: 160 * mib, want: 4000},                        // the minimum heap, 4 MiB × 40, is the floor
		{live: 1, roots: 1, floor: 160 * mib, want: 4000},
	} {
		got := Percent(c.live, c.roots, c.floor)
		if got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.live, c.roots, c.floor, got, c.want)
		}
		goal := max(c.live+(c.live+c.roots)*uint64(got)/100, minimumHeap*uint64(got)/100)
		if goal < c.floor {
			t.Errorf("Percent(%d, %d, %d) = %d: goal %d is under the floor", c.live, c.roots, c.floor, got, goal)
		}
	}
}

// readUint64 reads a runtime metric.
func readUint64(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// collect runs a full collection and waits until the tuner has run after
// it (it runs on the runtime's cleanup goroutine).
func collect(t *testing.T, tuner *Tuner) {
	t.Helper()
	tuner.mu.Lock()
	before := tuner.tuned
	tuner.mu.Unlock()
	runtime.GC()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tuner.mu.Lock()
		n := tuner.tuned
		tuner.mu.Unlock()
		if n > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the tuner did not run after a collection")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGoalAtFloor holds a 16 MiB live heap under a 64 MiB floor: after a
// collection the runtime's heap goal is the floor (at the default pace it
// would be about 32 MiB), so a cycle comes every ~48 MiB of garbage
// instead of every ~16 MiB.
func TestGoalAtFloor(t *testing.T) {
	const floor = 64 << 20
	defer debug.SetGCPercent(debug.SetGCPercent(100)) // whatever GOGC says
	live := make([][]byte, 16)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	paced := readUint64("/gc/heap/goal:bytes")

	tuner := Start(floor)
	defer tuner.Stop()
	collect(t, tuner)
	goal := readUint64("/gc/heap/goal:bytes")
	gogc := readUint64("/gc/gogc:percent")
	runtime.KeepAlive(live)

	t.Logf("heap goal over 16 MiB live: %d MiB at GOGC=100, %d MiB with a %d MiB floor (GOGC=%d)", paced>>20, goal>>20, floor>>20, gogc)
	if goal < floor || goal > floor+floor/8 {
		t.Errorf("heap goal with a %d-byte floor = %d, want the floor (to 1/8 above)", floor, goal)
	}
	if int(gogc) != tuner.Percent() {
		t.Errorf("runtime GOGC %d, tuner says %d", gogc, tuner.Percent())
	}
	if paced >= floor/2+floor/4 {
		t.Errorf("heap goal at GOGC=100 = %d: the live heap is larger than this test means", paced)
	}
}

func TestStopRestores(t *testing.T) {
	old := debug.SetGCPercent(150)
	defer debug.SetGCPercent(old)
	tuner := Start(256 << 20)
	collect(t, tuner)
	tuner.Stop()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GOGC after Stop = %d, want 150 as before Start", got)
	}
	// A cycle after Stop leaves GOGC alone (the cleanup that would tune
	// runs on its own goroutine: give it time to run).
	runtime.GC()
	runtime.GC()
	for range 20 {
		time.Sleep(5 * time.Millisecond)
		if got := readUint64("/gc/gogc:percent"); got != 150 {
			t.Fatalf("GOGC after a cycle past Stop = %d, want 150", got)
		}
	}
}

// TestLargeLiveHeap keeps a live heap over half the floor: the tuner then
// leaves the default pace.
func TestLargeLiveHeap(t *testing.T) {
	tuner := Start(64 << 20)
	defer tuner.Stop()
	if p := tuner.Percent(); p <= 100 {
		t.Fatalf("GOGC with a small live heap = %d, want more than 100", p)
	}
	live := make([][]byte, 48)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	collect(t, tuner)
	if p := tuner.Percent(); p != 100 {
		t.Errorf("GOGC with 48 MiB live under a 64 MiB floor = %d, want 100", p)
	}
	runtime.KeepAlive(live)
}

// StartUnlessSet leaves the runtime's policy alone when GOGC is set, and
// otherwise tunes for the Default floor.
func TestStartUnlessSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "150")
	if tuner := StartUnlessSet(); tuner != nil {
		tuner.Stop()
		t.Fatal("a tuner started though GOGC is set")
	}
	StartUnlessSet().Stop() // a nil Tuner stops without harm
	t.Setenv("GOGC", "")
	tuner := StartUnlessSet()
	if tuner == nil {
		t.Fatal("no tuner without GOGC")
	}
	defer tuner.Stop()
	if tuner.floor != Default || tuner.Percent() <= 100 {
		t.Errorf("floor %d, GOGC %d: want the Default floor over this small heap", tuner.floor, tuner.Percent())
	}
}

// TestLimitMemoryUnlessSet: the soft memory limit is MemoryLimit and
// restore puts the limit before back; with GOMEMLIMIT set it is left alone.
func TestLimitMemoryUnlessSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	debug.SetMemoryLimit(3 << 30)

	t.Setenv("GOMEMLIMIT", "")
	restore := LimitMemoryUnlessSet()
	if got := debug.SetMemoryLimit(-1); got != MemoryLimit {
		t.Errorf("limit %d, want MemoryLimit %d", got, MemoryLimit)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != 3<<30 {
		t.Errorf("limit after restore %d, want %d", got, 3<<30)
	}

	// The limit is read before restore: restore would hide a limit set
	// against GOMEMLIMIT.
	t.Setenv("GOMEMLIMIT", "3GiB")
	restore = LimitMemoryUnlessSet()
	got := debug.SetMemoryLimit(-1)
	restore()
	if got != 3<<30 {
		t.Errorf("with GOMEMLIMIT set: limit %d, want it left at %d", got, 3<<30)
	}
}
