// Package gcfloor is sim's collector policy: it keeps the Go collector's
// heap goal at or above a floor, and sets a soft memory limit.
//
// The collector's default pace (GOGC=100) starts a cycle whenever the heap
// has grown by as much as was live after the last one. sim's live heap is
// small (about 40 MB on the default world) and a two-server flow allocates
// about 0.5 MB, so under load the default pace collects ten times a
// second, and collection takes about a tenth of the CPU. With a floor the
// heap may grow to the floor before a cycle starts; once the live heap is
// above half the floor, GOGC=100 applies as usual. The soft memory limit
// (GOMEMLIMIT) still caps the heap whatever the floor says.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Default is the floor sim runs with unless GOGC is set (cmd/sim, and the
// flow benchmarks, so that they measure what the binary does): well above
// the default world's 40 MB live heap, and small next to the memory of any
// machine that builds sim.
const Default = 192 << 20

// MemoryLimit is the runtime's soft memory limit in sim unless GOMEMLIMIT
// is set (cmd/sim, and the benchmarks of a world's generation and first
// load): generating and loading a large world makes garbage faster than
// the collector's default pace returns it (1 M patients per side peaked at
// 1.9 GB without a limit, 1.1 GB with one, in generation alone). A soft
// limit never fails an allocation; it only makes the collector work
// harder near it.
const MemoryLimit = 1 << 30

// LimitMemoryUnlessSet sets the soft memory limit to MemoryLimit unless
// GOMEMLIMIT is set, and returns what puts the limit before back.
func LimitMemoryUnlessSet() (restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	before := debug.SetMemoryLimit(MemoryLimit)
	return func() { debug.SetMemoryLimit(before) }
}

// The runtime metrics the heap goal is made of: the heap the last cycle
// marked live, and the stacks and globals it scanned.
var goalMetrics = [3]string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// Tuner sets GOGC after every collection so that the next heap goal is at
// least its floor. Stop it to give GOGC back.
type Tuner struct {
	floor uint64

	mu      sync.Mutex
	stopped bool
	percent int // what GOGC is set to now
	before  int // what GOGC was before Start
	tuned   int // how many times tune has run
	sample  [len(goalMetrics)]metrics.Sample
}

// sentinel is allocated and dropped at once; its cleanup runs after the
// collection that finds it unreachable, that is once per cycle. It holds a
// pointer so that it is never tiny-allocated alongside other objects
// (which could keep it alive).
type sentinel struct{ _ *Tuner }

// Start sets GOGC for a heap goal of at least floor bytes now and after
// every collection until Stop.
func Start(floor uint64) *Tuner {
	t := &Tuner{floor: floor}
	for i, name := range goalMetrics {
		t.sample[i].Name = name
	}
	t.before = debug.SetGCPercent(100)
	t.percent = 100
	t.tune()
	t.arm()
	return t
}

// StartUnlessSet starts a tuner with the Default floor unless GOGC is set
// in the environment (then the runtime's own policy stands and it returns
// nil). It is sim's policy: the binary and the flow benchmarks use it.
func StartUnlessSet() *Tuner {
	if os.Getenv("GOGC") != "" {
		return nil
	}
	return Start(Default)
}

// Percent is the GOGC value the tuner last set.
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent
}

// Stop ends the tuning and restores GOGC as it was before Start. A nil
// Tuner (StartUnlessSet with GOGC set) has nothing to stop.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(t.before)
		t.percent = t.before
	}
}

// arm drops a new sentinel, so that the end of the next cycle calls tune
// again.
func (t *Tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *Tuner) {
		if t.tune() {
			t.arm()
		}
	}, t)
}

// tune sets GOGC from the heap the last cycle found live; it reports
// whether the tuner is still running.
func (t *Tuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.tuned++
	metrics.Read(t.sample[:])
	var v [len(goalMetrics)]uint64
	for i, s := range t.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	if p := Percent(v[0], v[1]+v[2], t.floor); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	return true
}

// minimumHeap is the runtime's smallest heap goal at GOGC=100; the
// runtime scales it with GOGC, so GOGC above floor/minimumHeap × 100 would
// put the goal above the floor however small the live heap is.
const minimumHeap = 4 << 20

// Percent is the GOGC value that puts the heap goal after a cycle at the
// floor, or above it once the live heap is half the floor: the runtime's
// goal is the larger of live + (live + roots) × GOGC/100 (roots: the
// stacks and globals the cycle scanned) and 4 MiB × GOGC/100. It is never
// under the default pace, 100.
func Percent(live, roots, floor uint64) int {
	if live >= floor/2 {
		return 100
	}
	ceiling := floor * 100 / minimumHeap
	scanned := live + roots
	p := ceiling
	if scanned > 0 {
		p = min(p, ((floor-live)*100+scanned-1)/scanned)
	}
	return int(max(100, p))
}
