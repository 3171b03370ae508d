package rsasign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
)

// Backend names an implementation.
const (
	BackendGo      = "go"
	BackendOpenSSL = "openssl"
)

// native is an accelerated implementation of one key's signatures.
type native interface {
	signSHA256(digest []byte) ([]byte, error)
	nativeVerifier
}

// nativeVerifier is an accelerated check of one public key's signatures.
type nativeVerifier interface {
	verifySHA256(digest, sig []byte) error
}

// selfTestDigest is what a native implementation must sign or refuse
// correctly before a key uses it.
var selfTestDigest = sha256.Sum256([]byte("sim rsasign self-test"))

// goForced reports SIM_CRYPTO=go: every key stays on crypto/rsa.
func goForced() bool { return os.Getenv("SIM_CRYPTO") == BackendGo }

// Key signs with one RSA private key.
type Key struct {
	priv   *rsa.PrivateKey
	native native // nil: crypto/rsa
	public PublicKey
}

// New prepares priv for signing, on OpenSSL when it is available and its
// first signature checks out.
func New(priv *rsa.PrivateKey) (*Key, error) {
	if priv == nil {
		return nil, fmt.Errorf("rsa key: none given")
	}
	priv.Precompute()
	k := &Key{priv: priv, public: PublicKey{pub: &priv.PublicKey}}
	if goForced() {
		return k, nil
	}
	n, err := newNative(priv)
	if err != nil || n == nil {
		return k, nil // crypto/rsa
	}
	probe := selfTestDigest
	sig, err := n.signSHA256(probe[:])
	if err != nil || rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, probe[:], sig) != nil {
		return k, nil
	}
	// The verifier must accept that signature and refuse a damaged one.
	bad := append([]byte(nil), sig...)
	bad[len(bad)-1] ^= 1
	if n.verifySHA256(probe[:], sig) != nil || n.verifySHA256(probe[:], bad) == nil {
		return k, nil
	}
	k.native, k.public.native = n, n
	return k, nil
}

// Backend tells which implementation the key signs with.
func (k *Key) Backend() string {
	if k.native != nil {
		return BackendOpenSSL
	}
	return BackendGo
}

// Public returns the public half.
func (k *Key) Public() *rsa.PublicKey { return &k.priv.PublicKey }

// SignSHA256 signs payload's SHA-256 digest (RS256).
func (k *Key) SignSHA256(payload []byte) ([]byte, error) {
	digest := sha256.Sum256(payload)
	if k.native != nil {
		if sig, err := k.native.signSHA256(digest[:]); err == nil {
			return sig, nil
		}
		// libcrypto failed after its self-test passed: crypto/rsa signs
		// this one (the signatures are the same bytes).
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.priv, crypto.SHA256, digest[:])
	if err != nil {
		return nil, fmt.Errorf("rsa sign: %w", err)
	}
	return sig, nil
}

// VerifySHA256 checks an RS256 signature of payload by this key's public
// half (see PublicKey.VerifySHA256).
func (k *Key) VerifySHA256(payload, sig []byte) error { return k.public.VerifySHA256(payload, sig) }

// PublicKey checks RS256 signatures with one RSA public key, such as a
// partner's key from its JWKS.
type PublicKey struct {
	pub    *rsa.PublicKey
	native nativeVerifier // nil: crypto/rsa
}

// NewPublic prepares pub for checking signatures, on OpenSSL when it is
// available and refuses the two signatures no key makes (all zeros, all
// 0xff).
func NewPublic(pub *rsa.PublicKey) (*PublicKey, error) {
	if pub == nil || pub.N == nil {
		return nil, fmt.Errorf("rsa public key: none given")
	}
	k := &PublicKey{pub: pub}
	if goForced() {
		return k, nil
	}
	n, err := newNativePublic(pub)
	if err != nil || n == nil {
		return k, nil // crypto/rsa
	}
	probe := selfTestDigest
	size := pub.Size()
	if n.verifySHA256(probe[:], make([]byte, size)) == nil || n.verifySHA256(probe[:], bytes.Repeat([]byte{0xff}, size)) == nil {
		return k, nil
	}
	k.native = n
	return k, nil
}

// Backend tells which implementation checks the key's signatures.
func (k *PublicKey) Backend() string {
	if k.native != nil {
		return BackendOpenSSL
	}
	return BackendGo
}

// VerifySHA256 checks an RS256 signature of payload. A signature libcrypto
// refuses is checked again by crypto/rsa, so only a signature both refuse
// is reported invalid.
func (k *PublicKey) VerifySHA256(payload, sig []byte) error {
	digest := sha256.Sum256(payload)
	if k.native != nil && k.native.verifySHA256(digest[:], sig) == nil {
		return nil
	}
	if err := rsa.VerifyPKCS1v15(k.pub, crypto.SHA256, digest[:], sig); err != nil {
		return fmt.Errorf("rsa verify: %w", err)
	}
	return nil
}

// Available reports whether OpenSSL's libcrypto is loaded (or loads it).
func Available() bool {
	loadOnce.Do(load)
	return loaded
}

var (
	loadOnce sync.Once
	loaded   bool
)
