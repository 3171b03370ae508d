package authkit

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

// MemStore drops expired entries on the first write after PurgeEvery of
// its clock, keeps live and never-expiring ones, and gives back emptied
// buckets.
func TestMemStorePurgesExpiredOnWrite(t *testing.T) {
	ctx := t.Context()
	ck := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := NewMemStore(ck.Now)
	for i := range 1000 {
		k := strconv.Itoa(i)
		if err := s.Put(ctx, "short", k, []byte("v"), ck.Now().Add(30*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, "marks", k, []byte{1}, ck.Now().Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "keys", "k", []byte("forever"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 2001 {
		t.Fatalf("Len %d, want 2001", n)
	}
	// Expired, but no interval has passed since the first write's purge:
	// the entries are absent to readers and still held.
	ck.Add(PurgeEvery - time.Second)
	if _, err := s.Get(ctx, "short", "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired entry read: %v", err)
	}
	if err := s.Put(ctx, "other", "x", []byte("v"), ck.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 2002 {
		t.Fatalf("purged before the interval: Len %d", n)
	}
	// The next write after the interval drops the expired ones only.
	ck.Add(2 * time.Second)
	if err := s.Put(ctx, "other", "y", []byte("v"), ck.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 1003 {
		t.Fatalf("after purge: Len %d, want 1003 (marks, keys, other)", n)
	}
	if _, err := s.Get(ctx, "marks", "999"); err != nil {
		t.Fatalf("live entry lost: %v", err)
	}
	// A still-live mark keeps refusing a second Add across purges.
	if err := s.Add(ctx, "marks", "5", []byte{1}, ck.Now().Add(time.Hour)); !errors.Is(err, ErrExists) {
		t.Fatalf("Add over a live mark: %v", err)
	}
	// Everything with an expiry gone; Purge does it without a write.
	ck.Add(2 * time.Hour)
	n, err := s.Purge(ctx)
	if err != nil || n != 1002 {
		t.Fatalf("Purge dropped %d (%v), want 1002", n, err)
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len %d after full purge, want the never-expiring key", n)
	}
	if v, err := s.Get(ctx, "keys", "k"); err != nil || string(v) != "forever" {
		t.Fatalf("never-expiring entry: %q %v", v, err)
	}
	// An expired mark no longer refuses (and is not resurrected).
	if err := s.Add(ctx, "marks", "5", []byte{2}, ck.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Add after expiry: %v", err)
	}
}

// SQLStore deletes expired rows on the first write after PurgeEvery.
func TestSQLStorePurgesExpiredOnWrite(t *testing.T) {
	ctx := t.Context()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), "p.db"), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ck := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := &SQLStore{Write: db.Write, Read: db.Read, Now: ck.Now}
	for i := range 50 {
		if err := s.Put(ctx, "refresh", strconv.Itoa(i), []byte("v"), ck.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "keys", "k", []byte("forever"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	rows := func() int {
		var n int
		if err := db.Read.QueryRowContext(ctx, `SELECT count(*) FROM authkit_kv`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ck.Add(PurgeEvery + time.Second)
	if n := rows(); n != 51 {
		t.Fatalf("rows %d before a write, want 51", n)
	}
	if err := s.Add(ctx, "marks", "m", []byte{1}, ck.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 2 {
		t.Fatalf("rows %d after the write, want 2 (keys, marks)", n)
	}
	ck.Add(2 * time.Hour)
	if n, err := s.Purge(ctx); err != nil || n != 1 {
		t.Fatalf("Purge deleted %d (%v), want 1", n, err)
	}
}

// A session that signs nobody in lives as long as a pending request; a
// sign-in keeps its own lifetime.
func TestSessionLifetimes(t *testing.T) {
	ctx := t.Context()
	ck := &testClock{now: time.Unix(1_700_000_000, 0)}
	st := NewMemStore(ck.Now)
	s := &Sessions{Store: st, Cookie: "c", Issuer: "http://as/auth", Life: 8 * time.Hour, BindLife: 15 * time.Minute, Now: ck.Now}
	if err := s.Save(ctx, &Session{ID: "anon"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, &Session{ID: "user", Username: "doc", AuthTime: ck.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	load := func(id string) bool {
		r := httptest.NewRequest("GET", "http://as/auth/authorize", nil)
		r.Header.Set("Cookie", "c="+id)
		_, ok := s.Load(context.Background(), r)
		return ok
	}
	if !load("anon") || !load("user") {
		t.Fatal("fresh sessions not found")
	}
	ck.Add(16 * time.Minute)
	if load("anon") {
		t.Error("a binding-only session outlived a pending request")
	}
	if !load("user") {
		t.Error("a sign-in ended with the request lifetime")
	}
	ck.Add(8 * time.Hour)
	if load("user") {
		t.Error("a sign-in outlived its lifetime")
	}
	if n, _ := st.Purge(ctx); n != 2 || st.Len() != 0 {
		t.Errorf("purge dropped %d, %d left", n, st.Len())
	}
}

// The used-code mark outlives the code and no more: a replay within the
// code's lifetime reaches onReplay, one after it is merely refused. The
// mark is all a use leaves.
func TestCodeMarkLifetime(t *testing.T) {
	ctx := t.Context()
	ck := &testClock{now: time.Unix(1_700_000_000, 0)}
	st := NewMemStore(ck.Now)
	codes := NewCodes(st, time.Minute, ck.Now)
	code, err := codes.Issue(ctx, "rec")
	if err != nil {
		t.Fatal(err)
	}
	ck.Add(30 * time.Second)
	var rec string
	if _, err := codes.Redeem(ctx, code, &rec, nil); err != nil {
		t.Fatal(err)
	}
	if n := st.Len(); n != 0 || codes.used.Len() != 1 {
		t.Fatalf("after the use: %d store entries, %d marks; want 0 and 1", n, codes.used.Len())
	}
	replays := 0
	ck.Add(59 * time.Second) // the code itself would have expired 30 s ago
	if _, err := codes.Redeem(ctx, code, &rec, func(CodeUse) { replays++ }); !errors.Is(err, ErrInvalidGrant) || replays != 1 {
		t.Fatalf("replay within the mark's life: %v, %d replays", err, replays)
	}
	ck.Add(2 * time.Second)
	codes.used.Purge()
	if n := codes.used.Len(); n != 0 {
		t.Fatalf("purge left %d marks", n)
	}
	if _, err := codes.Redeem(ctx, code, &rec, func(CodeUse) { replays++ }); !errors.Is(err, ErrInvalidGrant) || replays != 1 {
		t.Fatalf("late replay: %v, %d replays", err, replays)
	}
	if st.Len() != 0 || codes.used.Len() != 0 {
		t.Fatalf("a refused late replay left %d entries and %d marks", st.Len(), codes.used.Len())
	}
}

// A limited bucket keeps its newest writes; a rewrite counts as new, a
// swap does not, and other buckets are not touched. Churn far beyond the
// limit keeps the write order bounded.
func TestMemStoreLimit(t *testing.T) {
	ctx := context.Background()
	st := NewMemStore(nil)
	st.Limit("s", 3)
	put := func(k string) {
		t.Helper()
		if err := st.Put(ctx, "s", k, []byte(k), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(k string) bool {
		_, err := st.Get(ctx, "s", k)
		return err == nil
	}
	for _, k := range []string{"a", "b", "c"} {
		put(k)
	}
	if err := st.Put(ctx, "other", "x", []byte("x"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	put("a") // rewritten: now the newest
	put("d") // evicts b, the oldest
	if has("b") || !has("a") || !has("c") || !has("d") {
		t.Fatalf("after rewrite of a and write of d: a=%v b=%v c=%v d=%v", has("a"), has("b"), has("c"), has("d"))
	}
	if err := st.Swap(ctx, "s", "c", []byte("c"), []byte("c2"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	put("e") // c is still the oldest write: a swap does not renew it
	if has("c") || !has("a") || !has("d") || !has("e") {
		t.Fatalf("after swap of c and write of e: a=%v c=%v d=%v e=%v", has("a"), has("c"), has("d"), has("e"))
	}
	if err := st.Delete(ctx, "s", "a"); err != nil {
		t.Fatal(err)
	}
	put("f") // a's slot was freed by the delete: nothing else goes
	if !has("d") || !has("e") || !has("f") {
		t.Fatalf("after delete of a and write of f: d=%v e=%v f=%v", has("d"), has("e"), has("f"))
	}
	if _, err := st.Get(ctx, "other", "x"); err != nil {
		t.Fatalf("unlimited bucket lost its entry: %v", err)
	}
	for i := range 10_000 {
		put(strconv.Itoa(i % 7))
		if i%3 == 0 {
			_ = st.Delete(ctx, "s", strconv.Itoa(i%5))
		}
	}
	st.mu.Lock()
	n, order := len(st.m["s"].items), len(st.m["s"].order.keys)
	st.mu.Unlock()
	if n > 3 || order > 2*3+64+1 {
		t.Fatalf("after churn: %d entries (limit 3), write order of %d", n, order)
	}
}

// Entries of one lifetime go with the first write to their bucket after
// they expire, not a PurgeEvery later: a bucket of pending requests or
// launch contexts holds the last lifetime of them, not up to a minute
// more. Other buckets wait for their own writes; taken entries leave no
// trail.
func TestMemStoreDropsExpiredInWriteOrder(t *testing.T) {
	ctx := t.Context()
	t0 := time.Unix(1_700_000_000, 0)
	ck := &testClock{now: t0}
	s := NewMemStore(ck.Now)
	add := func(bucket, key string, life time.Duration) {
		t.Helper()
		if err := s.Add(ctx, bucket, key, []byte(key), ck.Now().Add(life)); err != nil {
			t.Fatal(err)
		}
	}
	held := func(bucket string) (n, order int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		b := s.m[bucket]
		return len(b.items), len(b.order.keys) - b.order.head
	}
	// Entry i is written at i×100 ms and expires 30 s later.
	for i := range 100 {
		add("used", strconv.Itoa(i), 30*time.Second)
		add("other", strconv.Itoa(i), 30*time.Second)
		ck.Add(100 * time.Millisecond)
	}
	// At 35 s (the next full purge is at 60 s) entries 0 to 50 have
	// expired: a write to their bucket drops them, and only them.
	ck.now = t0.Add(35 * time.Second)
	add("used", "new", 30*time.Second)
	if n, order := held("used"); n != 50 || order != 50 {
		t.Fatalf("after a write at 35 s: %d entries held (want 49 and the new one), write order %d", n, order)
	}
	if _, err := s.Get(ctx, "used", "51"); err != nil {
		t.Fatalf("a live entry went: %v", err)
	}
	if n, _ := held("other"); n != 100 {
		t.Fatalf("a bucket nobody wrote to lost entries early: %d of 100 held", n)
	}
	// Codes: written and taken at once, over and over.
	for i := range 1000 {
		add("code", strconv.Itoa(i), time.Minute)
		if _, err := s.Take(ctx, "code", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, order := held("code"); n != 0 || order > 1 {
		t.Fatalf("1000 codes written and taken: %d held, write order of %d", n, order)
	}
}

// An entry a Swap extended is not dropped at its first expiry, and holds
// the expired entries written after it until the next full purge, which
// drops them; a never-expiring entry does the same.
func TestMemStoreWriteOrderKeepsExtendedEntries(t *testing.T) {
	ctx := t.Context()
	ck := &testClock{now: time.Unix(1_700_000_000, 0)}
	s := NewMemStore(ck.Now)
	put := func(bucket, key string, exp time.Time) {
		t.Helper()
		if err := s.Put(ctx, bucket, key, []byte("v"), exp); err != nil {
			t.Fatal(err)
		}
	}
	put("refresh", "family", ck.Now().Add(time.Second))
	if err := s.Swap(ctx, "refresh", "family", []byte("v"), []byte("v2"), ck.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	put("refresh", "short", ck.Now().Add(time.Second))
	put("keys", "forever", time.Time{})
	put("keys", "short", ck.Now().Add(time.Second))
	ck.Add(10 * time.Second)
	put("refresh", "later", ck.Now().Add(time.Hour))
	put("keys", "later", ck.Now().Add(time.Hour))
	if v, err := s.Get(ctx, "refresh", "family"); err != nil || string(v) != "v2" {
		t.Fatalf("the extended entry: %q, %v", v, err)
	}
	if _, err := s.Get(ctx, "keys", "forever"); err != nil {
		t.Fatalf("the never-expiring entry: %v", err)
	}
	if n := s.Len(); n != 6 {
		t.Fatalf("Len %d, want 6: the expired entries wait behind the live ones", n)
	}
	ck.Add(PurgeEvery)
	put("other", "x", time.Time{})
	if n := s.Len(); n != 5 {
		t.Fatalf("Len %d after the full purge, want 5", n)
	}
	for _, k := range [][2]string{{"refresh", "short"}, {"keys", "short"}} {
		if _, err := s.Get(ctx, k[0], k[1]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s/%s after the purge: %v", k[0], k[1], err)
		}
	}
}
