package fhirstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A resource version's search index rows (indexRows) are written by an
// indexWriter, whichever way the version came: a single write, a load
// into a store that is not new, or an initial load. The first two insert
// into the index tables; an initial load appends its token, string and
// reference rows to staging tables instead and moves them at Close
// (loadstage.go).

// indexTable is a search index table as the writes see it.
type indexTable struct {
	name string // the table
	cols string // its columns, in the order a row's values are given
	key  string // its primary key; empty for date_idx, a rowid table
}

var (
	tokenTable  = indexTable{"token_idx", "type, param, value, system, vid", "type, param, value, system, vid"}
	stringTable = indexTable{"string_idx", "type, param, norm, raw, vid", "type, param, norm, raw, vid"}
	dateTable   = indexTable{"date_idx", "type, param, lo, hi, vid", ""}
	refTable    = indexTable{"ref_idx", "type, param, ttype, tid, base, vid", "type, param, tid, ttype, base, vid"}
	indexTables = []indexTable{tokenTable, stringTable, dateTable, refTable}
)

// indexWriter writes index rows in one transaction.
type indexWriter struct {
	tok, str, date, ref *bulkInsert
}

// prepareIndexWriter prepares the inserts of index rows into the index
// tables or, with staged, of token, string and reference rows into an
// initial load's staging tables. In a table with a primary key a row
// already there is skipped: a resource may name the same token twice.
func prepareIndexWriter(ctx context.Context, tx *sql.Tx, staged bool) (*indexWriter, error) {
	var w indexWriter
	for _, p := range []struct {
		dst **bulkInsert
		t   indexTable
	}{{&w.tok, tokenTable}, {&w.str, stringTable}, {&w.date, dateTable}, {&w.ref, refTable}} {
		into, verb := p.t.name, "INSERT"
		switch {
		case staged && slices.Contains(stagedTables, p.t):
			into = "temp." + p.t.staging()
		case p.t.key != "":
			verb = "INSERT OR IGNORE"
		}
		b, err := prepareBulk(ctx, tx, verb, into, p.t.cols)
		if err != nil {
			w.close()
			return nil, err
		}
		*p.dst = b
	}
	return &w, nil
}

// add queues the index rows of the version vid of a resource of type rt;
// rows are written rowsPerInsert at a time, and by flush.
func (w *indexWriter) add(ctx context.Context, rt string, ix indexRows, vid int64) error {
	for _, r := range ix.tokens {
		if err := w.tok.add(ctx, rt, r.param, r.value, r.system, vid); err != nil {
			return err
		}
	}
	for _, r := range ix.strings {
		if err := w.str.add(ctx, rt, r.param, r.norm, r.raw, vid); err != nil {
			return err
		}
	}
	for _, r := range ix.dates {
		if err := w.date.add(ctx, rt, r.param, r.lo, r.hi, vid); err != nil {
			return err
		}
	}
	for _, r := range ix.refs {
		if err := w.ref.add(ctx, rt, r.param, r.ttype, r.tid, r.base, vid); err != nil {
			return err
		}
	}
	return nil
}

func (w *indexWriter) all() []*bulkInsert { return []*bulkInsert{w.tok, w.str, w.date, w.ref} }

// flush writes every row queued, so that a write or a batch ends whole.
func (w *indexWriter) flush(ctx context.Context) error {
	var errs []error
	for _, b := range w.all() {
		if err := b.flush(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *indexWriter) close() {
	for _, b := range w.all() {
		if b != nil {
			b.close()
		}
	}
}

// rowsPerInsert is how many rows one INSERT of a load's index rows
// carries: the fixed cost of a statement in database/sql and the driver
// is paid once for them all.
const rowsPerInsert = 64

// bulkInsert inserts rows into one table, rowsPerInsert to a statement.
// The statement for many rows is prepared when it is first needed: a
// single write never needs it.
type bulkInsert struct {
	tx        *sql.Tx
	table     string
	cols      int
	insert    string // the statement up to VALUES
	row       string // one row's placeholders
	one, many *sql.Stmt
	args      []any // rows waiting for a statement, cols values each
}

func prepareBulk(ctx context.Context, tx *sql.Tx, verb, table, cols string) (*bulkInsert, error) {
	n := strings.Count(cols, ",") + 1
	b := &bulkInsert{tx: tx, table: table, cols: n,
		insert: verb + ` INTO ` + table + ` (` + cols + `) VALUES `,
		row:    "(?" + strings.Repeat(", ?", n-1) + ")"}
	var err error
	if b.one, err = tx.PrepareContext(ctx, b.insert+b.row); err != nil {
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
	if b.many == nil {
		var err error
		if b.many, err = b.tx.PrepareContext(ctx, b.insert+b.row+strings.Repeat(", "+b.row, rowsPerInsert-1)); err != nil {
			return fmt.Errorf("prepare insert into %s: %w", b.table, err)
		}
	}
	if _, err := b.many.ExecContext(ctx, b.args...); err != nil {
		return fmt.Errorf("insert into %s: %w", b.table, err)
	}
	return nil
}

// flush inserts the rows queued, one statement each.
func (b *bulkInsert) flush(ctx context.Context) error {
	defer b.discard()
	for i := 0; i < len(b.args); i += b.cols {
		if _, err := b.one.ExecContext(ctx, b.args[i:i+b.cols]...); err != nil {
			return fmt.Errorf("insert into %s: %w", b.table, err)
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
	if b.many != nil {
		b.many.Close()
	}
}
