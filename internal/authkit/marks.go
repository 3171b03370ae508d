package authkit

import (
	"crypto/sha256"
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
// Expired marks are dropped by the first write after every PurgeEvery of
// the clock. Safe for concurrent use.
type Marks struct {
	now       func() time.Time
	mu        sync.Mutex
	m         map[[16]byte]int64 // digest -> expiry, unix seconds
	nextPurge time.Time
}

// NewMarks returns an empty set using now (nil: time.Now).
func NewMarks(now func() time.Time) *Marks {
	if now == nil {
		now = time.Now
	}
	return &Marks{now: now, m: map[[16]byte]int64{}}
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
	now := s.now()
	s.maybePurge(now)
	if until, ok := s.m[d]; ok && now.Unix() < until {
		return ErrExists
	}
	s.m[d] = exp.Unix()
	return nil
}

// Mark records key as used until exp, whether or not it was.
func (s *Marks) Mark(key string, exp time.Time) {
	d := markDigest(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybePurge(s.now())
	s.m[d] = max(s.m[d], exp.Unix())
}

// Forget drops key's mark.
func (s *Marks) Forget(key string) {
	d := markDigest(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, d)
}

// Len is the number of marks held, expired ones not yet purged included.
func (s *Marks) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Purge drops the expired marks now.
func (s *Marks) Purge() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.nextPurge = now.Add(PurgeEvery)
	s.purge(now)
}

func (s *Marks) maybePurge(now time.Time) {
	if now.Before(s.nextPurge) {
		return
	}
	s.nextPurge = now.Add(PurgeEvery)
	s.purge(now)
}

// purge drops expired marks, rebuilding the map when most went (Go maps
// never give back the space of deleted entries).
func (s *Marks) purge(now time.Time) {
	t, n := now.Unix(), 0
	for d, until := range s.m {
		if until <= t {
			delete(s.m, d)
			n++
		}
	}
	if n > 2*len(s.m) {
		m := make(map[[16]byte]int64, len(s.m))
		for d, until := range s.m {
			m[d] = until
		}
		s.m = m
	}
}
