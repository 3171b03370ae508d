package fhirstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

const liveVTO = int64(9223372036854775807)

// idPattern is the R4 id type.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// Options configure a Store.
type Options struct {
	// Path is the SQLite file (created if missing).
	Path string
	// Now is the clock for meta.lastUpdated; nil means time.Now.
	Now func() time.Time
	// Logger receives internal errors; nil discards.
	Logger *slog.Logger
	// BaseURL, when set, is this server's FHIR base: absolute references to
	// it are indexed like relative ones.
	BaseURL string
}

// maxCachedStmts bounds the reader statements a store keeps prepared.
// Search builds its SQL from the shape of a query (parameters, values per
// parameter, sort keys), not from the values, so a server sees few
// distinct texts.
const maxCachedStmts = 256

// Store keeps R4 resources, all their versions and their search index in
// one SQLite file. Bodies are stored in jsonformat's canonical form and
// served as stored.
type Store struct {
	db    *sqlitedb.DB
	codec *Codec
	now   func() time.Time
	log   *slog.Logger
	base  string

	readStmt  *sql.Stmt
	vreadStmt *sql.Stmt
	stmts     *sqlitedb.Stmts // reader statements by SQL text (searches)
	cache     *readCache      // current versions of recently read resources
}

// Open opens (or creates) the store at opt.Path and applies its migrations.
func Open(ctx context.Context, opt Options) (*Store, error) {
	if opt.Path == "" {
		return nil, errors.New("open fhir store: empty path")
	}
	codec, err := NewCodec()
	if err != nil {
		return nil, fmt.Errorf("open fhir store: %w", err)
	}
	mig, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open fhir store: %w", err)
	}
	db, err := sqlitedb.Open(ctx, opt.Path, mig)
	if err != nil {
		return nil, fmt.Errorf("open fhir store: %w", err)
	}
	s := &Store{db: db, codec: codec, now: opt.Now, log: opt.Logger, base: opt.BaseURL, stmts: sqlitedb.NewStmts(db.Read, maxCachedStmts), cache: newReadCache()}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.readStmt, err = db.Read.PrepareContext(ctx,
		`SELECT vid, version, deleted, lu, body FROM res WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1`); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare read: %w", err)
	}
	if s.vreadStmt, err = db.Read.PrepareContext(ctx,
		`SELECT vid, version, deleted, lu, body FROM res WHERE type = ? AND id = ? AND version = ?`); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare vread: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.readStmt.Close()
	s.vreadStmt.Close()
	s.stmts.Close()
	return s.db.Close()
}

// Codec returns the store's shared codec.
func (s *Store) Codec() *Codec { return s.codec }

// Version is one stored version of a resource.
type Version struct {
	Type        string
	ID          string
	Version     int
	LastUpdated time.Time
	Deleted     bool
	Body        json.RawMessage // nil for a deletion
	Created     bool            // set by writes: this write created the resource
	seq         int64
}

// ETag is the weak entity tag of the version.
func (v *Version) ETag() string { return `W/"` + strconv.Itoa(v.Version) + `"` }

func supported(resourceType string) bool {
	_, ok := resourceTypes[resourceType]
	return ok
}

func unknownType(resourceType string) error {
	return newOutcomeError(http.StatusNotFound, "not-supported", "resource type "+strconv.Quote(resourceType)+" is not supported")
}

// Read returns the current body of a resource: ErrNotFound or ErrGone.
// The body may be shared with other readers: do not modify it.
func (s *Store) Read(ctx context.Context, resourceType, id string) (json.RawMessage, error) {
	v, err := s.ReadVersion(ctx, resourceType, id, 0)
	if err != nil {
		return nil, err
	}
	return v.Body, nil
}

