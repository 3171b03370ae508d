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
		{live: 1 * mib, roots: 1 * mib, floor: 2 * mib, want: 100},     // never under the default pace
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

// cycles is the number of completed GC cycles so far.
func cycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var sink []byte

// churn allocates n bytes of garbage in 64 KiB pieces.
func churn(n int) {
	for i := 0; i < n/(64<<10); i++ {
		sink = make([]byte, 64<<10)
	}
	sink = nil
}

// TestFloorCutsCycles allocates the same garbage with the default pace and
// then under a 64 MiB floor: the live heap of a test binary is a few MiB,
// so the default pace collects every few MiB and the floor every ~64 MiB.
func TestFloorCutsCycles(t *testing.T) {
	const floor = 64 << 20
	const garbage = 512 << 20
	runtime.GC()
	c0 := cycles()
	churn(garbage)
	paced := cycles() - c0

	tuner := Start(floor)
	runtime.GC() // the tuner now knows the live heap
	if p := tuner.Percent(); p <= 100 {
		t.Fatalf("GOGC under a %d-byte floor = %d, want more than 100 for a small live heap", floor, p)
	}
	c1 := cycles()
	churn(garbage)
	floored := cycles() - c1
	tuner.Stop()

	t.Logf("cycles for %d MiB of garbage: %d at GOGC=100, %d with a %d MiB floor", garbage>>20, paced, floored, floor>>20)
	if floored > garbage/floor+4 {
		t.Errorf("%d cycles with the floor, want at most %d", floored, garbage/floor+4)
	}
	if floored*4 > paced {
		t.Errorf("%d cycles with the floor against %d without: want at least 4× fewer", floored, paced)
	}
}

func TestStopRestores(t *testing.T) {
	old := debug.SetGCPercent(150)
	defer debug.SetGCPercent(old)
	tuner := Start(256 << 20)
	runtime.GC()
	runtime.GC()
	tuner.Stop()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GOGC after Stop = %d, want 150 as before Start", got)
	}
	// A cycle after Stop leaves GOGC alone.
	runtime.GC()
	runtime.GC()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GOGC after a cycle past Stop = %d, want 150", got)
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
	// The tuner runs on the runtime's cleanup goroutine after each cycle.
	deadline := time.Now().Add(5 * time.Second)
	for tuner.Percent() != 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := tuner.Percent(); p != 100 {
		t.Errorf("GOGC with 48 MiB live under a 64 MiB floor = %d, want 100", p)
	}
	runtime.KeepAlive(live)
}
