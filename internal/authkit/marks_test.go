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
	// The minutes that have passed go at the next write.
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

// Mark never shortens a mark, even within the minute it expires in.
func TestMarksNeverShortenWithinAMinute(t *testing.T) {
	base := time.Unix(1_800_000_000/60*60, 0)
	now := base
	m := NewMarks(func() time.Time { return now })
	if err := m.Use("k", base.Add(50*time.Second)); err != nil {
		t.Fatal(err)
	}
	m.Mark("k", base.Add(10*time.Second))
	now = base.Add(20 * time.Second)
	if err := m.Use("k", now.Add(time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("after a shorter Mark: %v, want ErrExists", err)
	}
}

// Purge drops the expired marks of the current minute and keeps its live
// ones; an expiry before 1970 is simply expired.
func TestMarksPurgeKeepsLiveMarks(t *testing.T) {
	base := time.Unix(1_800_000_000/60*60, 0)
	now := base
	m := NewMarks(func() time.Time { return now })
	for _, k := range []string{"a", "b", "c"} {
		if err := m.Use(k, base.Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Use("live", base.Add(11*time.Second)); err != nil {
		t.Fatal(err)
	}
	now = base.Add(10 * time.Second)
	m.Purge()
	if n := m.Len(); n != 1 {
		t.Fatalf("%d marks after the purge, want 1 (the live one)", n)
	}
	if err := m.Use("live", now.Add(time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("the live mark after the purge: %v, want ErrExists", err)
	}
	for range 2 {
		if err := m.Use("before-1970", time.Unix(-5, 0)); err != nil {
			t.Fatalf("a mark expired before 1970: %v", err)
		}
	}
}

// A mark refuses its key up to the last second before its expiry, in
// whichever minute that falls, and not from its expiry on.
func TestMarksExpireToTheSecond(t *testing.T) {
	base := int64(1_800_000_000 / 60 * 60) // the start of a minute
	for _, life := range []int64{1, 59, 60, 61, 299, 300, 301, 16*60 - 1, 16 * 60, 16*60 + 1, 3600} {
		for _, offset := range []int64{0, 1, 30, 59} {
			now := base + offset
			m := NewMarks(func() time.Time { return time.Unix(now, 0) })
			exp := time.Unix(base+offset+life, 0)
			if err := m.Use("k", exp); err != nil {
				t.Fatal(err)
			}
			now = exp.Unix() - 1
			if err := m.Use("k", exp); !errors.Is(err, ErrExists) {
				t.Fatalf("life %ds from second %d: a second before expiry: %v, want ErrExists", life, offset, err)
			}
			now = exp.Unix()
			if err := m.Use("k", exp.Add(time.Minute)); err != nil {
				t.Fatalf("life %ds from second %d: at expiry: %v", life, offset, err)
			}
		}
	}
}

// Mark extends a key's mark into a later minute: the key stays refused
// after the first minute is dropped. Forget drops it from every minute.
func TestMarksExtendAndForgetAcrossMinutes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := NewMarks(func() time.Time { return now })
	m.Mark("k", now.Add(30*time.Second))
	m.Mark("k", now.Add(5*time.Minute))
	m.Mark("far", now.Add(time.Hour))
	now = now.Add(2 * time.Minute)
	if err := m.Use("k", now.Add(time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("extended mark after its first minute: %v, want ErrExists", err)
	}
	if err := m.Use("far", now.Add(time.Minute)); !errors.Is(err, ErrExists) {
		t.Fatalf("an hour's mark after two minutes: %v, want ErrExists", err)
	}
	m.Mark("k", now.Add(10*time.Minute))
	m.Forget("k")
	m.Forget("far")
	if err := m.Use("k", now.Add(time.Minute)); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
	if err := m.Use("far", now.Add(time.Minute)); err != nil {
		t.Fatalf("far mark after Forget: %v", err)
	}
}

// Under steady churn only the marks of the live minutes are held: a
// passed minute goes whole with the next write, and far marks with the
// first write after PurgeEvery once they expire.
func TestMarksHoldOnlyLiveMinutes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := NewMarks(func() time.Time { return now })
	const perSecond, life = 20, 5 * time.Minute
	k := 0
	for s := range 40 * 60 {
		for range perSecond {
			k++
			if err := m.Use(strconv.Itoa(k), now.Add(life)); err != nil {
				t.Fatal(err)
			}
		}
		if s%600 == 0 {
			m.Mark("far-"+strconv.Itoa(s), now.Add(20*time.Minute))
		}
		now = now.Add(time.Second)
		// Live: up to life plus the minute being filled and the one
		// not yet dropped, and the far marks of the last 20 minutes.
		if n, most := m.Len(), int((life+2*time.Minute)/time.Second)*perSecond+3; n > most {
			t.Fatalf("second %d: %d marks held, want at most %d", s, n, most)
		}
	}
	now = now.Add(30 * time.Minute)
	m.Mark("last", now.Add(time.Minute))
	if n := m.Len(); n != 1 {
		t.Fatalf("%d marks held after every other expired, want 1", n)
	}
}

// FuzzMarks checks Marks against a plain map of expiries over a random
// sequence of uses, marks, forgets, purges and clock steps, with
// lifetimes near minute boundaries, past and far ahead.
func FuzzMarks(f *testing.F) {
	f.Add([]byte{0, 1, 10, 0, 1, 10, 3, 200, 0, 1, 10})
	f.Add([]byte{1, 2, 250, 0, 2, 1, 3, 255, 3, 255, 3, 255, 3, 255, 0, 2, 1, 2, 2, 0, 4, 0, 0, 2, 1})
	f.Add([]byte{0, 3, 59, 0, 4, 60, 0, 5, 61, 3, 59, 0, 3, 1, 0, 4, 1, 3, 2, 0, 5, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		now := int64(1_800_000_000)
		m := NewMarks(func() time.Time { return time.Unix(now, 0) })
		model := map[string]int64{}
		life := func(b byte) int64 {
			switch b % 8 {
			case 0:
				return -int64(b) // already expired
			case 1:
				return 60*int64(b%20) - 1
			case 2:
				return 60 * int64(b%20)
			case 3:
				return 3600 * int64(b) // far ahead
			}
			return int64(b) * 7
		}
		for len(ops) >= 3 {
			op, key, arg := ops[0]%5, strconv.Itoa(int(ops[1]%8)), ops[2]
			ops = ops[3:]
			switch op {
			case 0:
				exp := now + life(arg)
				err := m.Use(key, time.Unix(exp, 0))
				if want := model[key] > now; errors.Is(err, ErrExists) != want {
					t.Fatalf("Use(%s) at %d: %v, model holds it until %d", key, now, err, model[key])
				}
				if model[key] <= now {
					model[key] = exp
				}
			case 1:
				exp := now + life(arg)
				m.Mark(key, time.Unix(exp, 0))
				model[key] = max(model[key], exp)
			case 2:
				m.Forget(key)
				delete(model, key)
			case 3:
				now += int64(arg) * 3
			case 4:
				m.Purge()
			}
		}
	})
}
