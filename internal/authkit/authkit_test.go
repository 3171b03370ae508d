package authkit

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

func FuzzParseValues(f *testing.F) {
	f.Add("grant_type=authorization_code&code=x")
	f.Fuzz(func(t *testing.T, raw string) {
		_, err := ParseValues(raw, "resource")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != "invalid_request" {
				t.Fatalf("not an OAuth error: %v", err)
			}
		}
	})
}

func FuzzClientAssertion(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	reg, _ := NewRegistry(context.Background(), NewMemStore(nil), nil)
	a := &ClientAuthenticator{Registry: reg, Audiences: []string{"http://as/token"}, Replay: NewMemStore(nil)}
	f.Fuzz(func(t *testing.T, assertion string) {
		form := url.Values{"client_assertion_type": {AssertionType}, "client_assertion": {assertion}}
		r := httptest.NewRequest("POST", "/token", strings.NewReader(form.Encode()))
		_, err := a.Authenticate(context.Background(), r, form, true)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("want OAuth error, got %v", err)
		}
	})
}

func TestPKCE(t *testing.T) {
	v := strings.Repeat("a", 43)
	if !VerifyPKCE(S256(v), v) || VerifyPKCE(S256(v), strings.Repeat("b", 43)) || VerifyPKCE(S256("short"), "short") {
		t.Fatal("PKCE")
	}
	if ValidVerifier(strings.Repeat("a", 129)) || ValidVerifier(strings.Repeat("a", 42)+"!") {
		t.Fatal("verifier charset/length")
	}
}

func testStore(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.Add(ctx, "b", "k", []byte("v"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "b", "k", []byte("v"), time.Now().Add(time.Hour)); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: %v", err)
	}
	if err := s.Swap(ctx, "b", "k", []byte("x"), []byte("y"), time.Time{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("swap wrong old: %v", err)
	}
	if err := s.Swap(ctx, "b", "k", []byte("v"), []byte("w"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Take(ctx, "b", "k"); err != nil || string(v) != "w" {
		t.Fatalf("take: %q %v", v, err)
	}
	if _, err := s.Take(ctx, "b", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second take: %v", err)
	}
	_ = s.Put(ctx, "b", "old", []byte("v"), time.Now().Add(-time.Second))
	if _, err := s.Get(ctx, "b", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatal("expired item visible")
	}
	if err := s.Add(ctx, "b", "old", []byte("v"), time.Time{}); err != nil {
		t.Fatalf("add over expired: %v", err)
	}
}

func TestStores(t *testing.T) {
	testStore(t, NewMemStore(nil))
	db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), "a.db"), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	testStore(t, &SQLStore{Write: db.Write, Read: db.Read})
}

func TestSignerPersistsAndRotates(t *testing.T) {
	ctx := context.Background()
	st := NewMemStore(nil)
	s, err := NewSigner(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign(map[string]any{"a": 1}, "at+jwt")
	if err := s.Rotate(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	s2, err := NewSigner(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	v, err := s2.Verify(tok, &out)
	if err != nil || v.Type != "at+jwt" || out["a"] != float64(1) {
		t.Fatalf("old token after rotation+restart: %v %v", v, err)
	}
	if s2.ActiveKeyID() == v.KeyID {
		t.Fatal("restart did not keep the rotated active key")
	}
	if !strings.Contains(string(s2.JWKSJSON()), v.KeyID) {
		t.Fatal("old kid not published")
	}
}
