package scenarios

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// BenchmarkRetainedHeapPerFlow runs direction-A flows against an own world
// and reports how much live heap the world keeps per flow afterwards
// (after a GC): what a long `sim serve` under load grows by. With
// SIM_BENCH_HEAPPROFILE=FILE it writes the live heap at the end, before
// the world closes (`go tool pprof -sample_index=inuse_space`).
func BenchmarkRetainedHeapPerFlow(b *testing.B) {
	plan, f := benchPlan(b, DirectionA)
	var n int64
	// Warm up: caches, pools and connections fill first.
	for range 50 {
		n++
		if kind := plan.runOne(b.Context(), f, n); kind != "" {
			b.Fatal(kind)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		n++
		if kind := plan.runOne(b.Context(), f, n); kind != "" {
			b.Fatal(kind)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "retained-B/flow")
	if path := os.Getenv("SIM_BENCH_HEAPPROFILE"); path != "" {
		fh, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer fh.Close()
		if err := pprof.Lookup("heap").WriteTo(fh, 0); err != nil {
			b.Fatal(err)
		}
	}
}
