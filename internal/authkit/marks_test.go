package authkit

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestMarksSingleUseUntilExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	m := NewMarks(clock)
	if err := m.Use("jti-1", now.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := m.Use("jti-1", now.Add(5*time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("second use: %v, want ErrExists", err)
	}
	if err := m.Use("jti-2", now.Add(time.Minute)); err != nil {
		t.Fatalf("another key: %v", err)
	}
	// Mark never shortens a mark.
	m.Mark("jti-1", now.Add(time.Second))
	now = now.Add(2 * time.Minute)
	if err := m.Use("jti-1", now.Add(5*time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("use within the first mark's life: %v, want ErrExists", err)
	}
	if err := m.Use("jti-2", now.Add(time.Minute)); err != nil {
		t.Fatalf("use after the mark expired: %v", err)
	}
	// Expired marks go at the next write after PurgeEvery.
	now = now.Add(10 * time.Minute)
	m.Mark("jti-3", now.Add(time.Minute))
	if n := m.Len(); n != 1 {
		t.Fatalf("%d marks after the purge, want 1", n)
	}
}

func TestMarksConcurrentUseOnlyOneWins(t *testing.T) {
	m := NewMarks(nil)
	exp := time.Now().Add(time.Minute)
	for k := range 50 {
		key := "jti-" + strconv.Itoa(k)
		var wins sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for range 8 {
			wins.Add(1)
			go func() {
				defer wins.Done()
				if m.Use(key, exp) == nil {
					mu.Lock()
					won++
					mu.Unlock()
				}
			}()
		}
		wins.Wait()
		if won != 1 {
			t.Fatalf("%s: %d uses succeeded, want exactly 1", key, won)
		}
	}
}

// A token whose exp lies centuries ahead is still single use.
func TestMarksFarFutureExpiry(t *testing.T) {
	m := NewMarks(nil)
	far := time.Unix(1<<40, 0) // year 36812
	if err := m.Use("jti-far", far); err != nil {
		t.Fatal(err)
	}
	if err := m.Use("jti-far", far); !errors.Is(err, ErrExists) {
		t.Fatalf("second use of a far-future token: %v, want ErrExists", err)
	}
}
