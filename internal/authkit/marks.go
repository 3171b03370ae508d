package authkit

import (
	"cmp"
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// Marks remembers single-use identifiers (a launch-token's jti, a used
// code) until they expire. A mark costs a 16-byte digest of its key and
// an expiry, with no pointer for the collector to follow: a fraction of
// a Store entry (a map slot, a key, a value and its place in the write
// order). A server under sustained load holds one for every
// launch-token of the last few minutes and every code of the last one.
// Two keys would share a mark only if their SHA-256 digests agreed on
// 128 bits.
//
// Marks are kept in one map per minute of expiry, and a minute's map is
// dropped whole once the minute has passed: expiry deletes nothing one
// mark at a time, so the maps do not fill with the leftovers of
// deletions (Go maps do not give that space back), and dropping the
// expired marks costs the same however many there are. A check looks in
// each live minute, a handful for the lifetimes servers use. Marks whose
// expiry minute lies more than markMinutes after the current one are
// kept apart and purged one by one, on the first write after every
// PurgeEvery of the clock.
// Safe for concurrent use.
type Marks struct {
	now       func() time.Time
	mu        sync.Mutex
	minutes   []markMinute       // ascending by minute
	far       map[[16]byte]int64 // digest -> expiry, marks beyond markMinutes
	nextPurge int64              // unix seconds: when far is purged next
}

// markMinutes is how many minutes after the current one a mark's
// expiry minute may lie for the mark to go in a minute's map: it covers
// the default lifetimes (a code's minute, a launch-token's five and the
// grace a partner adds) with room to spare.
const markMinutes = 16

// markMinute holds the marks that expire within one minute.
type markMinute struct {
	minute int64              // unix seconds / 60 of every expiry here
	m      map[[16]byte]uint8 // digest -> second of the minute it expires
}

// NewMarks returns an empty set using now (nil: time.Now).
func NewMarks(now func() time.Time) *Marks {
	if now == nil {
		now = time.Now
	}
	return &Marks{now: now, far: map[[16]byte]int64{}}
}

func markDigest(key string) [16]byte {
	sum := sha256.Sum256([]byte(key))
	return [16]byte(sum[:16])
}

// Use records key's use until exp. It answers ErrExists when key was
// used before and its mark has not expired: the caller must refuse.
func (s *Marks) Use(key string, exp time.Time) error {
	d := markDigest(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Unix()
	s.expire(now)
	if s.until(d) > now {
		return ErrExists
	}
	s.put(d, exp.Unix(), now)
	return nil
}

// Mark records key as used until exp, whether or not it was. A mark is
// never shortened.
func (s *Marks) Mark(key string, exp time.Time) {
	d := markDigest(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Unix()
	s.expire(now)
	if e := exp.Unix(); e > s.until(d) {
		s.put(d, e, now)
	}
}

// Forget drops key's mark.
func (s *Marks) Forget(key string) {
	d := markDigest(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.minutes {
		delete(g.m, d)
	}
	delete(s.far, d)
}

// Len is the number of marks held, expired ones not yet dropped
// included; a key marked again with a later expiry counts twice until
// its earlier mark is dropped.
func (s *Marks) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.far)
	for _, g := range s.minutes {
		n += len(g.m)
	}
	return n
}

// Purge drops the expired marks now, those of the current minute one
// by one.
func (s *Marks) Purge() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().Unix()
	s.dropPassedMinutes(now)
	s.purgeFar(now)
	if len(s.minutes) > 0 && s.minutes[0].minute == now/60 {
		g := s.minutes[0]
		for d, sec := range g.m {
			if g.minute*60+int64(sec) <= now {
				delete(g.m, d)
			}
		}
	}
}

// until is the latest expiry marked for d, 0 if none.
func (s *Marks) until(d [16]byte) int64 {
	u := s.far[d]
	for _, g := range s.minutes {
		if sec, ok := g.m[d]; ok {
			u = max(u, g.minute*60+int64(sec))
		}
	}
	return u
}

// put marks d until exp.
func (s *Marks) put(d [16]byte, exp, now int64) {
	minute := exp / 60
	if exp < 0 || minute > now/60+markMinutes {
		s.far[d] = exp
		return
	}
	i, found := slices.BinarySearchFunc(s.minutes, minute, func(g markMinute, m int64) int {
		return cmp.Compare(g.minute, m)
	})
	if !found {
		s.minutes = slices.Insert(s.minutes, i, markMinute{minute: minute, m: map[[16]byte]uint8{}})
	}
	s.minutes[i].m[d] = uint8(exp - minute*60)
}

// expire drops the minutes that have passed and, every PurgeEvery, the
// expired far marks.
func (s *Marks) expire(now int64) {
	s.dropPassedMinutes(now)
	if len(s.far) > 0 && now >= s.nextPurge {
		s.purgeFar(now)
	}
}

// dropPassedMinutes drops the minutes whose every mark has expired.
func (s *Marks) dropPassedMinutes(now int64) {
	n := 0
	for n < len(s.minutes) && s.minutes[n].minute < now/60 {
		n++
	}
	s.minutes = slices.Delete(s.minutes, 0, n)
}

// purgeFar drops the expired far marks, rebuilding the map when most
// went.
func (s *Marks) purgeFar(now int64) {
	s.nextPurge = now + int64(PurgeEvery/time.Second)
	n := 0
	for d, until := range s.far {
		if until <= now {
			delete(s.far, d)
			n++
		}
	}
	if n > 2*len(s.far) {
		m := make(map[[16]byte]int64, len(s.far))
		for d, until := range s.far {
			m[d] = until
		}
		s.far = m
	}
}
