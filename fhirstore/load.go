package fhirstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

// loadBatch is the number of resources per load transaction.
const loadBatch = 5000

// Load creates or replaces resources with the ids they carry, in large
// transactions. With validate=false the caller is trusted (generated
// worlds): bodies are canonicalised without jsonformat (sorted keys,
// compact, numbers as written) and indexed; with validate=true each runs
// through the Codec. Either way id and meta are set by the store. Load is
// all or nothing per batch of 5000. It is a Loader over resources.
func (s *Store) Load(ctx context.Context, resources []json.RawMessage, validate bool) error {
	l, err := s.NewLoader(ctx, LoadOptions{Validate: validate})
	if err != nil {
		return err
	}
	for _, r := range resources {
		if err := l.Add(ctx, r); err != nil {
			break // Close reports it
		}
	}
	return l.Close(ctx)
}

// LoadOptions configure a Loader.
type LoadOptions struct {
	// Validate runs every body through the Codec (jsonformat) instead of
	// trusting the caller.
	Validate bool
	// Canonical promises bodies already in canonical form (compact, keys
	// sorted, no HTML escaping, numbers as they should stay), as
	// fhirstore/synth writes them. Such a body without a top-level "meta"
	// gets its meta spliced in instead of being decoded and encoded again.
	// Ignored with Validate.
	Canonical bool
}

// deferredIndexes are the secondary indexes an initial load builds once at
// the end instead of maintaining on every insert (a sort beats millions of
// random B-tree inserts). They must match the migrations (a test checks).
// res_type_id_version stays: its uniqueness finds an id loaded twice.
var deferredIndexes = []struct{ name, create string }{
	{"res_type_vid", `CREATE INDEX res_type_vid ON res(type, vid)`},
	{"token_idx_system", `CREATE INDEX token_idx_system ON token_idx(type, param, system)`},
	{"date_idx_vid", `CREATE INDEX date_idx_vid ON date_idx(vid, param)`},
	{"date_idx_param", `CREATE INDEX date_idx_param ON date_idx(type, param, lo)`},
	{"ref_idx_vid", `CREATE INDEX ref_idx_vid ON ref_idx(vid, param)`},
}

// Load-time pragmas of an initial load. synchronous=OFF is safe there: a
// crash leaves a store that is not marked loaded (callers record that after
// Close), which is discarded and loaded again. The larger page cache keeps
// the upper levels of the B-trees written as the load goes (res and its
// unique index) in memory. At Close, the index rows are moved and the
// indexes built in key order, which needs little cache; and SQLite's
// sorter keeps as much in memory as the page cache may hold before it
// spills to its temporary files, so a smaller cache there lowers the
// peak memory of a world's first start (100 000 patients a side: 645–676
// MB against 945–1 001 with the load's cache kept) at no cost in time.
// Both go back to normal at the end of Close.
const (
	loadCacheKiB   = 65536
	buildCacheKiB  = 16384
	normalCacheKiB = sqlitedb.DefaultCacheKiB
)

// Loader writes many resources into a store: one transaction per 5000
// resources, statements prepared once per transaction. Into a new, empty
// store (an initial load) it also runs without fsync, with a larger page
// cache, stages its search index rows and moves them into the index tables
// at Close (loadstage.go), and builds the secondary indexes there. Resources
// become visible batch by batch, and in an initial load ten batches at a
// time (its transaction spans them); there a search by a token, string or
// reference parameter finds them only after Close. Each batch is written
// on a goroutine of its own while the next is decoded and indexed, one
// batch at a time. A Loader is not safe for concurrent use; loaders of
// different stores run in parallel.
type Loader struct {
	s       *Store
	opt     LoadOptions
	initial bool
	items   []loadItem
	n       int // resources added so far
	err     error
	closed  bool

	// The batch before items is written on a goroutine of its own while
	// items fills; writing is its result, nil when none is under way.
	// spare is the batch's slice, for the batch after items.
	writing chan error
	spare   []loadItem

	// An initial load keeps its transaction open over txChunks batches:
	// every commit writes each page it dirtied to the WAL again. Its
	// inserter stages the index rows (loadstage.go).
	tx       *sql.Tx
	ins      *inserter
	chunks   int
	txChunks int // batches a transaction: txChunks, lowered by tests
}

