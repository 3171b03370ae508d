package authkit

import (
	"context"
	"time"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

// StoreCacheKiB is the page cache of each connection to an authorization
// server's store: its hot rows are the few most recent (the refresh
// families in use), and under sustained load the default cache would fill
// with rows nobody reads again.
const StoreCacheKiB = 2000

// OpenStore opens an authorization server's durable store (keys, clients,
// refresh tokens, revocations): a SQLite file at path with Migrations, or,
// with path empty, a MemStore (the returned *sqlitedb.DB is nil then). The
// caller closes the DB.
func OpenStore(ctx context.Context, path string, now func() time.Time) (*sqlitedb.DB, Store, error) {
	if path == "" {
		return nil, NewMemStore(now), nil
	}
	db, err := sqlitedb.OpenWith(ctx, path, Migrations(), sqlitedb.Options{CacheKiB: StoreCacheKiB})
	if err != nil {
		return nil, nil, err
	}
	return db, &SQLStore{Write: db.Write, Read: db.Read, Now: now}, nil
}
