// Package rsasign makes RSASSA-PKCS1-v1_5 SHA-256 signatures (RS256) with
// the fastest implementation the process has: OpenSSL's libcrypto when the
// binary is built with cgo and libcrypto 3 can be loaded at run time, Go's
// crypto/rsa otherwise.
//
// Signing is what a SMART launch costs most: every id_token and
// launch-token is an RS256 signature, and on the 2-core machines sim is
// measured on one costs about 1.3 ms in crypto/rsa against 0.36 ms in
// libcrypto (BENCHMARKS.md). Both produce the same bytes (PKCS#1 v1.5 is
// deterministic); every key's first OpenSSL signature is checked with
// crypto/rsa before that key uses OpenSSL, and a key that fails the check
// stays on Go's implementation.
//
// SIM_CRYPTO=go in the environment keeps every key on crypto/rsa.
package rsasign
