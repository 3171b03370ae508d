package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is one SQLite file opened as a writer and a reader pool.
type DB struct {
	// Write has exactly one connection; its transactions begin IMMEDIATE.
	Write *sql.DB
	// Read is a bounded pool of query-only connections. Under WAL it reads a
	// consistent snapshot while a write is in progress.
	Read *sql.DB
	// Path is the database file.
	Path string
}

// pragmas apply to every pooled connection. busy_timeout is applied first
// by the driver whatever its position.
var pragmas = []string{
	"busy_timeout(10000)",
	"journal_mode(WAL)",
	"synchronous(NORMAL)",
	"foreign_keys(ON)",
	"temp_store(MEMORY)",
}

// DefaultCacheKiB is each connection's page cache unless Options say
// otherwise.
const DefaultCacheKiB = 16000

// Options tune OpenWith; the zero value is Open's defaults.
type Options struct {
	// CacheKiB is each connection's page cache (0: DefaultCacheKiB). Every
	// pooled connection has its own, and a long-running server fills it:
	// a store whose hot set is small (the authorization servers' key/value
	// table, written at every token request) needs far less.
	CacheKiB int
}

func dsn(path string, readOnly bool, cacheKiB int) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", cacheKiB))
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	q.Set("_time_format", "sqlite")
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path and applies the
// *.sql files of migrations in lexical order, each once, each in its own
// transaction. migrations may be nil.
func Open(ctx context.Context, path string, migrations fs.FS) (*DB, error) {
	return OpenWith(ctx, path, migrations, Options{})
}

// OpenWith is Open with opt.
func OpenWith(ctx context.Context, path string, migrations fs.FS, opt Options) (*DB, error) {
	if opt.CacheKiB <= 0 {
		opt.CacheKiB = DefaultCacheKiB
	}
	w, err := sql.Open("sqlite", dsn(path, false, opt.CacheKiB))
	if err != nil {
		return nil, fmt.Errorf("open writer %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	db := &DB{Write: w, Path: path}
	// The writer creates the file and switches it to WAL before any reader
	// opens it: a query_only connection cannot change the journal mode.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open writer %s: %w", path, err)
	}
	if migrations != nil {
		if err := db.migrate(ctx, migrations); err != nil {
			w.Close()
			return nil, err
		}
	}
	r, err := sql.Open("sqlite", dsn(path, true, opt.CacheKiB))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open readers %s: %w", path, err)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	n = max(4, min(n, 8))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(3 * time.Minute)
	db.Read = r
	return db, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	var errs []error
	if db.Read != nil {
		errs = append(errs, db.Read.Close())
	}
	errs = append(errs, db.Write.Close())
	return errors.Join(errs...)
}

// WriteTx runs fn in a write transaction: it commits when fn returns nil
// and rolls back otherwise, so a failed write leaves the database unchanged.
func (db *DB) WriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (db *DB) migrate(ctx context.Context, migrations fs.FS) error {
	if _, err := db.Write.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	if len(names) == 0 {
		// Allow a migrations FS rooted one level up (embed of "migrations/*.sql").
		names, _ = fs.Glob(migrations, "*/*.sql")
	}
	sort.Strings(names)
	for _, name := range names {
		err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			body, err := fs.ReadFile(migrations, name)
			if err != nil {
				return err
			}
			for _, stmt := range splitStatements(string(body)) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`,
				name, time.Now().UTC().Format(time.RFC3339))
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", name, err)
		}
	}
	return nil
}

// splitStatements splits a migration file on semicolons at line ends. The
// migrations are our own files; triggers are written with their END; on a
// line of its own.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	depth := 0
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		upper := strings.ToUpper(trimmed)
		if strings.HasPrefix(upper, "CREATE TRIGGER") {
			depth++
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			if depth > 0 && !strings.HasPrefix(upper, "END") {
				continue
			}
			if depth > 0 {
				depth--
			}
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
