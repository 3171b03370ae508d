package scenarios_test

import (
	"context"
	"testing"

	"github.com/smart-sim/sim/scenarios"
)

// BenchmarkStartDefaultWorld measures `sim serve` start-up on the default
// world: listen, generate both directories, load them into two fresh SQLite
// stores, start both authorization servers. Goal: ≤ 1 s.
func BenchmarkStartDefaultWorld(b *testing.B) {
	w := scenarios.DefaultWorld()
	for b.Loop() {
		r, err := scenarios.Start(b.Context(), w, scenarios.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r.Close(context.Background())
		b.StartTimer()
	}
}