// ReadVersion returns version n of a resource, or the current one when n
// is 0. A current version that is a deletion gives ErrGone; vread of a
// deletion version gives ErrGone too. The current version may come from
// a cache of recently read ones (every write invalidates it); its Body is
// shared: do not modify it.
func (s *Store) ReadVersion(ctx context.Context, resourceType, id string, n int) (*Version, error) {
	if !supported(resourceType) {
		return nil, unknownType(resourceType)
	}
	var row *sql.Row
	var key string
	var gen uint64
	if n == 0 {
		key = cacheKey(resourceType, id)
		var hit *Version
		if hit, gen = s.cache.get(key); hit != nil {
			return hit, nil
		}
		row = s.readStmt.QueryRowContext(ctx, resourceType, id)
	} else {
		row = s.vreadStmt.QueryRowContext(ctx, resourceType, id, n)
	}
	v := &Version{Type: resourceType, ID: id}
	var deleted int
	var lu int64
	var body []byte
	if err := row.Scan(&v.seq, &v.Version, &deleted, &lu, &body); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("read %s/%s: %w", resourceType, id, err)
	}
	v.LastUpdated = time.UnixMilli(lu).UTC()
	if deleted != 0 {
		v.Deleted = true
		return v, ErrGone
	}
	v.Body = body
	if n == 0 {
		s.cache.fill(key, v, gen)
	}
	return v, nil
}

