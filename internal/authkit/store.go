package authkit

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

// Store errors.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("changed concurrently")
)

// Item is one stored value.
type Item struct {
	Key     string
	Value   []byte
	Expires time.Time // zero: never
}

// Store is a bucketed key/value store with the atomic operations OAuth
// needs: Add (first writer wins: jti replay), Take (get and delete: codes,
// launch contexts, launch-tokens) and Swap (compare-and-swap: refresh
// rotation). Expired items behave as absent.
type Store interface {
	Put(ctx context.Context, bucket, key string, value []byte, expires time.Time) error
	Add(ctx context.Context, bucket, key string, value []byte, expires time.Time) error
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	Take(ctx context.Context, bucket, key string) ([]byte, error)
	Swap(ctx context.Context, bucket, key string, old, new []byte, expires time.Time) error
	Delete(ctx context.Context, bucket, key string) error
	List(ctx context.Context, bucket string) ([]Item, error)
}

// Migrations creates the SQLite table SQLStore uses; pass it (or an fs
// merging it) to sqlitedb.Open.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the SQL migrations SQLStore needs.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// PurgeEvery is how often, at most, a store drops its expired entries:
// the first write after an interval has passed purges (amortised on
// writes, so no goroutine runs and an idle store costs nothing).
const PurgeEvery = time.Minute

// MemStore is an in-memory Store. Every bucket keeps its entries in the
// order they were written, and a write drops the oldest ones that have
// expired (or that a limit pushes out): entries that share a lifetime,
// as codes, launch contexts and pending requests do, are gone as soon as
// they expire and the next write comes. An entry that outlives those
// written after it (a Swap that extended it, a bucket of mixed
// lifetimes) holds the ones behind it until it goes; the first write
// after every PurgeEvery of the clock, or Purge, drops every expired
// entry wherever it is.
type MemStore struct {
	Now       func() time.Time
	mu        sync.Mutex
	m         map[string]*memBucket
	nextPurge time.Time
	seq       uint64
}

// A memBucket is one bucket's entries and the order they were written in.
type memBucket struct {
	items map[string]memItem
	order writeOrder
}

// memItem is a stored value: its key is the map's, and its expiry is in
// unix nanoseconds (0: never).
type memItem struct {
	value []byte
	exp   int64
	seq   uint64 // when it was written: its pair in the write order
}

func (it memItem) live(now int64) bool { return it.exp == 0 || now < it.exp }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// writeOrder is the order a bucket's entries were written in: (key, seq)
// pairs, oldest first from head. A pair whose entry was since rewritten,
// taken or deleted is stale and skipped.
type writeOrder struct {
	max  int // Limit's bound; 0: none
	keys []orderedKey
	head int
}

type orderedKey struct {
	key string
	seq uint64
}

// Limit bounds bucket to max entries: a write that would go beyond it
// drops the bucket's oldest written entry first. Only for entries whose
// loss costs a user a repeat (a sign-in: the browser signs in again),
// never for single-use markers, whose loss would let a replay through.
// It keeps the memory of a server under sustained load flat.
func (s *MemStore) Limit(bucket string, max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bucket(bucket).order.max = max
}

// write stores value under key until exp; called with mu held. It then
// drops, oldest first, the entries that are stale, expired or beyond the
// bucket's limit, up to the first that is none of these.
func (s *MemStore) write(bucket, key string, value []byte, exp time.Time, now int64) {
	b := s.bucket(bucket)
	s.seq++
	b.items[key] = memItem{value: value, exp: unixNano(exp), seq: s.seq}
	o := &b.order
	o.keys = append(o.keys, orderedKey{key, s.seq})
	for o.head < len(o.keys) {
		old := o.keys[o.head]
		cur, ok := b.items[old.key]
		current := ok && cur.seq == old.seq
		if current && cur.live(now) && (o.max == 0 || len(b.items) <= o.max) {
			break
		}
		if current {
			delete(b.items, old.key)
		}
		o.keys[o.head] = orderedKey{}
		o.head++
	}
	if pending := len(o.keys) - o.head; o.head > pending || pending > 2*len(b.items)+64 {
		o.compact(b.items)
	}
}

