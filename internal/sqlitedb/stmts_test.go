package sqlitedb_test

import (
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

// Statements give the same answers whether kept prepared or, beyond the
// bound, run unprepared; from several goroutines at once; and a bad text
// is reported by every method.
func TestStmts(t *testing.T) {
	db := openTest(t, migs)
	ctx := t.Context()
	w := sqlitedb.NewStmts(db.Write, 2)
	r := sqlitedb.NewStmts(db.Read, 2)
	defer w.Close()
	defer r.Close()
	for i := range 5 {
		if _, err := w.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprint("k", i), fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Three texts with a bound of two: the third runs unprepared.
	texts := []string{
		`SELECT v FROM kv WHERE k = ?`,
		`SELECT v FROM kv WHERE k = ? AND 1 = 1`,
		`SELECT v FROM kv WHERE k = ? AND 2 = 2`,
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				for _, q := range texts {
					var v string
					if err := r.QueryRowContext(ctx, q, fmt.Sprint("k", i)).Scan(&v); err != nil || v != fmt.Sprint("v", i) {
						t.Errorf("goroutine %d, %q with k%d: %q, %v", g, q, i, v, err)
					}
				}
			}
		})
	}
	wg.Wait()
	rows, err := r.QueryContext(ctx, `SELECT count(*) FROM kv WHERE v >= ?`, "v2")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	rows.Close()
	if n != 3 {
		t.Fatalf("count %d, want 3", n)
	}
	var v string
	if err := r.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, "none").Scan(&v); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("missing row: %v", err)
	}
	bad := `SELECT nope FROM nowhere`
	if _, err := sqlitedb.NewStmts(db.Read, 8).QueryContext(ctx, bad); err == nil {
		t.Error("Query of a bad text succeeded")
	}
	if err := sqlitedb.NewStmts(db.Read, 8).QueryRowContext(ctx, bad).Scan(&v); err == nil {
		t.Error("QueryRow of a bad text succeeded")
	}
	if _, err := sqlitedb.NewStmts(db.Write, 8).ExecContext(ctx, `DELETE FROM nowhere`); err == nil {
		t.Error("Exec of a bad text succeeded")
	}
}
