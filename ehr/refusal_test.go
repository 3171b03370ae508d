package ehr_test

import (
	"context"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/authkit"
)

// TestAuthorizeRefusals: each bad authorize request is an error page (bad
// client or redirect) or an error redirect carrying state and iss.
func TestAuthorizeRefusals(t *testing.T) {
	e := newEnv(t, nil)
	ch := authkit.S256(oauth2.GenerateVerifier())
	base := func() url.Values {
		return url.Values{"response_type": {"code"}, "client_id": {"public"}, "redirect_uri": {appCB}, "state": {"st-1"},
			"scope": {"openid patient/*.rs"}, "aud": {e.cfg.FHIRBase}, "code_challenge": {ch}, "code_challenge_method": {"S256"}}
	}
	for _, tc := range []struct {
		name      string
		mutate    func(url.Values)
		wantError string // "" = error page
	}{
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope") }, ""},
		{"bad redirect", func(v url.Values) { v.Set("redirect_uri", appCB+"/x") }, ""},
		{"redirect prefix", func(v url.Values) { v.Set("redirect_uri", "http://app.test/c") }, ""},
		{"missing PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"short challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, "invalid_request"},
		{"response_type token", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		{"missing aud", func(v url.Values) { v.Del("aud") }, "invalid_request"},
		{"wrong aud", func(v url.Values) { v.Set("aud", "http://evil.test/fhir") }, "invalid_request"},
		{"bad scope syntax", func(v url.Values) { v.Set("scope", "patient/Observation.xyz") }, "invalid_scope"},
		{"unknown resource", func(v url.Values) { v["resource"] = []string{"http://unknown.test/fhir"} }, "invalid_target"},
		{"unknown launch", func(v url.Values) { v.Set("launch", "nope") }, "invalid_request"},
		{"prompt none without session", func(v url.Values) { v.Set("prompt", "none") }, "login_required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.mutate(v)
			page, err := e.browser().Get(context.Background(), e.ts.URL+"/auth/authorize?"+v.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantError == "" {
				if page.Redirect != nil || page.Status != 400 || !strings.Contains(page.Body, "<h1>") {
					t.Fatalf("want error page, got %d redirect=%v", page.Status, page.Redirect)
				}
				return
			}
			if page.Redirect == nil {
				t.Fatalf("want redirect, got page %d", page.Status)
			}
			q := page.Redirect.Query()
			if q.Get("error") != tc.wantError || q.Get("state") != "st-1" || q.Get("iss") != e.cfg.Issuer {
				t.Errorf("redirect %s", page.Redirect.RawQuery)
			}
		})
	}
	t.Run("deny", func(t *testing.T) {
		cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "openid", "patient/*.rs")
		b := e.browser()
		_, page := e.authorize(b, cfg, oauth2.GenerateVerifier())
		cb := fill(t, b, page, "doc", "", "deny")
		if cb.Query().Get("error") != "access_denied" || cb.Query().Get("iss") != e.cfg.Issuer {
			t.Errorf("deny: %s", cb.RawQuery)
		}
	})
}

// code obtains a fresh code for client "secret".
func (e *env) code(t *testing.T, verifier string) string {
	cfg := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "fhirUser", "user/*.rs", "offline_access")
	b := e.browser()
	_, page := e.authorize(b, cfg, verifier)
	return fill(t, b, page, "doc", "", "approve").Query().Get("code")
}

