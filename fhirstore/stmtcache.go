package fhirstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// maxCachedStmts bounds the reader statement cache. Search builds its SQL
// from the shape of a query (parameters, values per parameter, sort keys),
// not from the values, so a server sees few distinct texts; past the bound
// statements are prepared per call as before.
const maxCachedStmts = 256

// stmtCache keeps prepared reader statements by SQL text. Preparing (SQLite
// parsing and planning the text) was half the cost of a small search, and
// its variance the tail: a cached *sql.Stmt is prepared once per pooled
// connection and then only bound and stepped.
type stmtCache struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

// get returns the cached statement for q, preparing it on first use; nil
// when the cache is full (the caller then runs q unprepared).
func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
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
	if len(c.m) >= maxCachedStmts {
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

func (c *stmtCache) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.db.QueryContext(ctx, q, args...)
	}
	return st.QueryContext(ctx, args...)
}

func (c *stmtCache) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := c.get(ctx, q)
	if err != nil || st == nil {
		// A failed prepare is reported by the unprepared query.
		return c.db.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}
