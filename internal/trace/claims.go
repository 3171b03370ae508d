package trace

import (
	"strings"
	"sync"
)

// claimsCache remembers the decoded claims of recently seen bearer tokens,
// so that a token presented on many requests (every FHIR read of an app) is
// decoded once. It is keyed by the token's header and payload only: the
// signature, the part that makes the token a credential, is never kept.
// The cached maps are shared between events and must not be modified.
type claimsCache struct {
	mu  sync.Mutex
	max int
	m   map[string]map[string]any
}

// bearerClaims serves the Authorization headers of every Recorder.
var bearerClaims = &claimsCache{max: 512}

// get returns JWTClaims(v), from the cache when v's header and payload were
// seen before. v that is not a JWT returns nil and is not remembered.
func (c *claimsCache) get(v string) map[string]any {
	dot := strings.LastIndexByte(v, '.')
	if dot < 0 || len(v) > 16<<10 {
		return nil
	}
	key := v[:dot]
	c.mu.Lock()
	claims, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return claims
	}
	claims = JWTClaims(v)
	if claims == nil {
		return nil
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]map[string]any, c.max)
	}
	c.m[strings.Clone(key)] = claims
	c.mu.Unlock()
	return claims
}
