package otheras_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/otheras"
)

// expectRefusal runs the second authorize with launch and wants an error
// redirect (never a code, never a page) with code errCode.
func expectRefusal(t *testing.T, w *world, clientID, launch, errCode, descPart string) {
	t.Helper()
	cfg := w.otherOAuth(clientID, "launch", "openid", "fhirUser", "patient/*.rs", "user/Practitioner.rs")
	b := browser.New(nil, appCB)
	page := w.otherAuthorize(t, b, cfg, oauth2.GenerateVerifier(), launch)
	if page.Redirect == nil {
		t.Fatalf("want an error redirect, got page %s (%d): %.300s", page.URL, page.Status, page.Body)
	}
	q := page.Redirect.Query()
	if q.Get("code") != "" || q.Get("error") != errCode || q.Get("state") != "other-state" || q.Get("iss") != w.otherCfg.Issuer {
		t.Fatalf("callback %s, want error=%s with state and iss", page.Redirect.RawQuery, errCode)
	}
	if !strings.Contains(q.Get("error_description"), descPart) {
		t.Errorf("error_description %q lacks %q", q.Get("error_description"), descPart)
	}
}

// sign makes a compact JWS over claims with key, kid and typ.
func sign(t *testing.T, key *rsa.PrivateKey, kid, typ string, claims any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func claimsOf(t *testing.T, jwt string) (map[string]any, map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var h, c map[string]any
	if json.Unmarshal(hb, &h) != nil || json.Unmarshal(pb, &c) != nil {
		t.Fatalf("not a JWT: %.40s", jwt)
	}
	return h, c
}

func seg(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestBadLaunchTokens(t *testing.T) {
	w := newWorld(t, nil)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name, client, errCode, desc string
		launch                      func(t *testing.T, tok *oauth2.Token) string
	}{
		{"random text", "app-other", "invalid_request", "not a launch-token", func(*testing.T, *oauth2.Token) string { return "hello" }},
		{"EHR id_token", "app-other", "invalid_request", "not a launch-token", func(_ *testing.T, tok *oauth2.Token) string { return tok.Extra("id_token").(string) }},
		{"EHR access token", "app-other", "invalid_request", "not a launch-token", func(_ *testing.T, tok *oauth2.Token) string { return tok.AccessToken }},
		{"other app", "evil-other", "invalid_request", "another app", func(_ *testing.T, tok *oauth2.Token) string { return tok.Extra("launch_token").(string) }},
		{"flipped signature", "app-other", "invalid_request", "signature", func(_ *testing.T, tok *oauth2.Token) string {
			lt := tok.Extra("launch_token").(string)
			i := strings.LastIndexByte(lt, '.') + 10
			c := byte('A')
			if lt[i] == 'A' {
				c = 'B'
			}
			return lt[:i] + string(c) + lt[i+1:]
		}},
		{"tampered claims", "app-other", "invalid_request", "signature", func(t *testing.T, tok *oauth2.Token) string {
			lt := tok.Extra("launch_token").(string)
			_, c := claimsOf(t, lt)
			c["sub"] = "someone-else"
			parts := strings.Split(lt, ".")
			return parts[0] + "." + seg(c) + "." + parts[2]
		}},
		{"alg none", "app-other", "invalid_request", "RS256", func(t *testing.T, tok *oauth2.Token) string {
			lt := tok.Extra("launch_token").(string)
			h, c := claimsOf(t, lt)
			h["alg"] = "none"
			return seg(h) + "." + seg(c) + "."
		}},
		{"another key under the EHR's kid", "app-other", "invalid_request", "signature does not verify", func(t *testing.T, tok *oauth2.Token) string {
			h, c := claimsOf(t, tok.Extra("launch_token").(string))
			return sign(t, rsaKey, h["kid"].(string), "launch-token+jwt", c)
		}},
		{"unknown kid", "app-other", "invalid_request", "not signed with a key of its issuer", func(t *testing.T, tok *oauth2.Token) string {
			_, c := claimsOf(t, tok.Extra("launch_token").(string))
			return sign(t, rsaKey, "unknown-kid", "launch-token+jwt", c)
		}},
		{"addressed to another server", "app-other", "invalid_request", "not addressed to this", func(t *testing.T, _ *oauth2.Token) string {
			return w.ehrLaunchFor(t, "p-shared", thirdFHIR).Extra("launch_token").(string)
		}},
		{"expired", "app-other", "invalid_request", "expired", func(_ *testing.T, tok *oauth2.Token) string {
			w.clock.Add(6 * time.Minute)
			return tok.Extra("launch_token").(string)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectRefusal(t, w, tc.client, tc.launch(t, w.ehrLaunch(t, "p-shared")), tc.errCode, tc.desc)
		})
	}
}

func TestLaunchTokenReplayRefused(t *testing.T) {
	w := newWorld(t, nil)
	ehrTok := w.ehrLaunch(t, "p-shared")
	if tok, _ := w.secondLaunch(t, ehrTok, "app-other", "approve", nil, fullScopes...); tok == nil {
		t.Fatal("first use refused")
	}
	expectRefusal(t, w, "app-other", ehrTok.Extra("launch_token").(string), "invalid_request", "already used")
}

// TestLaunchTokenReplayRace: N parallel authorizations with one
// launch-token, exactly one reaches consent.
func TestLaunchTokenReplayRace(t *testing.T) {
	w := newWorld(t, nil)
	lt := w.ehrLaunch(t, "p-shared").Extra("launch_token").(string)
	const n = 8
	var consent, refused atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := browser.New(nil, appCB)
			page := w.otherAuthorize(t, b, w.otherOAuth("app-other", fullScopes...), oauth2.GenerateVerifier(), lt)
			switch {
			case hasForm(page, "decision"):
				consent.Add(1)
			case page.Redirect != nil && page.Redirect.Query().Get("error") == "invalid_request":
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if consent.Load() != 1 || refused.Load() != n-1 {
		t.Fatalf("consent %d, refused %d; want 1 and %d", consent.Load(), refused.Load(), n-1)
	}
}

func TestUntrustedIssuerNeverCalled(t *testing.T) {
	var calls atomic.Int64
	untrusted := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(rw, r)
	}))
	defer untrusted.Close()
	w := newWorld(t, nil)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := w.clock.Now()
	lt := sign(t, key, "k1", "launch-token+jwt", map[string]any{
		"iss": untrusted.URL + "/auth", "sub": "doc", "aud": []string{w.otherCfg.Issuer}, "azp": "app", "software_id": "sw-app",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j1",
		"fhirContext": []any{map[string]any{"type": "Patient", "identifier": map[string]string{"system": "urn:ietf:rfc:3986", "value": untrusted.URL + "/fhir/Patient/p1"}, "role": otheras.RoleLaunchFullURL}},
	})
	expectRefusal(t, w, "app-other", lt, "invalid_request", "not a trusted EHR")
	if calls.Load() != 0 || w.fromOther.Load() != 0 {
		t.Fatalf("OtherAS made %d calls to the untrusted issuer and %d to the EHR", calls.Load(), w.fromOther.Load())
	}
	if !hasDecision(w.rec, "not a trusted EHR") {
		t.Error("no trace decision for the untrusted issuer")
	}
}

