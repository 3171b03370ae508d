package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// Stmts keeps statements prepared on one pool, by SQL text. SQLite's
// parse and plan of a statement costs about as much as running a small
// one, and its variance is the tail: a kept *sql.Stmt is prepared once per
// pooled connection and then only bound and stepped. Beyond Max texts,
// statements run unprepared. Safe for concurrent use.
type Stmts struct {
	db  *sql.DB
	max int
	mu  sync.RWMutex
	m   map[string]*sql.Stmt
}

// NewStmts keeps up to max prepared statements on db.
func NewStmts(db *sql.DB, max int) *Stmts {
	return &Stmts{db: db, max: max, m: map[string]*sql.Stmt{}}
}

// prepared returns the kept statement for q, preparing it on first use;
// nil when max texts are kept already.
func (c *Stmts) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.RLock()
	st, ok := c.m[q]
	c.mu.RUnlock()
	if ok {
		return st, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok {
		return st, nil
	}
	if len(c.m) >= c.max {
		return nil, nil
	}
	// Prepared without the caller's context: the statement outlives the
	// request that first needed it.
	st, err := c.db.PrepareContext(context.WithoutCancel(ctx), q)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	c.m[q] = st
	return st, nil
}

// QueryContext runs q, prepared.
func (c *Stmts) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := c.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.db.QueryContext(ctx, q, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs q, prepared; a failed prepare is reported by the
// row (q runs unprepared).
func (c *Stmts) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := c.prepared(ctx, q)
	if err != nil || st == nil {
		return c.db.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// ExecContext runs q, prepared.
func (c *Stmts) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := c.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.db.ExecContext(ctx, q, args...)
	}
	return st.ExecContext(ctx, args...)
}

// Close closes the kept statements.
func (c *Stmts) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}
