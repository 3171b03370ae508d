package fhirstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// stagedTables are the index tables an initial load fills through
// staging tables: those with a primary key.
var stagedTables = []indexTable{tokenTable, stringTable, refTable}

// staging is the staging table's name, in the temporary database.
func (t indexTable) staging() string { return "load_" + t.name }

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
			_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO main.`+t.name+` (`+t.cols+`) SELECT `+t.cols+` FROM temp.`+t.staging()+` ORDER BY `+t.key)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("move index rows into %s: %w", t.name, err))
		}
	}
	return errors.Join(errs...)
}