func TestTokenRefusals(t *testing.T) {
	e := newEnv(t, nil)
	tokenURL := e.ts.URL + "/auth/token"
	codeForm := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCB}, "code_verifier": {verifier}}
	}
	t.Run("wrong verifier", func(t *testing.T) {
		code := e.code(t, oauth2.GenerateVerifier())
		st, body, _ := postForm(t, tokenURL, codeForm(code, oauth2.GenerateVerifier()), "secret", "s3cret", "")
		if st != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", st, body)
		}
	})
	t.Run("code replay revokes", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := e.code(t, v)
		st, body, _ := postForm(t, tokenURL, codeForm(code, v), "secret", "s3cret", "")
		if st != 200 {
			t.Fatalf("%d %v", st, body)
		}
		at := body["access_token"].(string)
		rt := body["refresh_token"].(string)
		st, body, _ = postForm(t, tokenURL, codeForm(code, v), "secret", "s3cret", "")
		if st != 400 || body["error"] != "invalid_grant" {
			t.Errorf("replay %d %v", st, body)
		}
		if _, err := e.srv.VerifyAccess(context.Background(), at); err == nil {
			t.Error("access token from replayed code still valid")
		}
		if st, _, _ := postForm(t, tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "secret", "s3cret", ""); st != 400 {
			t.Error("refresh token from replayed code still valid")
		}
	})
	t.Run("expired code", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := e.code(t, v)
		e.clock.now = e.clock.now.Add(61 * time.Second)
		defer func() { e.clock.now = e.clock.now.Add(-61 * time.Second) }()
		st, body, _ := postForm(t, tokenURL, codeForm(code, v), "secret", "s3cret", "")
		if st != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", st, body)
		}
	})
	t.Run("wrong client for code", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := e.code(t, v)
		form := codeForm(code, v)
		form.Set("client_id", "post")
		form.Set("client_secret", "s3cret")
		if st, body, _ := postForm(t, tokenURL, form, "", "", ""); st != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", st, body)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		st, body, h := postForm(t, tokenURL, codeForm("x", oauth2.GenerateVerifier()), "secret", "wrong", "")
		if st != 401 || body["error"] != "invalid_client" || h.Get("WWW-Authenticate") == "" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%d %v %v", st, body, h)
		}
	})
	t.Run("unknown grant", func(t *testing.T) {
		st, body, _ := postForm(t, tokenURL, url.Values{"grant_type": {"password"}}, "secret", "s3cret", "")
		if st != 400 || body["error"] != "unsupported_grant_type" {
			t.Errorf("%d %v", st, body)
		}
	})
	now := e.clock.Now()
	aud := tokenURL
	cc := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}, "client_assertion_type": {authkit.AssertionType}, "client_assertion": {a}}
	}
	hs := func() string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
		s, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "asym", Subject: "asym", Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "h"}).Serialize()
		return s
	}
	none := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"asym","sub":"asym","aud":"` + aud + `","exp":` + itoa(now.Add(time.Minute).Unix()) + `,"jti":"n"}`))
		return h + "." + p + "."
	}
	replayed := assertion(t, e.ecKey, "k1", "asym", aud, now, nil)
	if st, body, _ := postForm(t, tokenURL, cc(replayed), "", "", ""); st != 200 {
		t.Fatalf("first assertion: %d %v", st, body)
	}
	for _, tc := range []struct{ name, assertion string }{
		{"assertion wrong aud", assertion(t, e.ecKey, "k1", "asym", "http://evil.test/token", now, nil)},
		{"assertion exp too far", assertion(t, e.ecKey, "k1", "asym", aud, now, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(10 * time.Minute)) })},
		{"assertion expired", assertion(t, e.ecKey, "k1", "asym", aud, now, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-2 * time.Minute)) })},
		{"assertion no jti", assertion(t, e.ecKey, "k1", "asym", aud, now, func(c *jwt.Claims) { c.ID = "" })},
		{"assertion sub differs", assertion(t, e.ecKey, "k1", "asym", aud, now, func(c *jwt.Claims) { c.Subject = "other" })},
		{"assertion jti replay", replayed},
		{"assertion HS256", hs()},
		{"assertion alg none", none()},
		{"assertion wrong key", assertion(t, e.partner, "k1", "asym", aud, now, nil)},
		{"assertion garbage", "not.a.jwt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body, h := postForm(t, tokenURL, cc(tc.assertion), "", "", "")
			if st != 401 || body["error"] != "invalid_client" || h.Get("Pragma") != "no-cache" {
				t.Errorf("%d %v", st, body)
			}
		})
	}
	t.Run("token for another audience", func(t *testing.T) {
		other := newEnv(t, nil)
		bt := other.backendToken(t, "asym", other.ecKey, "k1", "system/Patient.rs")
		if _, err := e.srv.VerifyAccess(context.Background(), bt); err == nil {
			t.Error("token of another server accepted")
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
