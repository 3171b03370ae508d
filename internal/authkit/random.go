package authkit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// RandomString returns n random bytes, base64url encoded.
func RandomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hash returns a base64url SHA-256 of s: store keys for secrets and tokens,
// so a stolen database holds no usable credential.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
