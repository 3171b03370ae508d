package ehr_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/authkit"
)

func exchange(t testing.TB, e *env, cfg *oauth2.Config, cb *url.URL, verifier string, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	t.Helper()
	if cb.Query().Get("iss") != e.cfg.Issuer || cb.Query().Get("state") != "st-1" {
		t.Fatalf("callback lacks iss/state: %s", cb)
	}
	if cb.Query().Get("error") != "" {
		t.Fatalf("authorize error: %s", cb.RawQuery)
	}
	tok, err := cfg.Exchange(context.Background(), cb.Query().Get("code"), append(opts, oauth2.VerifierOption(verifier))...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func verifyIDToken(t *testing.T, e *env, tok *oauth2.Token, clientID string) *oidc.IDToken {
	t.Helper()
	ctx := context.Background()
	prov, err := oidc.NewProvider(ctx, e.cfg.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := prov.Verifier(&oidc.Config{ClientID: clientID, Now: e.clock.Now}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != "n-1" {
		t.Errorf("nonce %q", idt.Nonce)
	}
	return idt
}

func TestEHRLaunchPublicClientWithLaunchToken(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	launchURL, err := e.srv.NewLaunch(ctx, ehr.LaunchRequest{ClientID: "public", Patient: "p1", User: "doc", Encounter: "e2"})
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(launchURL)
	if lu.Query().Get("iss") != e.cfg.FHIRBase || lu.Query().Get("launch") == "" {
		t.Fatalf("launch URL %s", launchURL)
	}
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "fhirUser", "patient/*.rs", "launch-token", "offline_access", "unknown_scope")
	verifier := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, verifier, oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")), oauth2.SetAuthURLParam("resource", "http://other.test/fhir"))
	if hasForm(page, "password") {
		t.Fatal("EHR launch showed a login page")
	}
	cb := fill(t, b, page, "doc", "", "approve")
	tok := exchange(t, e, cfg, cb, verifier)
	if tok.Extra("patient") != "p1" || tok.Extra("encounter") != "e2" {
		t.Errorf("context patient=%v encounter=%v", tok.Extra("patient"), tok.Extra("encounter"))
	}
	if sc, _ := tok.Extra("scope").(string); strings.Contains(sc, "unknown_scope") || !strings.Contains(sc, "launch-token") {
		t.Errorf("scope %q", sc)
	}
	if b, _ := tok.Extra("need_patient_banner").(bool); b {
		t.Error("EHR launch needs no banner")
	}
	fc, _ := json.Marshal(tok.Extra("fhirContext"))
	if string(fc) != `[{"reference":"Patient/p1"},{"reference":"Encounter/e2"}]` {
		t.Errorf("fhirContext %s", fc)
	}
	idt := verifyIDToken(t, e, tok, "public")
	var claims struct {
		FHIRUser string `json:"fhirUser"`
	}
	_ = idt.Claims(&claims)
	if claims.FHIRUser != e.cfg.FHIRBase+"/Practitioner/pr1" {
		t.Errorf("fhirUser %q", claims.FHIRUser)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token")
	}
	a, err := e.srv.VerifyAccess(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if a.Patient() != "p1" || !a.Allows("Observation", "search", nil) || a.Allows("Observation", "create", nil) {
		t.Errorf("access grant wrong: %+v", a)
	}

	// The launch-token.
	lt, _ := tok.Extra("launch_token").(string)
	parsed, err := jwt.ParseSigned(lt, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Headers[0].ExtraHeaders["typ"] != "launch-token+jwt" || parsed.Headers[0].KeyID == "" {
		t.Errorf("header %+v", parsed.Headers[0])
	}
	var lc map[string]any
	_ = parsed.UnsafeClaimsWithoutVerification(&lc)
	for _, k := range []string{"iss", "sub", "aud", "azp", "software_id", "iat", "exp", "jti", "fhirUser", "fhirContext"} {
		if _, ok := lc[k]; !ok {
			t.Errorf("launch-token lacks %s", k)
		}
	}
	if lc["azp"] != "public" || lc["software_id"] != "sw-1" {
		t.Errorf("azp/software_id %v %v", lc["azp"], lc["software_id"])
	}
	fcl, _ := json.Marshal(lc["fhirContext"])
	want := `[{"identifier":{"system":"urn:ietf:rfc:3986","value":"` + e.cfg.FHIRBase + `/Patient/p1"},"role":"urn:sim:launch-full-url","type":"Patient"}`
	if !strings.HasPrefix(string(fcl), want) {
		t.Errorf("launch-token fhirContext %s", fcl)
	}
	// Refused as a bearer and as launch.
	if _, err := e.srv.VerifyAccess(ctx, lt); err == nil {
		t.Error("launch-token accepted as bearer")
	}
	if _, err := e.srv.VerifyAccess(ctx, tok.Extra("id_token").(string)); err == nil {
		t.Error("id_token accepted as bearer")
	}
	_, page = e.authorize(e.browser(), cfg, verifier, oauth2.SetAuthURLParam("launch", lt))
	if page.Redirect == nil || page.Redirect.Query().Get("error") != "invalid_request" {
		t.Errorf("launch-token as launch: %v", page.Redirect)
	}

	// Partner introspects with a Backend Services token: active once.
	bt := e.backendToken(t, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	st, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {lt}}, "", "", bt)
	if st != 200 || body["active"] != true || body["patient"] != "p1" || body["client_id"] != "public" || body["software_id"] != "sw-1" {
		t.Fatalf("introspect launch-token: %d %v", st, body)
	}
	_, body, _ = postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {lt}}, "", "", bt)
	if len(body) != 1 || body["active"] != false {
		t.Errorf("second introspection: %v", body)
	}
	// Partner sees the access token too (introspect permission).
	_, body, _ = postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.AccessToken}}, "", "", bt)
	if body["active"] != true || body["fhirUser"] == nil || body["patient"] != "p1" {
		t.Errorf("introspect access token: %v", body)
	}
	// Unauthenticated: 401.
	if st, _, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.AccessToken}}, "", "", ""); st != 401 {
		t.Errorf("unauthenticated introspection: %d", st)
	}
}