func TestEHRDownFailsClosed(t *testing.T) {
	w := newWorld(t, nil)
	ehrTok := w.ehrLaunch(t, "p-shared")
	w.ehrTS.Close()
	expectRefusal(t, w, "app-other", ehrTok.Extra("launch_token").(string), "temporarily_unavailable", "not reachable")
}

func TestEHRSlowFailsClosed(t *testing.T) {
	w := newWorld(t, func(c *otheras.Config) { c.Timeout = time.Second })
	// Warm the caches (metadata, keys, backend token) with one launch,
	// then slow the EHR down: the introspection times out.
	if tok, _ := w.secondLaunch(t, w.ehrLaunch(t, "p-shared"), "app-other", "approve", nil, fullScopes...); tok == nil {
		t.Fatal("warm-up launch failed")
	}
	lt := w.ehrLaunch(t, "p-shared").Extra("launch_token").(string)
	w.delay.Store(int64(4 * time.Second))
	start := time.Now()
	expectRefusal(t, w, "app-other", lt, "temporarily_unavailable", "not reachable")
	// Well before the EHR would have answered: the timeout decided.
	if d := time.Since(start); d > 3500*time.Millisecond {
		t.Errorf("refusal took %v; the timeout is 1s and the EHR answers after 4s", d)
	}
}

