package authkit

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestSignerMACTokens(t *testing.T) {
	ctx := context.Background()
	st := NewMemStore(nil)
	s, err := NewSigner(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.SignMAC(map[string]any{"a": 1}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	v, err := s.Verify(tok, &out)
	if err != nil || v.Type != "at+jwt" || out["a"] != float64(1) {
		t.Fatalf("MAC token: %v %v %v", v, out, err)
	}
	if strings.Contains(string(s.JWKSJSON()), v.KeyID) || strings.Contains(string(s.JWKSJSON()), "oct") {
		t.Fatal("the MAC key is published")
	}
	// The key persists: a restart on the same store checks old tokens.
	s2, err := NewSigner(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Verify(tok, &out); err != nil {
		t.Fatalf("MAC token after restart: %v", err)
	}
	// Another server (another store) cannot check it.
	other, err := NewSigner(ctx, NewMemStore(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(tok, &out); err == nil {
		t.Fatal("another server's signer accepted the MAC token")
	}
	hs := func(key []byte, kid string) string {
		t.Helper()
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		x, err := jwt.Signed(sig).Claims(map[string]any{"a": 2}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	// Forged: the right kid with a guessed secret; the published RSA key
	// used as an HMAC secret (algorithm confusion); the RSA kid.
	pub, _ := x509.MarshalPKIXPublicKey(&s.active.priv.PublicKey)
	for name, forged := range map[string]string{
		"guessed secret":       hs([]byte("0123456789abcdef0123456789abcdef"), v.KeyID),
		"public key as secret": hs(pub, s.ActiveKeyID()),
		"public key, MAC kid":  hs(pub, v.KeyID),
	} {
		if _, err := s.Verify(forged, &out); err == nil {
			t.Errorf("%s: forged HS256 token accepted", name)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s, err := NewSigner(context.Background(), NewMemStore(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	claims := map[string]any{"iss": "https://ehr.example/auth", "sub": "dr.smith", "aud": []string{"https://ehr.example/fhir"}, "scope": "launch openid fhirUser patient/*.rs"}
	b.Run("RS256", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Sign(claims, "at+jwt"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("HS256", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.SignMAC(claims, "at+jwt"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
