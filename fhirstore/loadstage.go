package fhirstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// An initial load does not insert its search index rows into token_idx,
// string_idx and ref_idx as it goes. Those tables are B-trees keyed by
// value (token_idx by type, param, value, system, vid). Rows arriving in
// the order of the resources land all over trees that, at a million
// resources, are far larger than the page cache, and each insert reads
// and rewrites a page of its own. So the rows are appended to staging
// tables in the temporary database instead: rowid tables without an
// index, filled page after page. Close then moves each staging table
// into its index table in key order, sorted by SQLite's external sorter,
// so that each tree is built from left to right. date_idx needs no
// staging: it is a rowid table already, whose indexes an initial load
// builds at Close.
//
// The staging tables live on the writer connection, in the temporary
// database, which an initial load keeps in files (temp_store = FILE) in
// SQLite's temporary directory ($SQLITE_TMPDIR, else $TMPDIR, else
// /var/tmp or /tmp; `sim serve --data DIR` sets $SQLITE_TMPDIR to DIR
// unless it is set). They take about as much room there as the index
// tables take in the store, and the sorter's files for the table being
// moved come on top. They are inside the load's transactions, so a batch
// rolled back to its savepoint takes its staged rows with it. Setting
// temp_store back at the end of Close deletes the temporary database
// whole; the staging tables are not dropped one by one before, which
// would read every page of each only to free it.

// stagedTable is an index table an initial load fills through a staging
// table.
type stagedTable struct {
	table string // the index table
	cols  string // its columns, in the order rows are inserted
	key   string // its primary key: the order rows are moved in
}

var (
	stagedTokens  = stagedTable{"token_idx", "type, param, value, system, vid", "type, param, value, system, vid"}
	stagedStrings = stagedTable{"string_idx", "type, param, norm, raw, vid", "type, param, norm, raw, vid"}
	stagedRefs    = stagedTable{"ref_idx", "type, param, ttype, tid, base, vid", "type, param, tid, ttype, base, vid"}
	stagedTables  = []stagedTable{stagedTokens, stagedStrings, stagedRefs}
)

// staging is the staging table's name, in the temporary database.
func (t stagedTable) staging() string { return "load_" + t.table }

