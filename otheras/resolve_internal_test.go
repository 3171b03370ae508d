package otheras

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
)

// A launch-token's mark lasts a minute past the token, and a token whose
// exp lies at the int64 limit stays single use: its mark's expiry
// saturates instead of wrapping into the past.
func TestLaunchMarkExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	if got := launchMarkExpiry(now.Unix()); !got.Equal(now.Add(time.Minute)) {
		t.Errorf("mark of a token expiring now goes at %v, want a minute later", got)
	}
	marks := authkit.NewMarks(func() time.Time { return now })
	for _, exp := range []int64{math.MaxInt64, math.MaxInt64 - 60, math.MaxInt64 - 61} {
		key := time.Unix(exp, 0).String()
		if err := marks.Use(key, launchMarkExpiry(exp)); err != nil {
			t.Fatalf("exp %d: first use: %v", exp, err)
		}
		if err := marks.Use(key, launchMarkExpiry(exp)); !errors.Is(err, authkit.ErrExists) {
			t.Errorf("exp %d: second use: %v, want ErrExists", exp, err)
		}
	}
}
