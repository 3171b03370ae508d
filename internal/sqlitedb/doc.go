// Package sqlitedb opens a SQLite database file the way every sim store uses
// it: one writer connection that begins transactions IMMEDIATE, a bounded
// read-only reader pool, WAL, pragmas in the DSN, and embedded migrations
// applied in order, each in its own transaction. Stmts keeps statements
// prepared on a pool by their SQL text.
//
// Writes are serialised in Go by the single writer connection, never by
// fighting over SQLite's locks: deferred transactions that read then write
// fail with SQLITE_BUSY under concurrency, immediate ones wait their turn.
package sqlitedb