// createStaging makes empty staging tables on the writer connection.
func createStaging(ctx context.Context, db *sql.DB) error {
	for _, t := range stagedTables {
		if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS temp.`+t.staging()); err != nil {
			return fmt.Errorf("drop %s: %w", t.staging(), err)
		}
		if _, err := db.ExecContext(ctx, `CREATE TABLE temp.`+t.staging()+` (`+t.cols+`)`); err != nil {
			return fmt.Errorf("create %s: %w", t.staging(), err)
		}
	}
	return nil
}

// moveStaged moves every staging table into its index table, in key
// order, one transaction a table (each commit lets the WAL be
// checkpointed before the next table is written). A table that fails does
// not stop the others.
func moveStaged(ctx context.Context, s *Store) error {
	var errs []error
	for _, t := range stagedTables {
		err := s.db.WriteTx(ctx, func(tx *sql.Tx) error {
			// The staging tables are the connection's: had database/sql
			// replaced it during the load, they would be gone, and so
			// would the rows staged before.
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_temp_master WHERE type = 'table' AND name = ?`, t.staging()).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return errors.New("its staging table is gone: the writer's connection was replaced during the load")
			}
			_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO main.`+t.table+` (`+t.cols+`) SELECT `+t.cols+` FROM temp.`+t.staging()+` ORDER BY `+t.key)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("move index rows into %s: %w", t.table, err))
		}
	}
	return errors.Join(errs...)
}

// rowsPerInsert is how many rows one INSERT of an initial load's index
// rows carries: the fixed cost of a statement in database/sql and the
// driver is paid once for them all.
const rowsPerInsert = 64

// bulkInsert inserts rows into one table, rowsPerInsert to a statement.
type bulkInsert struct {
	table     string
	cols      int
	one, many *sql.Stmt
	args      []any // rows waiting for a statement, cols values each
}

func prepareBulk(ctx context.Context, tx *sql.Tx, table, cols string) (*bulkInsert, error) {
	n := strings.Count(cols, ",") + 1
	row := "(?" + strings.Repeat(", ?", n-1) + ")"
	q := `INSERT INTO ` + table + ` (` + cols + `) VALUES `
	b := &bulkInsert{table: table, cols: n, args: make([]any, 0, n*rowsPerInsert)}
	var err error
	if b.one, err = tx.PrepareContext(ctx, q+row); err != nil {
		return nil, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	if b.many, err = tx.PrepareContext(ctx, q+row+strings.Repeat(", "+row, rowsPerInsert-1)); err != nil {
		b.one.Close()
		return nil, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	return b, nil
}

// add queues a row of cols values and inserts the queue once it is full.
func (b *bulkInsert) add(ctx context.Context, row ...any) error {
	b.args = append(b.args, row...)
	if len(b.args) < b.cols*rowsPerInsert {
		return nil
	}
	defer b.discard()
	_, err := b.many.ExecContext(ctx, b.args...)
	return err
}

// flush inserts the rows queued, one statement each.
func (b *bulkInsert) flush(ctx context.Context) error {
	defer b.discard()
	for i := 0; i < len(b.args); i += b.cols {
		if _, err := b.one.ExecContext(ctx, b.args[i:i+b.cols]...); err != nil {
			return err
		}
	}
	return nil
}

func (b *bulkInsert) discard() {
	clear(b.args)
	b.args = b.args[:0]
}

func (b *bulkInsert) close() {
	b.one.Close()
	b.many.Close()
}

// stagedIndex writes an initial load's index rows: the token, string and
// reference rows into the staging tables, the date rows into date_idx.
type stagedIndex struct {
	tok, str, date, ref *bulkInsert
}

func prepareStagedIndex(ctx context.Context, tx *sql.Tx) (*stagedIndex, error) {
	var si stagedIndex
	for _, p := range []struct {
		dst         **bulkInsert
		table, cols string
	}{
		{&si.tok, "temp." + stagedTokens.staging(), stagedTokens.cols},
		{&si.str, "temp." + stagedStrings.staging(), stagedStrings.cols},
		{&si.ref, "temp." + stagedRefs.staging(), stagedRefs.cols},
		{&si.date, "date_idx", "type, param, lo, hi, vid"},
	} {
		b, err := prepareBulk(ctx, tx, p.table, p.cols)
		if err != nil {
			si.close()
			return nil, err
		}
		*p.dst = b
	}
	return &si, nil
}

// add queues the index rows of the version vid of a resource of type rt.
func (si *stagedIndex) add(ctx context.Context, rt string, ix indexRows, vid int64) error {
	for _, r := range ix.tokens {
		if err := si.tok.add(ctx, rt, r.param, r.value, r.system, vid); err != nil {
			return fmt.Errorf("index %s: %w", rt, err)
		}
	}
	for _, r := range ix.strings {
		if err := si.str.add(ctx, rt, r.param, r.norm, r.raw, vid); err != nil {
			return fmt.Errorf("index %s: %w", rt, err)
		}
	}
	for _, r := range ix.dates {
		if err := si.date.add(ctx, rt, r.param, r.lo, r.hi, vid); err != nil {
			return fmt.Errorf("index %s: %w", rt, err)
		}
	}
	for _, r := range ix.refs {
		if err := si.ref.add(ctx, rt, r.param, r.ttype, r.tid, r.base, vid); err != nil {
			return fmt.Errorf("index %s: %w", rt, err)
		}
	}
	return nil
}

func (si *stagedIndex) all() []*bulkInsert { return []*bulkInsert{si.tok, si.str, si.date, si.ref} }

// flush writes every row queued, so that a batch ends whole.
func (si *stagedIndex) flush(ctx context.Context) error {
	var errs []error
	for _, b := range si.all() {
		if err := b.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("insert into %s: %w", b.table, err))
		}
	}
	return errors.Join(errs...)
}

func (si *stagedIndex) close() {
	for _, b := range si.all() {
		if b != nil {
			b.close()
		}
	}
}
