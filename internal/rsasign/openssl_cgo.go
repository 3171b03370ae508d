//go:build cgo && linux

package rsasign

import (
	"crypto"
	"crypto/rsa"
	"math/big"

	"github.com/golang-fips/openssl/v2"
	"github.com/golang-fips/openssl/v2/bbig"
)

// libcrypto is the shared library loaded at run time (Debian: libssl3).
const libcrypto = "libcrypto.so.3"

func load() { loaded = openssl.Init(libcrypto) == nil }

type opensslKey struct {
	k *openssl.PrivateKeyRSA
	opensslPublic
}

type opensslPublic struct{ pub *openssl.PublicKeyRSA }

func newNative(priv *rsa.PrivateKey) (native, error) {
	if !Available() || len(priv.Primes) != 2 {
		return nil, nil
	}
	pc := priv.Precomputed
	k, err := openssl.NewPrivateKeyRSA(bbig.Enc(priv.N), bbig.Enc(big.NewInt(int64(priv.E))), bbig.Enc(priv.D),
		bbig.Enc(priv.Primes[0]), bbig.Enc(priv.Primes[1]), bbig.Enc(pc.Dp), bbig.Enc(pc.Dq), bbig.Enc(pc.Qinv))
	if err != nil {
		return nil, err
	}
	pub, err := newOpenSSLPublic(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return opensslKey{k: k, opensslPublic: pub}, nil
}

func newNativePublic(pub *rsa.PublicKey) (nativeVerifier, error) {
	if !Available() {
		return nil, nil
	}
	p, err := newOpenSSLPublic(pub)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func newOpenSSLPublic(pub *rsa.PublicKey) (opensslPublic, error) {
	k, err := openssl.NewPublicKeyRSA(bbig.Enc(pub.N), bbig.Enc(big.NewInt(int64(pub.E))))
	return opensslPublic{pub: k}, err
}

func (o opensslKey) signSHA256(digest []byte) ([]byte, error) {
	return openssl.SignRSAPKCS1v15(o.k, crypto.SHA256, digest)
}

func (o opensslPublic) verifySHA256(digest, sig []byte) error {
	return openssl.VerifyRSAPKCS1v15(o.pub, crypto.SHA256, digest, sig)
}