// compact drops the consumed and stale pairs.
func (o *writeOrder) compact(items map[string]memItem) {
	keep := o.keys[:0]
	for _, k := range o.keys[o.head:] {
		if cur, ok := items[k.key]; ok && cur.seq == k.seq {
			keep = append(keep, k)
		}
	}
	clear(o.keys[len(keep):])
	o.keys, o.head = keep, 0
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty store using now (nil: time.Now).
func NewMemStore(now func() time.Time) *MemStore {
	if now == nil {
		now = time.Now
	}
	return &MemStore{Now: now, m: map[string]*memBucket{}}
}

// maybePurge purges when PurgeEvery has passed since the last purge;
// called with mu held.
func (s *MemStore) maybePurge(now time.Time) {
	if now.Before(s.nextPurge) {
		return
	}
	s.nextPurge = now.Add(PurgeEvery)
	s.purge(now.UnixNano())
}

// purge drops expired items; called with mu held. A bucket that lost
// most of its items is copied into a new map: Go maps never give back
// the space of deleted entries, so a burst would otherwise stay resident.
// Emptied buckets go, unless a limit is set on them.
func (s *MemStore) purge(now int64) (dropped int) {
	for name, b := range s.m {
		n := 0
		for k, it := range b.items {
			if !it.live(now) {
				delete(b.items, k)
				n++
			}
		}
		dropped += n
		switch {
		case len(b.items) == 0 && b.order.max == 0:
			delete(s.m, name)
		case n > 2*len(b.items):
			items := make(map[string]memItem, len(b.items))
			maps.Copy(items, b.items)
			b.items = items
			b.order.compact(items)
		}
	}
	return dropped
}

// Purge drops every expired entry now and says how many it dropped.
func (s *MemStore) Purge(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	s.nextPurge = now.Add(PurgeEvery)
	return s.purge(now.UnixNano()), nil
}

// Len is the number of entries held, expired ones not yet dropped
// included (for tests and monitoring).
func (s *MemStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.m {
		n += len(b.items)
	}
	return n
}

func (s *MemStore) bucket(name string) *memBucket {
	b := s.m[name]
	if b == nil {
		b = &memBucket{items: map[string]memItem{}}
		s.m[name] = b
	}
	return b
}

// item is key's entry in bucket, if it is there and live; called with mu
// held.
func (s *MemStore) item(bucket, key string, now int64) (memItem, bool) {
	b := s.m[bucket]
	if b == nil {
		return memItem{}, false
	}
	it, ok := b.items[key]
	return it, ok && it.live(now)
}

func (s *MemStore) Put(_ context.Context, bucket, key string, value []byte, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	s.maybePurge(now)
	s.write(bucket, key, bytes.Clone(value), exp, now.UnixNano())
	return nil
}

func (s *MemStore) Add(_ context.Context, bucket, key string, value []byte, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	s.maybePurge(now)
	if _, ok := s.item(bucket, key, now.UnixNano()); ok {
		return ErrExists
	}
	s.write(bucket, key, bytes.Clone(value), exp, now.UnixNano())
	return nil
}

func (s *MemStore) Get(_ context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.item(bucket, key, s.Now().UnixNano())
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(it.value), nil
}

func (s *MemStore) Take(_ context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.item(bucket, key, s.Now().UnixNano())
	if b := s.m[bucket]; b != nil {
		delete(b.items, key)
	}
	if !ok {
		return nil, ErrNotFound
	}
	return it.value, nil
}

func (s *MemStore) Swap(_ context.Context, bucket, key string, old, new []byte, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.item(bucket, key, s.Now().UnixNano())
	if !ok {
		return ErrNotFound
	}
	if !bytes.Equal(it.value, old) {
		return ErrConflict
	}
	it.value, it.exp = bytes.Clone(new), unixNano(exp)
	s.m[bucket].items[key] = it // in place: a swap is not a new write
	return nil
}

func (s *MemStore) Delete(_ context.Context, bucket, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.m[bucket]; b != nil {
		delete(b.items, key)
	}
	return nil
}

func (s *MemStore) List(_ context.Context, bucket string) ([]Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now().UnixNano()
	var out []Item
	if b := s.m[bucket]; b != nil {
		for k, it := range b.items {
			if it.live(now) {
				out = append(out, Item{Key: k, Value: bytes.Clone(it.value), Expires: fromUnixNano(it.exp)})
			}
		}
	}
	return out, nil
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// SQLStore is a Store on the authkit_kv table (see Migrations). Write is
// the single-writer pool and Read the reader pool (they may be the same).
// Expired rows are deleted by the first Put or Add after every PurgeEvery
// of its clock (or by Purge); a failed purge is tried again at the next
// interval.
type SQLStore struct {
	Write, Read *sql.DB
	Now         func() time.Time

	nextPurge atomic.Int64 // unix nanoseconds

	stmtsOnce         sync.Once
	writeStm, readStm *sqlitedb.Stmts
}

var _ Store = (*SQLStore)(nil)

// maxStoreStmts bounds the statements kept prepared per pool: the
// store runs a handful of fixed texts.
const maxStoreStmts = 32

// writes and reads return the statements kept prepared on Write and
// Read: every query here runs on each token request, and SQLite's parse
// and plan of a statement costs about as much as running it.
func (s *SQLStore) writes() *sqlitedb.Stmts { s.initStmts(); return s.writeStm }
func (s *SQLStore) reads() *sqlitedb.Stmts  { s.initStmts(); return s.readStm }

func (s *SQLStore) initStmts() {
	s.stmtsOnce.Do(func() {
		s.writeStm = sqlitedb.NewStmts(s.Write, maxStoreStmts)
		s.readStm = sqlitedb.NewStmts(s.Read, maxStoreStmts)
	})
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

func (s *SQLStore) clock() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *SQLStore) now() int64 { return s.clock().Unix() }

// maybePurge purges when PurgeEvery has passed since the last purge; one
// writer claims each interval.
func (s *SQLStore) maybePurge(ctx context.Context) {
	now := s.clock().UnixNano()
	next := s.nextPurge.Load()
	if now < next || !s.nextPurge.CompareAndSwap(next, now+int64(PurgeEvery)) {
		return
	}
	_, _ = s.Purge(ctx)
}

const liveSQL = `(expires = 0 OR expires > ?)`

func (s *SQLStore) Put(ctx context.Context, bucket, key string, value []byte, exp time.Time) error {
	_, err := s.writes().ExecContext(ctx, `INSERT INTO authkit_kv (bucket, key, value, expires) VALUES (?, ?, ?, ?)
		ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
		bucket, key, value, unix(exp))
	if err != nil {
		return fmt.Errorf("put %s: %w", bucket, err)
	}
	s.maybePurge(ctx)
	return nil
}

func (s *SQLStore) Add(ctx context.Context, bucket, key string, value []byte, exp time.Time) error {
	res, err := s.writes().ExecContext(ctx, `INSERT INTO authkit_kv (bucket, key, value, expires) VALUES (?, ?, ?, ?)
		ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, expires = excluded.expires
		WHERE NOT (authkit_kv.expires = 0 OR authkit_kv.expires > ?)`,
		bucket, key, value, unix(exp), s.now())
	if err != nil {
		return fmt.Errorf("add %s: %w", bucket, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	s.maybePurge(ctx)
	return nil
}

func (s *SQLStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	var v []byte
	err := s.reads().QueryRowContext(ctx, `SELECT value FROM authkit_kv WHERE bucket = ? AND key = ? AND `+liveSQL,
		bucket, key, s.now()).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", bucket, err)
	}
	return v, nil
}

func (s *SQLStore) Take(ctx context.Context, bucket, key string) ([]byte, error) {
	var v []byte
	var exp int64
	err := s.writes().QueryRowContext(ctx, `DELETE FROM authkit_kv WHERE bucket = ? AND key = ? RETURNING value, expires`,
		bucket, key).Scan(&v, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("take %s: %w", bucket, err)
	}
	if exp != 0 && exp <= s.now() {
		return nil, ErrNotFound
	}
	return v, nil
}

func (s *SQLStore) Swap(ctx context.Context, bucket, key string, old, new []byte, exp time.Time) error {
	res, err := s.writes().ExecContext(ctx, `UPDATE authkit_kv SET value = ?, expires = ?
		WHERE bucket = ? AND key = ? AND value = ? AND `+liveSQL,
		new, unix(exp), bucket, key, old, s.now())
	if err != nil {
		return fmt.Errorf("swap %s: %w", bucket, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Get(ctx, bucket, key); errors.Is(err, ErrNotFound) {
			return ErrNotFound
		}
		return ErrConflict
	}
	return nil
}

func (s *SQLStore) Delete(ctx context.Context, bucket, key string) error {
	if _, err := s.writes().ExecContext(ctx, `DELETE FROM authkit_kv WHERE bucket = ? AND key = ?`, bucket, key); err != nil {
		return fmt.Errorf("delete %s: %w", bucket, err)
	}
	return nil
}

func (s *SQLStore) List(ctx context.Context, bucket string) ([]Item, error) {
	rows, err := s.Read.QueryContext(ctx, `SELECT key, value, expires FROM authkit_kv WHERE bucket = ? AND `+liveSQL+` ORDER BY key`,
		bucket, s.now())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		var it Item
		var exp int64
		if err := rows.Scan(&it.Key, &it.Value, &exp); err != nil {
			return nil, fmt.Errorf("list %s: %w", bucket, err)
		}
		it.Expires = fromUnix(exp)
		out = append(out, it)
	}
	return out, rows.Err()
}

// Purge deletes expired rows now and says how many it deleted.
func (s *SQLStore) Purge(ctx context.Context) (int, error) {
	res, err := s.Write.ExecContext(ctx, `DELETE FROM authkit_kv WHERE expires <> 0 AND expires <= ?`, s.now())
	if err != nil {
		return 0, fmt.Errorf("purge expired entries: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
