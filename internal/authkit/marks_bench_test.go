package authkit

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkMarksSteadyChurn uses marks at a steady 1 000 a second of a
// simulated clock, each for five minutes, as a launch-token check does
// under load. It reports the cost of a use (ns/op) and the heap held
// per live mark after ten simulated minutes and at the end: if
// expiring marks left space behind, the second would keep rising with
// -benchtime (3.6 M uses is an hour).
func BenchmarkMarksSteadyChurn(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	m := NewMarks(func() time.Time { return now })
	const perSecond, life = 1000, 5 * time.Minute
	heap := func() float64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	base := heap()
	heapPerMark := func() float64 { return (heap() - base) / float64(m.Len()) }
	keys := make([]string, perSecond)
	at10 := 0.0
	b.ResetTimer()
	for i := range b.N {
		if i%perSecond == 0 {
			b.StopTimer()
			now = now.Add(time.Second)
			if i == 600*perSecond {
				at10 = heapPerMark()
			}
			for k := range keys {
				keys[k] = "jti-" + strconv.Itoa(i+k)
			}
			b.StartTimer()
		}
		if err := m.Use(keys[i%perSecond], now.Add(life)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if at10 > 0 {
		b.ReportMetric(at10, "B/mark@10min")
	}
	b.ReportMetric(heapPerMark(), "B/mark@end")
}
