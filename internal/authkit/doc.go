// Package authkit holds what every sim authorization server shares: RFC 6749
// error values and writers, PKCE (RFC 7636, S256 only), client
// authentication (client_secret_basic, client_secret_post and SMART's
// private_key_jwt), a signer with key rotation and a JWKS handler (go-jose),
// a small key/value store with single-use and compare-and-swap semantics
// (in memory or in SQLite), and Access, the grant a verified access token
// carries to a resource server.
//
// It sits below ehr and otheras and imports neither; the conformance
// sub-package holds the OAuth invariants both must meet.
package authkit
