package fhirstore

import "sync"

// The cache's bounds: how many current versions it keeps (about 2 KB each
// for a generated Patient), how many body bytes in all, and the largest
// body it keeps (bigger ones are read from SQLite every time).
const (
	readCacheSize    = 4096
	readCacheBytes   = 16 << 20
	readCacheMaxBody = 64 << 10
)

// readCache keeps the current version of recently read resources, so that
// a read of a hot resource (an app reading its patient again and again)
// skips SQLite: its read costs more CPU than the rest of the request's
// handling.
//
// Every write invalidates: the written key, or everything for a bulk load.
// A read that began before a write may not fill the cache after it: each
// write advances gen, and a fill is kept only if gen has not moved since
// the read began, so the cache never holds a version older than one that
// was committed and invalidated.
type readCache struct {
	mu    sync.Mutex
	gen   uint64
	m     map[string]*Version // type/id -> current version (never deleted)
	bytes int                 // of the bodies in m
}

func newReadCache() *readCache { return &readCache{m: map[string]*Version{}} }

func cacheKey(resourceType, id string) string { return resourceType + "/" + id }

// get returns a copy of the cached version (whose Body is shared and must
// not be modified), and the generation a fill after a miss must quote.
func (c *readCache) get(key string) (*Version, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[key]; ok {
		cp := *v
		return &cp, c.gen
	}
	return nil, c.gen
}

// fill keeps v unless a write happened since gen.
func (c *readCache) fill(key string, v *Version, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || len(v.Body) > readCacheMaxBody {
		return
	}
	if old, ok := c.m[key]; ok {
		c.bytes -= len(old.Body)
	}
	if len(c.m) >= readCacheSize || c.bytes+len(v.Body) > readCacheBytes {
		clear(c.m)
		c.bytes = 0
	}
	cp := *v
	c.m[key] = &cp
	c.bytes += len(v.Body)
}

// invalidate forgets key after a write of it.
func (c *readCache) invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if old, ok := c.m[key]; ok {
		c.bytes -= len(old.Body)
		delete(c.m, key)
	}
}

// invalidateAll forgets everything after a bulk write.
func (c *readCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
	c.bytes = 0
}