// txChunks is how many batches of 5000 an initial load commits at once.
const txChunks = 10

type loadItem struct {
	rt, id string
	raw    []byte
	r      *Resource      // the parsed resource, with LoadOptions.Validate
	doc    map[string]any // the decoded body, when it is encoded again
	// A canonical body without meta gets its meta spliced in at metaAt
	// (LoadOptions.Canonical). Its index rows are extracted when it is
	// added, and its decoded body is not kept.
	splice bool
	metaAt int
	ix     indexRows
}

// NewLoader starts a bulk load. Close must be called, also after an error:
// it commits the batches written and, after an initial load, builds the
// indexes. A cancelled context stops the load at its next batch (a batch
// under way is finished); Close then keeps the batches written before.
func (s *Store) NewLoader(ctx context.Context, opt LoadOptions) (*Loader, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start load: %w", err)
	}
	// Like the batches (see write), the set-up runs without cancellation:
	// database/sql drops a connection whose statement was interrupted, and
	// the writer's connection holds an initial load's staging tables.
	ctx = context.WithoutCancel(ctx)
	l := &Loader{s: s, opt: opt, txChunks: txChunks}
	var any int
	if err := s.db.Write.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM res LIMIT 1)`).Scan(&any); err != nil {
		return nil, fmt.Errorf("start load: %w", err)
	}
	if any == 0 {
		if err := l.beginInitial(ctx); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Loader) beginInitial(ctx context.Context) error {
	db := l.s.db.Write
	if _, err := db.ExecContext(ctx, `PRAGMA synchronous = OFF`); err != nil {
		return fmt.Errorf("start load: %w", err)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA cache_size = -`+strconv.Itoa(loadCacheKiB)); err != nil {
		l.restorePragmas(ctx)
		return fmt.Errorf("start load: %w", err)
	}
	// The staging tables, and the sorts that move them and build indexes,
	// go to temporary files, not memory: at a million resources they are
	// gigabytes.
	if _, err := db.ExecContext(ctx, `PRAGMA temp_store = FILE`); err != nil {
		l.restorePragmas(ctx)
		return fmt.Errorf("start load: %w", err)
	}
	err := l.s.db.WriteTx(ctx, func(tx *sql.Tx) error {
		for _, ix := range deferredIndexes {
			if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS `+ix.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = createStaging(ctx, db)
	}
	if err != nil {
		l.restorePragmas(ctx)
		return fmt.Errorf("start load: %w", err)
	}
	l.initial = true
	return nil
}

// restorePragmas puts the writer back to its normal settings. Setting
// temp_store deletes the temporary database, and with it whatever staging
// tables are left.
func (l *Loader) restorePragmas(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	db := l.s.db.Write
	_, err1 := db.ExecContext(ctx, `PRAGMA synchronous = NORMAL`)
	_, err2 := db.ExecContext(ctx, `PRAGMA cache_size = -`+strconv.Itoa(normalCacheKiB))
	_, err3 := db.ExecContext(ctx, `PRAGMA temp_store = MEMORY`)
	return errors.Join(err1, err2, err3)
}

// Add queues one resource (a JSON object with resourceType and id),
// keeping body; every 5000 it hands them to be written in one transaction
// and returns while they are. An error in writing a batch is returned by
// the Add that completes the next batch, or by Close. After an error every
// call returns that error, and Close reports it too.
func (l *Loader) Add(ctx context.Context, body []byte) error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return errors.New("load: loader closed")
	}
	it, err := l.prepare(body)
	if err != nil {
		l.err = err
		return err
	}
	l.items = append(l.items, it)
	l.n++
	if len(l.items) >= loadBatch {
		return l.flush(ctx)
	}
	return nil
}

func (l *Loader) prepare(raw []byte) (loadItem, error) {
	doc, err := decodeDoc(raw)
	if err != nil {
		return loadItem{}, fmt.Errorf("load resource %d: %w", l.n, badRequest("structure", "body is not a JSON object"))
	}
	rt, _ := doc["resourceType"].(string)
	id, _ := doc["id"].(string)
	if !supported(rt) {
		return loadItem{}, fmt.Errorf("load resource %d: %w", l.n, unknownType(rt))
	}
	if !idPattern.MatchString(id) {
		return loadItem{}, fmt.Errorf("load resource %d: %w", l.n, badRequest("value", "invalid or missing id"))
	}
	it := loadItem{rt: rt, id: id, raw: raw}
	if l.opt.Validate {
		if it.r, err = l.s.codec.Parse(raw); err != nil {
			return loadItem{}, fmt.Errorf("load %s/%s: %w", rt, id, err)
		}
		return it, nil
	}
	if l.opt.Canonical && doc["meta"] == nil {
		if it.metaAt, it.splice = metaPlace(raw); it.splice {
			// No index reads meta: the rows are those of the stored body.
			it.ix = extractIndex(rt, doc, l.s.base)
			return it, nil
		}
	}
	it.doc = doc
	return it, nil
}

// flush hands the queued batch to a goroutine that writes it, once the
// batch before is written, and returns: the next batch is prepared while
// this one is written. An error of the write is returned by the flush
// after it (or by Close).
func (l *Loader) flush(ctx context.Context) error {
	if err := l.written(); err != nil {
		return err
	}
	if len(l.items) == 0 {
		return nil
	}
	// An interruption is honoured between batches (see write).
	if err := ctx.Err(); err != nil {
		l.err = fmt.Errorf("load: %w", err)
		return l.err
	}
	items := l.items
	l.items = l.spare[:0]
	done := make(chan error, 1)
	l.writing = done
	go func() {
		err := l.write(ctx, items)
		clear(items) // the bodies and documents can go
		done <- err
	}()
	l.spare = items
	return nil
}

// written waits for the batch being written, if any, and returns the
// load's error.
func (l *Loader) written() error {
	if l.writing != nil {
		if err := <-l.writing; err != nil && l.err == nil {
			l.err = err
		}
		l.writing = nil
	}
	return l.err
}

func (l *Loader) write(ctx context.Context, items []loadItem) error {
	// An interruption is honoured between batches. Within one, the
	// statements run without it, for two reasons. An initial load's
	// transaction spans batches, and database/sql rolls back a transaction
	// begun with a context when that context is cancelled: the batches
	// already written, which Close commits after any other error, would be
	// lost. And modernc.org/sqlite watches a context that can be
	// cancelled from a goroutine of its own for every statement, a sixth
	// of a load's CPU.
	ctx = context.WithoutCancel(ctx)
	if !l.initial {
		defer l.s.cache.invalidateAll()
		return l.s.db.WriteTx(ctx, func(tx *sql.Tx) error {
			ins, err := prepareInsert(ctx, tx, false)
			if err != nil {
				return err
			}
			defer ins.close()
			return l.writeItems(ctx, ins, items)
		})
	}
	if l.tx == nil {
		tx, err := l.s.db.Write.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin write: %w", err)
		}
		ins, err := prepareInsert(ctx, tx, true)
		if err != nil {
			tx.Rollback()
			return err
		}
		l.tx, l.ins = tx, ins
	}
	// A savepoint keeps the load all or nothing per batch: a failed batch
	// is undone, the batches before it stay and are committed by Close.
	// (Should the rollback to the savepoint fail, the whole open
	// transaction is rolled back: up to txChunks-1 batches before it go.)
	if _, err := l.tx.ExecContext(ctx, `SAVEPOINT load_batch`); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := l.writeItems(ctx, l.ins, items); err != nil {
		// Index rows still queued in l.ins are never written: after an error
		// no batch follows, and Close does not flush.
		_, rerr := l.tx.ExecContext(ctx, `ROLLBACK TO load_batch`)
		if rerr != nil {
			l.endTx(false)
		}
		return errors.Join(err, rerr)
	}
	if _, err := l.tx.ExecContext(ctx, `RELEASE load_batch`); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if l.chunks++; l.chunks%l.txChunks == 0 {
		return l.endTx(true)
	}
	return nil
}

// endTx commits (or rolls back) an initial load's open transaction.
func (l *Loader) endTx(commit bool) error {
	if l.tx == nil {
		return nil
	}
	tx, ins := l.tx, l.ins
	l.tx, l.ins = nil, nil
	ins.close()
	if !commit {
		tx.Rollback()
		return nil
	}
	err := tx.Commit()
	l.s.cache.invalidateAll()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (l *Loader) writeItems(ctx context.Context, ins *inserter, items []loadItem) error {
	s := l.s
	at := s.now().UTC().Truncate(time.Millisecond)
	lastUpdated := at.Format("2006-01-02T15:04:05.000Z07:00")
	for _, p := range items {
		version, prevVid := 1, int64(0)
		if !l.initial {
			cur, err := ins.current(ctx, p.rt, p.id)
			if err != nil {
				return err
			}
			if cur != nil {
				version, prevVid = cur.Version+1, cur.seq
			}
		}
		body, ix, err := l.body(p, version, at, lastUpdated)
		if err != nil {
			return err
		}
		vid, err := ins.insertVersion(ctx, p.rt, p.id, version, prevVid, at.UnixMilli(), body)
		if err != nil && l.initial && isUniqueViolation(err) {
			// The same id twice in an initial load: the later one is a
			// new version, as outside an initial load.
			cur, cerr := ins.current(ctx, p.rt, p.id)
			if cerr != nil || cur == nil {
				return errors.Join(err, cerr)
			}
			if body, ix, err = l.body(p, cur.Version+1, at, lastUpdated); err != nil {
				return err
			}
			vid, err = ins.insertVersion(ctx, p.rt, p.id, cur.Version+1, cur.seq, at.UnixMilli(), body)
		}
		if err != nil {
			return err
		}
		// A load's index rows are inserted many to a statement, so a failed
		// insert holds rows of the resources before this one too.
		if err := ins.index.add(ctx, p.rt, ix, vid); err != nil {
			return fmt.Errorf("index the batch up to %s/%s: %w", p.rt, p.id, err)
		}
	}
	if err := ins.index.flush(ctx); err != nil {
		return fmt.Errorf("index the batch: %w", err)
	}
	return nil
}

// body is the stored form of an item at version, and its index rows:
// stamped by the codec, meta spliced into a canonical body, or encoded
// again with meta.
func (l *Loader) body(p loadItem, version int, at time.Time, lastUpdated string) ([]byte, indexRows, error) {
	switch {
	case p.r != nil:
		body, err := l.s.codec.stamp(p.r, p.id, version, at)
		if err != nil {
			return nil, indexRows{}, err
		}
		doc, err := decodeDoc(body)
		if err != nil {
			return nil, indexRows{}, fmt.Errorf("decode canonical %s/%s: %w", p.rt, p.id, err)
		}
		return body, extractIndex(p.rt, doc, l.s.base), nil
	case p.splice:
		return spliceMeta(p.raw, p.metaAt, version, lastUpdated), p.ix, nil
	}
	meta, _ := p.doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.Itoa(version)
	meta["lastUpdated"] = lastUpdated
	p.doc["meta"] = meta
	body, err := canonicalJSON(p.doc)
	if err != nil {
		return nil, indexRows{}, fmt.Errorf("encode %s/%s: %w", p.rt, p.id, err)
	}
	return body, extractIndex(p.rt, p.doc, l.s.base), nil
}

// isUniqueViolation reports SQLITE_CONSTRAINT_UNIQUE (2067) or
// SQLITE_CONSTRAINT_PRIMARYKEY (1555).
func isUniqueViolation(err error) bool {
	var c interface{ Code() int }
	if errors.As(err, &c) {
		return c.Code() == 2067 || c.Code() == 1555
	}
	return false
}

// Close writes what is queued (after an error: the batches written before
// it) and ends the load; an initial load moves its staged index rows into
// the index tables, builds its secondary indexes and restores the store's
// normal settings here. It returns the errors of the load.
func (l *Loader) Close(ctx context.Context) error {
	if l.closed {
		return l.err
	}
	l.flush(ctx)
	l.written()
	// What the open transaction holds are whole batches (a failed one was
	// rolled back to its savepoint): they are committed even after an error.
	if err := l.endTx(true); err != nil && l.err == nil {
		l.err = err
	}
	l.closed = true
	l.items = nil
	if !l.initial {
		return l.err
	}
	// The index rows are moved and the indexes built even after an error:
	// the store must stay searchable with what was committed.
	bctx := context.WithoutCancel(ctx)
	var errs []error
	if _, err := l.s.db.Write.ExecContext(bctx, `PRAGMA cache_size = -`+strconv.Itoa(buildCacheKiB)); err != nil {
		errs = append(errs, fmt.Errorf("set the page cache for the index builds: %w", err))
	}
	if err := moveStaged(bctx, l.s); err != nil {
		errs = append(errs, err)
	}
	err := l.s.db.WriteTx(bctx, func(tx *sql.Tx) error {
		for _, ix := range deferredIndexes {
			if _, err := tx.ExecContext(bctx, ix.create); err != nil {
				return fmt.Errorf("%s: %w", ix.name, err)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("build indexes: %w", err))
	}
	// Back to synchronous=NORMAL first: the checkpoint then syncs the WAL
	// and the database file, so what the load wrote without fsync is on
	// disk before the caller records the store as loaded.
	if err := l.restorePragmas(bctx); err != nil {
		errs = append(errs, fmt.Errorf("restore the store's settings: %w", err))
	}
	if len(errs) == 0 {
		if _, err := l.s.db.Write.ExecContext(bctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: %w", err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(l.err, fmt.Errorf("end load: %w", errors.Join(errs...)))
	}
	return l.err
}

// metaPlace finds where "meta" goes in a canonical object body without
// one: the offset of the first member whose key sorts after "meta", or -1
// for the end. ok is false when the body is not a plain canonical object
// without meta (then the loader re-encodes it).
func metaPlace(body []byte) (at int, ok bool) {
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return 0, false
	}
	at = -1 // offset of the first member whose key sorts after "meta"
	i := 1
	for i < len(body)-1 {
		if body[i] != '"' {
			return 0, false
		}
		j := i + 1
		for j < len(body) && body[j] != '"' {
			if body[j] == '\\' {
				return 0, false
			}
			j++
		}
		key := string(body[i+1 : j])
		if key == "meta" {
			return 0, false
		}
		if at < 0 && key > "meta" {
			at = i
		}
		if j+1 >= len(body) || body[j+1] != ':' {
			return 0, false
		}
		end, ok := skipValue(body, j+2)
		if !ok {
			return 0, false
		}
		switch {
		case end == len(body)-1:
			i = end
		case body[end] == ',' && end+1 < len(body)-1:
			i = end + 1
		default:
			return 0, false
		}
	}
	if i != len(body)-1 {
		return 0, false
	}
	return at, true
}

// spliceMeta inserts "meta":{"lastUpdated":…,"versionId":…} into a
// canonical object body at its place, found by metaPlace.
func spliceMeta(body []byte, at, version int, lastUpdated string) []byte {
	meta := `"meta":{"lastUpdated":"` + lastUpdated + `","versionId":"` + strconv.Itoa(version) + `"}`
	out := make([]byte, 0, len(body)+len(meta)+1)
	switch {
	case len(body) == 2:
		out = append(append(append(out, '{'), meta...), '}')
	case at < 0:
		out = append(append(append(append(out, body[:len(body)-1]...), ','), meta...), '}')
	default:
		out = append(append(append(append(out, body[:at]...), meta...), ','), body[at:]...)
	}
	return out
}

// skipValue returns the offset just after the compact JSON value at i.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(b) {
				return 0, false
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i, true
			}
			depth--
			i++
		case ',':
			if depth == 0 {
				return i, true
			}
			i++
		case ' ', '\t', '\n', '\r':
			return 0, false // not compact
		default:
			i++
		}
	}
	return 0, false
}
