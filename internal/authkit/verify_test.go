package authkit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Verify accepts this signer's RS256 tokens and nothing that merely looks
// like them: another key under the same kid, an altered header or
// payload, alg none, a retired key.
func TestSignerVerifyRS256(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	s, err := NewSigner(ctx, NewMemStore(clock), clock)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(map[string]any{"sub": "alice", "n": 7}, "launch-token+jwt")
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Sub string `json:"sub"`
		N   int    `json:"n"`
	}
	v, err := s.Verify(tok, &out)
	if err != nil || v.Type != "launch-token+jwt" || v.KeyID != s.ActiveKeyID() || out.Sub != "alice" || out.N != 7 {
		t.Fatalf("own token: %+v %+v %v", v, out, err)
	}

	parts := strings.Split(tok, ".")
	enc := base64.RawURLEncoding.EncodeToString
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(alg jose.SignatureAlgorithm, key any, kid string) string {
		t.Helper()
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
			(&jose.SignerOptions{}).WithType("launch-token+jwt").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		x, err := jwt.Signed(sig).Claims(map[string]any{"sub": "mallory"}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for name, forged := range map[string]string{
		"another key, same kid": sign(jose.RS256, otherKey, s.ActiveKeyID()),
		"unknown kid":           sign(jose.RS256, otherKey, "nobody"),
		"altered payload":       parts[0] + "." + enc([]byte(`{"sub":"mallory","n":7}`)) + "." + parts[2],
		"altered header":        enc([]byte(`{"alg":"RS256","kid":"`+s.ActiveKeyID()+`","typ":"at+jwt"}`)) + "." + parts[1] + "." + parts[2],
		"alg none":              enc([]byte(`{"alg":"none","kid":"`+s.ActiveKeyID()+`"}`)) + "." + parts[1] + ".",
		"no signature":          parts[0] + "." + parts[1] + ".",
		"two parts":             parts[0] + "." + parts[1],
		"empty":                 "",
	} {
		if _, err := s.Verify(forged, &out); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// After a rotation the old key checks its tokens until it retires.
	if err := s.Rotate(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(tok, &out); err != nil {
		t.Fatalf("token of the demoted key before it retires: %v", err)
	}
	now = now.Add(time.Hour + time.Second)
	if _, err := s.Verify(tok, &out); err == nil {
		t.Fatal("token of a retired key accepted")
	}
}

// A partner checks this signer's tokens with RS256Verifier over the key it
// read from the published JWKS, as OtherAS does with the EHR's: the
// token's own signature verifies, nothing else does.
func TestRS256Verifier(t *testing.T) {
	ctx := context.Background()
	s, err := NewSigner(ctx, NewMemStore(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKSJSON(), &set); err != nil {
		t.Fatal(err)
	}
	keys := set.Key(s.ActiveKeyID())
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys with kid %s", len(keys), s.ActiveKeyID())
	}
	v, err := RS256Verifier(keys[0].Key.(*rsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(map[string]any{"sub": "alice"}, "launch-token+jwt")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(raw string) ([]byte, error) {
		jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			return nil, err
		}
		return jws.Verify(v)
	}
	if payload, err := verify(tok); err != nil || !strings.Contains(string(payload), `"sub":"alice"`) {
		t.Fatalf("own token: %s, %v", payload, err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: otherKey},
		(&jose.SignerOptions{}).WithType("launch-token+jwt").WithHeader("kid", s.ActiveKeyID()))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := jwt.Signed(forger).Claims(map[string]any{"sub": "alice"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	altered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory"}`)) + "." + parts[2]
	for name, raw := range map[string]string{"another key, same kid": forged, "altered payload": altered} {
		if _, err := verify(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := v.VerifyPayload([]byte(parts[0]+"."+parts[1]), []byte("x"), jose.HS256); err == nil {
		t.Error("HS256 accepted by an RS256 verifier")
	}
	if _, err := RS256Verifier(nil); err == nil {
		t.Error("RS256Verifier(nil): no error")
	}
}

// FuzzVerify: whatever the token, Verify returns without panicking and
// accepts no claims it did not sign.
func FuzzVerify(f *testing.F) {
	ctx := context.Background()
	s, err := NewSigner(ctx, NewMemStore(nil), nil)
	if err != nil {
		f.Fatal(err)
	}
	own, err := s.Sign(map[string]any{"sub": "alice"}, "launch-token+jwt")
	if err != nil {
		f.Fatal(err)
	}
	mac, err := s.SignMAC(map[string]any{"sub": "alice"}, "at+jwt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(own[:len(own)-2])
	f.Add(mac + "x")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		var out map[string]any
		// Whatever is accepted carries the claims this signer signed
		// (base64 may spell the same bytes in more than one way).
		if _, err := s.Verify(tok, &out); err == nil && (len(out) != 1 || out["sub"] != "alice") {
			t.Fatalf("accepted claims this signer did not sign: %q", tok)
		}
	})
}

// BenchmarkPartnerVerify is OtherAS's check of a launch-token signature:
// go-jose's Verify with the EHR's RSA public key as is (crypto/rsa) and
// with RS256Verifier over it.
func BenchmarkPartnerVerify(b *testing.B) {
	s, err := NewSigner(context.Background(), NewMemStore(nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := s.Sign(map[string]any{"sub": "alice", "aud": "https://other.example/auth"}, "launch-token+jwt")
	if err != nil {
		b.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKSJSON(), &set); err != nil {
		b.Fatal(err)
	}
	pub := set.Key(s.ActiveKeyID())[0].Key.(*rsa.PublicKey)
	fast, err := RS256Verifier(pub)
	if err != nil {
		b.Fatal(err)
	}
	for name, key := range map[string]any{"rsa.PublicKey": pub, "RS256Verifier": fast} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jws.Verify(key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