// History returns every version of a resource, newest first.
func (s *Store) History(ctx context.Context, resourceType, id string, limit int) ([]*Version, error) {
	if !supported(resourceType) {
		return nil, unknownType(resourceType)
	}
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.Read.QueryContext(ctx,
		`SELECT vid, version, deleted, lu, body FROM res WHERE type = ? AND id = ? ORDER BY version DESC LIMIT ?`,
		resourceType, id, limit)
	if err != nil {
		return nil, fmt.Errorf("history %s/%s: %w", resourceType, id, err)
	}
	defer rows.Close()
	var out []*Version
	for rows.Next() {
		v := &Version{Type: resourceType, ID: id}
		var deleted int
		var lu int64
		if err := rows.Scan(&v.seq, &v.Version, &deleted, &lu, (*[]byte)(&v.Body)); err != nil {
			return nil, fmt.Errorf("history %s/%s: %w", resourceType, id, err)
		}
		v.Deleted = deleted != 0
		v.LastUpdated = time.UnixMilli(lu).UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history %s/%s: %w", resourceType, id, err)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// guard inspects a write inside its transaction: prev is the current body
// (nil when absent or deleted), next the new canonical body (nil for a
// delete). A non-nil error aborts the write.
type guard func(prev, next json.RawMessage) error

// Create stores a new resource of the body's type under a server-assigned id.
func (s *Store) Create(ctx context.Context, body []byte) (*Version, error) {
	return s.create(ctx, "", body, nil)
}

func (s *Store) create(ctx context.Context, wantType string, body []byte, g guard) (*Version, error) {
	r, err := s.codec.Parse(body)
	if err != nil {
		return nil, err
	}
	if wantType != "" && r.Type != wantType {
		return nil, badRequest("invalid", "resourceType "+strconv.Quote(r.Type)+" does not match the URL", "resourceType")
	}
	if !supported(r.Type) {
		return nil, unknownType(r.Type)
	}
	id := newID()
	return s.write(ctx, r, id, 0, g, true)
}

// Update stores a new version of resourceType/id (creating it when
// absent). ifMatch > 0 requires the current version to be ifMatch (412
// otherwise).
func (s *Store) Update(ctx context.Context, resourceType, id string, body []byte, ifMatch int) (*Version, error) {
	return s.update(ctx, resourceType, id, body, ifMatch, nil)
}

func (s *Store) update(ctx context.Context, resourceType, id string, body []byte, ifMatch int, g guard) (*Version, error) {
	if !supported(resourceType) {
		return nil, unknownType(resourceType)
	}
	if !idPattern.MatchString(id) {
		return nil, badRequest("value", "invalid resource id")
	}
	r, err := s.codec.Parse(body)
	if err != nil {
		return nil, err
	}
	if r.Type != resourceType {
		return nil, badRequest("invalid", "resourceType "+strconv.Quote(r.Type)+" does not match the URL", "resourceType")
	}
	if r.ID != id {
		return nil, badRequest("invalid", "the body's id must equal the id in the URL", resourceType+".id")
	}
	return s.write(ctx, r, id, ifMatch, g, false)
}

func versionConflict(msg string) error {
	return newOutcomeError(http.StatusPreconditionFailed, "conflict", msg)
}

func (s *Store) write(ctx context.Context, r *Resource, id string, ifMatch int, g guard, mustBeNew bool) (*Version, error) {
	var out *Version
	err := s.db.WriteTx(ctx, func(tx *sql.Tx) error {
		cur, err := currentTx(ctx, tx, r.Type, id)
		if err != nil {
			return err
		}
		if mustBeNew && cur != nil {
			return newOutcomeError(http.StatusConflict, "duplicate", "id already in use")
		}
		if ifMatch > 0 && (cur == nil || cur.Version != ifMatch) {
			return versionConflict("If-Match does not match the current version")
		}
		version := 1
		var prevVid int64
		var prevBody json.RawMessage
		if cur != nil {
			version, prevVid = cur.Version+1, cur.seq
			if !cur.Deleted {
				prevBody = cur.Body
			}
		}
		at := s.now().UTC().Truncate(time.Millisecond)
		body, err := s.codec.stamp(r, id, version, at)
		if err != nil {
			return err
		}
		if g != nil {
			if err := g(prevBody, body); err != nil {
				return err
			}
		}
		doc, err := decodeDoc(body)
		if err != nil {
			return fmt.Errorf("decode canonical %s: %w", r.Type, err)
		}
		ins, err := prepareInsert(ctx, tx, false)
		if err != nil {
			return err
		}
		defer ins.close()
		vid, err := ins.insert(ctx, r.Type, id, version, prevVid, at.UnixMilli(), body, extractIndex(r.Type, doc, s.base))
		if err != nil {
			return err
		}
		out = &Version{Type: r.Type, ID: id, Version: version, LastUpdated: at, Body: body, Created: cur == nil || cur.Deleted, seq: vid}
		return nil
	})
	s.cache.invalidate(cacheKey(r.Type, id))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete records a deletion of resourceType/id. Deleting a deleted
// resource is a no-op; an unknown one is ErrNotFound.
func (s *Store) Delete(ctx context.Context, resourceType, id string) error {
	return s.delete(ctx, resourceType, id, 0, nil)
}

func (s *Store) delete(ctx context.Context, resourceType, id string, ifMatch int, g guard) error {
	if !supported(resourceType) {
		return unknownType(resourceType)
	}
	defer s.cache.invalidate(cacheKey(resourceType, id))
	return s.db.WriteTx(ctx, func(tx *sql.Tx) error {
		cur, err := currentTx(ctx, tx, resourceType, id)
		if err != nil {
			return err
		}
		if cur == nil {
			return ErrNotFound
		}
		if ifMatch > 0 && cur.Version != ifMatch {
			return versionConflict("If-Match does not match the current version")
		}
		if cur.Deleted {
			return nil
		}
		if g != nil {
			if err := g(cur.Body, nil); err != nil {
				return err
			}
		}
		at := s.now().UTC().Truncate(time.Millisecond)
		res, err := tx.ExecContext(ctx, `INSERT INTO res (type, id, version, deleted, lu, body) VALUES (?, ?, ?, 1, ?, NULL)`,
			resourceType, id, cur.Version+1, at.UnixMilli())
		if err != nil {
			return fmt.Errorf("delete %s/%s: %w", resourceType, id, err)
		}
		vid, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("delete %s/%s: %w", resourceType, id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE res SET vto = ? WHERE vid = ?`, vid, cur.seq); err != nil {
			return fmt.Errorf("delete %s/%s: %w", resourceType, id, err)
		}
		return nil
	})
}

func currentTx(ctx context.Context, tx *sql.Tx, resourceType, id string) (*Version, error) {
	v := &Version{Type: resourceType, ID: id}
	var deleted int
	var lu int64
	err := tx.QueryRowContext(ctx, `SELECT vid, version, deleted, lu, body FROM res WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1`,
		resourceType, id).Scan(&v.seq, &v.Version, &deleted, &lu, (*[]byte)(&v.Body))
	return currentRead(v, deleted, lu, err)
}

// currentRead finishes reading a current version: nil when there is none.
func currentRead(v *Version, deleted int, lu int64, err error) (*Version, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read current %s/%s: %w", v.Type, v.ID, err)
	}
	v.Deleted = deleted != 0
	v.LastUpdated = time.UnixMilli(lu).UTC()
	return v, nil
}

// inserter holds the statements of one write transaction.
type inserter struct {
	res, vto, cur *sql.Stmt
	index         *indexWriter
}

// prepareInsert prepares a transaction's writes; with staged, its index
// rows go to an initial load's staging tables (see prepareIndexWriter).
func prepareInsert(ctx context.Context, tx *sql.Tx, staged bool) (*inserter, error) {
	var in inserter
	var err error
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&in.res, `INSERT INTO res (type, id, version, deleted, lu, body) VALUES (?, ?, ?, 0, ?, ?)`},
		{&in.vto, `UPDATE res SET vto = ? WHERE vid = ?`},
		{&in.cur, `SELECT vid, version, deleted, lu FROM res WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1`},
	} {
		if *p.dst, err = tx.PrepareContext(ctx, p.q); err != nil {
			in.close()
			return nil, fmt.Errorf("prepare insert: %w", err)
		}
	}
	if in.index, err = prepareIndexWriter(ctx, tx, staged); err != nil {
		in.close()
		return nil, err
	}
	return &in, nil
}

func (in *inserter) close() {
	for _, s := range []*sql.Stmt{in.res, in.vto, in.cur} {
		if s != nil {
			s.Close()
		}
	}
	if in.index != nil {
		in.index.close()
	}
}

// current is the newest version of a resource (nil when there is none),
// without its body.
func (in *inserter) current(ctx context.Context, resourceType, id string) (*Version, error) {
	v := &Version{Type: resourceType, ID: id}
	var deleted int
	var lu int64
	err := in.cur.QueryRowContext(ctx, resourceType, id).Scan(&v.seq, &v.Version, &deleted, &lu)
	return currentRead(v, deleted, lu, err)
}

// insertVersion writes a version without its index rows.
func (in *inserter) insertVersion(ctx context.Context, rt, id string, version int, prevVid, lu int64, body []byte) (int64, error) {
	res, err := in.res.ExecContext(ctx, rt, id, version, lu, body)
	if err != nil {
		return 0, fmt.Errorf("insert %s/%s: %w", rt, id, err)
	}
	vid, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert %s/%s: %w", rt, id, err)
	}
	if prevVid > 0 {
		if _, err := in.vto.ExecContext(ctx, vid, prevVid); err != nil {
			return 0, fmt.Errorf("supersede %s/%s: %w", rt, id, err)
		}
	}
	return vid, nil
}

// insert writes a version and its index rows.
func (in *inserter) insert(ctx context.Context, rt, id string, version int, prevVid, lu int64, body []byte, ix indexRows) (int64, error) {
	vid, err := in.insertVersion(ctx, rt, id, version, prevVid, lu, body)
	if err != nil {
		return 0, err
	}
	if err = in.index.add(ctx, rt, ix, vid); err == nil {
		err = in.index.flush(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("index %s/%s: %w", rt, id, err)
	}
	return vid, nil
}

// canonicalJSON encodes like jsonformat: sorted keys, compact, no HTML
// escaping.
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Meta returns a value of the store's small key/value table.
func (s *Store) Meta(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.db.Read.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read meta %q: %w", key, err)
	}
	return v, true, nil
}

// SetMeta stores a value in the store's key/value table.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	return s.db.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
			return fmt.Errorf("write meta %q: %w", key, err)
		}
		return nil
	})
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