func TestBackendTokenFetchedOnce(t *testing.T) {
	w := newWorld(t, nil)
	const n = 10
	lts := make([]string, n)
	for i := range lts {
		lts[i] = w.ehrLaunch(t, "p-shared").Extra("launch_token").(string)
	}
	var wg sync.WaitGroup
	var ok atomic.Int64
	for _, lt := range lts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			page := w.otherAuthorize(t, browser.New(nil, appCB), w.otherOAuth("app-other", fullScopes...), oauth2.GenerateVerifier(), lt)
			if hasForm(page, "decision") {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != n || w.backendTokens.Load() != 1 {
		t.Fatalf("%d of %d launches reached consent with %d backend token requests; want all with 1", ok.Load(), n, w.backendTokens.Load())
	}
	// Past the backend token's lifetime (5 min) a new one is fetched.
	w.clock.Add(6 * time.Minute)
	if tok, _ := w.secondLaunch(t, w.ehrLaunch(t, "p-shared"), "app-other", "approve", nil, fullScopes...); tok == nil {
		t.Fatal("launch after expiry failed")
	}
	if w.backendTokens.Load() != 2 {
		t.Errorf("backend token requests %d, want 2", w.backendTokens.Load())
	}
}

func TestRequireLogin(t *testing.T) {
	w := newWorld(t, func(c *otheras.Config) { c.RequireLogin = true })
	lt := w.ehrLaunch(t, "p-shared").Extra("launch_token").(string)
	cfg := w.otherOAuth("app-other", fullScopes...)
	v := oauth2.GenerateVerifier()
	b := browser.New(nil, appCB)
	page := w.otherAuthorize(t, b, cfg, v, lt)
	if !hasForm(page, "password") {
		t.Fatal("RequireLogin: no login page")
	}
	// Another user than the one who launched the app at the EHR is refused.
	f, _ := page.FormWith("password")
	page, err := b.Submit(context.Background(), f, browser.Submit{Set: map[string]string{"username": "nurse", "password": "pw-nurse"}})
	if err != nil || !hasForm(page, "password") || !strings.Contains(page.Body, "opened the app in the EHR") {
		t.Fatalf("login as another user: %v %.300s", err, page.Body)
	}
	cb := walk(t, b, page, "doc", "", "approve", nil)
	tok, err := cfg.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil || tok.Extra("patient") != "o-ada" {
		t.Fatalf("%v %+v", err, tok)
	}
}

// TestLaunchSignsNobodyIn: recognising the user from a launch-token does
// not sign them in to OtherAS for later standalone requests.
func TestLaunchSignsNobodyIn(t *testing.T) {
	w := newWorld(t, nil)
	lt := w.ehrLaunch(t, "p-shared").Extra("launch_token").(string)
	b := browser.New(nil, appCB)
	cfg := w.otherOAuth("app-other", fullScopes...)
	cb := walk(t, b, w.otherAuthorize(t, b, cfg, oauth2.GenerateVerifier(), lt), "doc", "", "approve", nil)
	if cb.Query().Get("code") == "" {
		t.Fatalf("second launch: %s", cb.RawQuery)
	}
	page := w.otherAuthorize(t, b, w.otherOAuth("app-other", "openid", "user/Practitioner.rs"), oauth2.GenerateVerifier(), "")
	if !hasForm(page, "password") {
		t.Fatalf("standalone request after a launch skipped login: %s", page.URL)
	}
}

// FuzzLaunchParam: whatever launch holds, authorize answers with an OAuth
// error redirect (never a code, never a page, never a panic).
func FuzzLaunchParam(f *testing.F) {
	for _, s := range []string{"", "x", "a.b.c", "eyJhbGciOiJub25lIiwidHlwIjoibGF1bmNoLXRva2VuK2p3dCJ9.e30.", "eyJhbGciOiJSUzI1NiIsInR5cCI6ImxhdW5jaC10b2tlbitqd3QiLCJraWQiOiJ4In0.eyJpc3MiOiJodHRwOi8vZXZpbCJ9.AAAA"} {
		f.Add(s)
	}
	w := newWorld(f, nil)
	cfg := w.otherOAuth("app-other", "launch", "patient/*.rs")
	f.Fuzz(func(t *testing.T, launch string) {
		if launch == "" {
			return
		}
		page := w.otherAuthorize(t, browser.New(nil, appCB), cfg, oauth2.GenerateVerifier(), launch)
		if page.Redirect == nil || page.Redirect.Query().Get("error") == "" || page.Redirect.Query().Get("code") != "" {
			t.Fatalf("launch %q: page %v %d", launch, page.Redirect, page.Status)
		}
	})
}

func TestPersistentKeysAndClients(t *testing.T) {
	path := t.TempDir() + "/otheras.db"
	cfg := func(c *otheras.Config) { c.DataPath = path }
	w := newWorld(t, cfg)
	jwks := string(w.other.PublicJWKS())
	w.other.Close()
	w2 := newWorld(t, cfg)
	if string(w2.other.PublicJWKS()) != jwks {
		t.Error("client assertion key not kept across restarts")
	}
	if tok, _ := w2.secondLaunch(t, w2.ehrLaunch(t, "p-shared"), "app-other", "approve", nil, fullScopes...); tok == nil {
		t.Fatal("flow on a persistent OtherAS failed")
	}
}