func (e *env) backendToken(t testing.TB, clientID string, k *ecdsa.PrivateKey, kid, sc string) string {
	t.Helper()
	a := assertion(t, k, kid, clientID, e.ts.URL+"/auth/token", e.clock.Now(), nil)
	st, body, _ := postForm(t, e.ts.URL+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {sc}, "client_assertion_type": {authkit.AssertionType}, "client_assertion": {a}}, "", "", "")
	if st != 200 {
		t.Fatalf("backend token: %d %v", st, body)
	}
	if body["expires_in"] == nil || body["token_type"] != "Bearer" {
		t.Errorf("backend response %v", body)
	}
	return body["access_token"].(string)
}

func TestStandaloneConfidentialClients(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, id, secret string
		style            oauth2.AuthStyle
	}{
		{"basic", "secret", "s3cret", oauth2.AuthStyleInHeader},
		{"post", "post", "s3cret", oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.oauth(tc.id, tc.secret, tc.style, "openid", "fhirUser", "launch/patient", "launch/encounter", "patient/Observation.rs?category=laboratory", "user/Practitioner.r")
			v := oauth2.GenerateVerifier()
			b := e.browser()
			_, page := e.authorize(b, cfg, v)
			cb := fill(t, b, page, "doc", "p1", "approve")
			tok := exchange(t, e, cfg, cb, v)
			if tok.Extra("patient") != "p1" || tok.Extra("encounter") != "e1" {
				t.Errorf("patient %v encounter %v", tok.Extra("patient"), tok.Extra("encounter"))
			}
			if banner, _ := tok.Extra("need_patient_banner").(bool); !banner {
				t.Error("standalone needs banner")
			}
			verifyIDToken(t, e, tok, tc.id)
			a, err := e.srv.VerifyAccess(context.Background(), tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if !a.Allows("Observation", "search", url.Values{"category": {"laboratory"}}) || a.Allows("Observation", "search", nil) || a.Allows("Observation", "read", nil) {
				t.Error("granular scope not enforced")
			}
			// Confidential client introspects its own token.
			st, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {tc.id}, "client_secret": {tc.secret}}, "", "", "")
			if tc.name == "basic" {
				st, body, _ = postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.AccessToken}}, tc.id, tc.secret, "")
			}
			if st != 200 || body["active"] != true || body["client_id"] != tc.id || body["iss"] != e.cfg.Issuer || body["sub"] != "doc" {
				t.Errorf("introspect own: %d %v", st, body)
			}
			// Another confidential client sees active:false.
			_, body, _ = postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.AccessToken}}, "secret", "s3cret", "")
			if tc.id != "secret" && (len(body) != 1 || body["active"] != false) {
				t.Errorf("foreign introspection: %v", body)
			}
		})
	}
}

