package rsasign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

func genKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// Both implementations must produce signatures crypto/rsa verifies, and the
// same bytes: PKCS#1 v1.5 is deterministic.
func TestSignaturesVerifyAndAgree(t *testing.T) {
	priv := genKey(t)
	k, err := New(priv)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s", k.Backend())
	for _, payload := range [][]byte{nil, []byte("a"), bytes.Repeat([]byte("claims."), 300)} {
		sig, err := k.SignSHA256(payload)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(payload)
		if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, d[:], sig); err != nil {
			t.Fatalf("%s signature does not verify: %v", k.Backend(), err)
		}
		want, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig, want) {
			t.Fatalf("%s signature differs from crypto/rsa's", k.Backend())
		}
	}
}

// Where the binary has cgo on Linux and libcrypto 3 is installed (every
// machine sim is built and tested on), signing must use it: otherwise the
// speed figures in BENCHMARKS.md silently stop holding.
func TestOpenSSLUsedWhereAvailable(t *testing.T) {
	if !Available() {
		t.Skip("libcrypto 3 not loadable in this build (no cgo, or not installed)")
	}
	k, err := New(genKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if k.Backend() != BackendOpenSSL {
		t.Fatalf("backend %s, want %s", k.Backend(), BackendOpenSSL)
	}
}

func TestGoForcedByEnvironment(t *testing.T) {
	t.Setenv("SIM_CRYPTO", BackendGo)
	k, err := New(genKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if k.Backend() != BackendGo {
		t.Fatalf("backend %s with SIM_CRYPTO=go", k.Backend())
	}
	if _, err := k.SignSHA256([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentSigning(t *testing.T) {
	priv := genKey(t)
	k, err := New(priv)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			p := []byte{byte(i)}
			sig, err := k.SignSHA256(p)
			if err == nil {
				d := sha256.Sum256(p)
				err = rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, d[:], sig)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestNilPublicKey(t *testing.T) {
	for _, pub := range []*rsa.PublicKey{nil, {}} {
		if _, err := NewPublic(pub); err == nil {
			t.Errorf("NewPublic(%v): no error", pub)
		}
	}
}

func TestNilKey(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

// onBackends runs f in a sub-benchmark per implementation, with priv on
// it (skipped where the implementation is not available).
func onBackends(b *testing.B, priv *rsa.PrivateKey, f func(b *testing.B, k *Key)) {
	for _, backend := range []string{BackendGo, BackendOpenSSL} {
		b.Run(backend, func(b *testing.B) {
			if backend == BackendGo {
				b.Setenv("SIM_CRYPTO", BackendGo)
			}
			k, err := New(priv)
			if err != nil {
				b.Fatal(err)
			}
			if k.Backend() != backend {
				b.Skipf("%s not available", backend)
			}
			f(b, k)
		})
	}
}

// BenchmarkSignRS256 compares the two implementations on one key.
func BenchmarkSignRS256(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 600)
	onBackends(b, genKey(b), func(b *testing.B, k *Key) {
		for b.Loop() {
			if _, err := k.SignSHA256(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Verification accepts exactly the signatures crypto/rsa accepts, on both
// implementations: the key's own, and nothing damaged, shortened, made by
// another key, or over another payload.
func TestVerify(t *testing.T) {
	priv, other := genKey(t), genKey(t)
	for _, backend := range []string{BackendGo, BackendOpenSSL} {
		t.Run(backend, func(t *testing.T) {
			if backend == BackendGo {
				t.Setenv("SIM_CRYPTO", BackendGo)
			}
			k, err := New(priv)
			if err != nil {
				t.Fatal(err)
			}
			if k.Backend() != backend {
				t.Skipf("%s not available", backend)
			}
			o, err := New(other)
			if err != nil {
				t.Fatal(err)
			}
			// The same checks through the public key alone, as a partner
			// holds it from a JWKS.
			pk, err := NewPublic(&priv.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if pk.Backend() != backend {
				t.Fatalf("public key on %s, the private key on %s", pk.Backend(), backend)
			}
			payload := []byte("header.claims")
			sig, err := k.SignSHA256(payload)
			if err != nil {
				t.Fatal(err)
			}
			foreign, err := o.SignSHA256(payload)
			if err != nil {
				t.Fatal(err)
			}
			damaged := bytes.Clone(sig)
			damaged[10] ^= 0x80
			for who, v := range map[string]interface {
				VerifySHA256(payload, sig []byte) error
			}{"key": k, "public key": pk} {
				if err := v.VerifySHA256(payload, sig); err != nil {
					t.Fatalf("%s: own signature refused: %v", who, err)
				}
				for name, c := range map[string]struct{ payload, sig []byte }{
					"other payload":    {[]byte("header.claimz"), sig},
					"damaged":          {payload, damaged},
					"another key":      {payload, foreign},
					"shortened":        {payload, sig[1:]},
					"empty":            {payload, nil},
					"one byte longer":  {payload, append(bytes.Clone(sig), 0)},
					"zero signature":   {payload, make([]byte, len(sig))},
					"modulus-size ffs": {payload, bytes.Repeat([]byte{0xff}, len(sig))},
				} {
					if err := v.VerifySHA256(c.payload, c.sig); err == nil {
						t.Errorf("%s: %s: accepted", who, name)
					}
				}
			}
		})
	}
}

// BenchmarkVerifyRS256 compares the two implementations on one key.
func BenchmarkVerifyRS256(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 600)
	onBackends(b, genKey(b), func(b *testing.B, k *Key) {
		sig, err := k.SignSHA256(payload)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := k.VerifySHA256(payload, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
