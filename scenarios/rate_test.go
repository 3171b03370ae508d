package scenarios

import (
	"math"
	"testing"
	"time"
)

func TestDueAfter(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		rate float64
		want time.Duration
	}{
		{1, 20, 0},
		{2, 20, 50 * time.Millisecond},
		{40, 20, 1950 * time.Millisecond},
		{801, 800, time.Second},
		{3, 0.5, 4 * time.Second},
		// A flow due later than a Duration holds is due at its end, not
		// wrapped into the past.
		{2, 1e-10, math.MaxInt64},
		{math.MaxInt64, 1, math.MaxInt64},
	} {
		if got := dueAfter(tc.n, tc.rate); got != tc.want {
			t.Errorf("dueAfter(%d, %g) = %v, want %v", tc.n, tc.rate, got, tc.want)
		}
	}
}
