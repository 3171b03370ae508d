// Package authkit holds what every sim authorization server shares: RFC 6749
// error values and writers, PKCE (RFC 7636, S256 only), client
// authentication (client_secret_basic, client_secret_post and SMART's
// private_key_jwt), a signer with key rotation and a JWKS handler (go-jose),
// a small key/value store with single-use and compare-and-swap semantics
// (in memory or in SQLite), and Access, the grant a verified access token
// carries to a resource server.
//
// It also holds the OAuth mechanisms both ASes run the same way, each
// server keeping its own policy (what it grants, its pages, its context):
// Sessions (sign-in cookie and store), PendingRequests (authorization
// requests between pages, bound to the browser and CSRF-checked),
// ReadAuthorize (the checks every authorization request passes), Codes
// (single-use codes with a replay marker), RefreshFamilies and
// Revocations (rotation, reuse revokes the family, persisted
// revocations), TokenEndpoint (grant dispatch and RFC 6749 §5 answers),
// and Metadata (the common discovery documents).
//
// It sits below ehr and otheras and imports neither; the conformance
// sub-package holds the OAuth invariants both must meet.
package authkit
