package sqlitedb_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

func openTest(t *testing.T, migrations fstest.MapFS) *sqlitedb.DB {
	t.Helper()
	db, err := sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"), migrations)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var migs = fstest.MapFS{
	"0001_init.sql": {Data: []byte("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);\n-- comment\nCREATE INDEX kv_v ON kv(v);\n")},
	"0002_more.sql": {Data: []byte("ALTER TABLE kv ADD COLUMN n INTEGER NOT NULL DEFAULT 0;\n")},
}

func TestOpenMigratesOnceAndWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.db")
	for i := 0; i < 2; i++ { // the second open must not re-apply migrations
		db, err := sqlitedb.Open(t.Context(), path, migs)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		var mode string
		if err := db.Read.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
		}
		var n int
		if err := db.Read.QueryRow("SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != 2 {
			t.Fatalf("migrations recorded = %d, %v; want 2", n, err)
		}
		db.Close()
	}
}

func TestReaderIsReadOnly(t *testing.T) {
	db := openTest(t, migs)
	if _, err := db.Read.Exec("INSERT INTO kv (k, v) VALUES ('a', 'b')"); err == nil {
		t.Fatal("write through the reader pool succeeded; want a read-only error")
	}
}

func TestWriteTxRollsBackOnError(t *testing.T) {
	db := openTest(t, migs)
	boom := errors.New("boom")
	err := db.WriteTx(t.Context(), func(tx *sql.Tx) error {
		if _, err := tx.Exec("INSERT INTO kv (k, v) VALUES ('a', 'b')"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	var n int
	db.Read.QueryRow("SELECT count(*) FROM kv").Scan(&n)
	if n != 0 {
		t.Fatalf("rows after rollback = %d, want 0", n)
	}
}

func TestConcurrentWritesAndReads(t *testing.T) {
	db := openTest(t, migs)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 200 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- db.WriteTx(ctx, func(tx *sql.Tx) error {
				var n int
				if err := tx.QueryRow("SELECT count(*) FROM kv").Scan(&n); err != nil {
					return err
				}
				_, err := tx.Exec("INSERT INTO kv (k, v, n) VALUES (?, 'x', ?)", i, n)
				return err
			})
		}()
		go func() {
			defer wg.Done()
			var n int
			errs <- db.Read.QueryRow("SELECT count(*) FROM kv").Scan(&n)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	db.Read.QueryRow("SELECT count(*) FROM kv").Scan(&n)
	if n != 200 {
		t.Fatalf("rows = %d, want 200", n)
	}
}
