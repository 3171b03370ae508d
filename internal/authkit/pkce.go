package authkit

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// validPKCEString checks RFC 7636 §4.1: 43..128 of [A-Z a-z 0-9 - . _ ~].
func validPKCEString(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// ValidVerifier reports whether v is a well-formed code_verifier.
func ValidVerifier(v string) bool { return validPKCEString(v) }

// ValidChallenge reports whether c can be an S256 code_challenge
// (43 base64url characters).
func ValidChallenge(c string) bool {
	if len(c) != 43 || !validPKCEString(c) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil
}

// S256 returns the S256 code_challenge of verifier.
func S256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// VerifyPKCE checks verifier against an S256 challenge (RFC 7636 §4.6).
func VerifyPKCE(challenge, verifier string) bool {
	if !ValidVerifier(verifier) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(S256(verifier)), []byte(challenge)) == 1
}
