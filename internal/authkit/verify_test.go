package authkit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
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