func TestPortalUserAndRefreshRotation(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "profile", "launch/patient", "patient/*.read", "offline_access")
	v := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, v)
	cb := fill(t, b, page, "pat", "", "approve")
	tok := exchange(t, e, cfg, cb, v)
	if tok.Extra("patient") != "p1" {
		t.Fatalf("portal user patient %v", tok.Extra("patient"))
	}
	refresh := func(rt, sc string) (int, map[string]any) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if sc != "" {
			form.Set("scope", sc)
		}
		st, body, h := postForm(t, e.ts.URL+"/auth/token", form, "secret", "s3cret", "")
		if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
			t.Error("refresh response cacheable")
		}
		return st, body
	}
	st, body := refresh(tok.RefreshToken, "patient/*.read")
	if st != 200 || body["scope"] != "patient/*.read" || body["refresh_token"] == nil {
		t.Fatalf("down-scoped refresh: %d %v", st, body)
	}
	rt2 := body["refresh_token"].(string)
	at2 := body["access_token"].(string)
	if st, body := refresh(rt2, "patient/*.read user/*.read"); st != 400 || body["error"] != "invalid_scope" {
		t.Errorf("up-scope: %d %v", st, body)
	}
	// Reusing the rotated first token revokes the family.
	if st, body := refresh(tok.RefreshToken, ""); st != 400 || body["error"] != "invalid_grant" {
		t.Errorf("reuse: %d %v", st, body)
	}
	if st, _ := refresh(rt2, ""); st != 400 {
		t.Error("family not revoked")
	}
	if _, err := e.srv.VerifyAccess(context.Background(), at2); err == nil {
		t.Error("access token of revoked family still valid")
	}
}

func TestBackendServicesAndRevocation(t *testing.T) {
	e := newEnv(t, nil)
	bt := e.backendToken(t, "asym", e.ecKey, "k1", "system/Patient.rs system/Observation.cruds introspect")
	a, err := e.srv.VerifyAccess(context.Background(), bt)
	if err != nil {
		t.Fatal(err)
	}
	if a.Patient() != "" || !a.Allows("Patient", "read", nil) || a.Scopes.Has("introspect") || a.Scopes.Has("system/Observation.cruds") {
		t.Errorf("backend grant %v", a.Scopes)
	}
	// Revoke it (RFC 7009) with a fresh assertion.
	as := assertion(t, e.ecKey, "k1", "asym", e.ts.URL+"/auth/token", e.clock.Now(), nil)
	st, _, _ := postForm(t, e.ts.URL+"/auth/revoke", url.Values{"token": {bt}, "client_assertion_type": {authkit.AssertionType}, "client_assertion": {as}}, "", "", "")
	if st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if _, err := e.srv.VerifyAccess(context.Background(), bt); err == nil {
		t.Error("revoked token still valid")
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.cfg.FHIRBase + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	for _, k := range []string{"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "registration_endpoint", "introspection_endpoint", "revocation_endpoint", "user_access_brand_bundle"} {
		u, _ := doc[k].(string)
		if !strings.HasPrefix(u, "http://") {
			t.Errorf("%s = %v", k, doc[k])
			continue
		}
		if k == "issuer" {
			continue
		}
		r, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode >= 500 || r.StatusCode == 404 {
			t.Errorf("%s %s answers %d", k, u, r.StatusCode)
		}
	}
	caps, _ := doc["capabilities"].([]any)
	if !slices.Contains(caps, any("launch-token")) || doc["authorization_response_iss_parameter_supported"] != true {
		t.Error("capabilities")
	}
	// Brand bundle resolves the identifier.
	r, _ := http.Get(doc["user_access_brand_bundle"].(string))
	var bundle struct {
		Type  string `json:"type"`
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	_ = json.NewDecoder(r.Body).Decode(&bundle)
	r.Body.Close()
	id, _ := json.Marshal(doc["user_access_brand_identifier"])
	found, other := 0, false
	for _, en := range bundle.Entry {
		ids, _ := json.Marshal(en.Resource["identifier"])
		if en.Resource["resourceType"] == "Organization" && strings.Contains(string(ids), string(id)) {
			found++
		}
		if en.Resource["address"] == "http://other.test/fhir" {
			other = true
		}
	}
	if bundle.Type != "collection" || found != 1 || !other {
		t.Errorf("bundle: type %s found %d other %v", bundle.Type, found, other)
	}
}
