package ehr_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/authkit"
)

// A portal (patient) user asking for user/ scopes gets none, and the token
// is confined to their own Patient even without a patient/ scope.
func TestPatientUserConfinedToOwnRecord(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "openid", "fhirUser", "user/*.cruds", "system/*.rs")
	v := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, v)
	tok := exchange(t, e, cfg, fill(t, b, page, "pat", "", "approve"), v)
	a, err := e.srv.VerifyAccess(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if a.Scopes.String() != "openid fhirUser" || a.Patient() != "p1" || !a.PatientSubject {
		t.Errorf("scope %q patient %q subject %v", a.Scopes, a.Patient(), a.PatientSubject)
	}
	if a.Allows("Patient", "read", nil) || a.Allows("Observation", "create", nil) {
		t.Error("patient user token allows unconfined access")
	}
	// With patient/ scopes the token reads, but only inside p1.
	cfg = e.oauth("public", "", oauth2.AuthStyleInParams, "openid", "patient/*.rs", "user/*.rs")
	_, page = e.authorize(b, cfg, v)
	tok = exchange(t, e, cfg, fill(t, b, page, "pat", "", "approve"), v)
	a, err = e.srv.VerifyAccess(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if a.Scopes.String() != "openid patient/*.rs" || a.Patient() != "p1" || !a.Allows("Observation", "search", nil) {
		t.Errorf("scope %q patient %q", a.Scopes, a.Patient())
	}
	// An EHR launch of a patient user into another patient's record is refused.
	launchURL, err := e.srv.NewLaunch(context.Background(), ehr.LaunchRequest{ClientID: "public", Patient: "p2", User: "pat"})
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(launchURL)
	cfg = e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "patient/*.rs")
	cb, _ := e.authorize(e.browser(), cfg, v, oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")))
	if cb == nil || cb.Query().Get("error") != "access_denied" {
		t.Errorf("launch into another patient: %v", cb)
	}
}

func register(t *testing.T, e *env, meta map[string]any) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(meta)
	resp, err := http.Post(e.ts.URL+"/auth/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// Open registration hands out no Backend Services client and caps scopes.
func TestRegistrationRefusesBackendServices(t *testing.T) {
	e := newEnv(t, nil)
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, meta := range map[string]map[string]any{
		"client_credentials": {"token_endpoint_auth_method": "private_key_jwt", "grant_types": []string{"client_credentials"}, "jwks": jwksOf(t, k, "x1")},
		"system scope":       {"redirect_uris": []string{appCB}, "token_endpoint_auth_method": "none", "scope": "openid system/*.rs"},
	} {
		if st, m := register(t, e, meta); st != 400 || m["error"] != "invalid_client_metadata" {
			t.Errorf("%s: %d %v", name, st, m)
		}
	}
	st, m := register(t, e, map[string]any{"redirect_uris": []string{appCB}, "token_endpoint_auth_method": "none", "scope": "openid user/*.cruds patient/*.rs"})
	if st != 201 || m["scope"] != "openid patient/*.rs" {
		t.Errorf("ceiling: %d %v", st, m["scope"])
	}
	if st, m := register(t, e, map[string]any{"redirect_uris": []string{appCB}, "token_endpoint_auth_method": "none"}); st != 201 || m["scope"] != ehr.RegistrationCeiling {
		t.Errorf("default ceiling: %d %v", st, m["scope"])
	}
	// Configured to allow it, Backend Services registration works.
	e2 := newEnv(t, func(c *ehr.Config) { c.OpenBackendRegistration = true })
	st, m = register(t, e2, map[string]any{"token_endpoint_auth_method": "private_key_jwt", "grant_types": []string{"client_credentials"}, "jwks": jwksOf(t, k, "x1"), "scope": "system/Patient.rs"})
	if st != 201 {
		t.Fatalf("open backend registration: %d %v", st, m)
	}
	if bt := e2.backendToken(t, m["client_id"].(string), k, "x1", "system/Patient.rs"); bt == "" {
		t.Error("no backend token")
	}
}

// launchAndToken runs an EHR launch with launch-token up to the code.
func launchCode(t testing.TB, e *env, cfg *oauth2.Config, v string) *url.URL {
	t.Helper()
	launchURL, err := e.srv.NewLaunch(context.Background(), ehr.LaunchRequest{ClientID: "public", Patient: "p1", User: "doc"})
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(launchURL)
	b := e.browser()
	_, page := e.authorize(b, cfg, v, oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")))
	return fill(t, b, page, "doc", "", "approve")
}

// A replayed code revokes the launch-token of its first use too.
func TestCodeReplayRevokesLaunchToken(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "fhirUser", "patient/*.rs", "launch-token")
	v := oauth2.GenerateVerifier()
	cb := launchCode(t, e, cfg, v)
	tok := exchange(t, e, cfg, cb, v)
	lt, _ := tok.Extra("launch_token").(string)
	if lt == "" {
		t.Fatal("no launch_token")
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {appCB}, "code_verifier": {v}, "client_id": {"public"}}
	if st, body, _ := postForm(t, e.ts.URL+"/auth/token", form, "", "", ""); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", st, body)
	}
	if _, err := e.srv.VerifyAccess(context.Background(), tok.AccessToken); err == nil {
		t.Error("access token survived replay")
	}
	bt := e.backendToken(t, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	if _, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {lt}}, "", "", bt); len(body) != 1 || body["active"] != false {
		t.Errorf("launch-token after code replay: %v", body)
	}
}

// Concurrent uses of one code: exactly one wins, and whatever it issued is
// revoked by the other (the marker is written before the take).
func TestCodeReplayRace(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "patient/*.rs")
	for i := 0; i < 5; i++ {
		v := oauth2.GenerateVerifier()
		cb := launchCode(t, e, cfg, v)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {appCB}, "code_verifier": {v}, "client_id": {"public"}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var tokens []string
		fails := 0
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, body, _ := postForm(t, e.ts.URL+"/auth/token", form, "", "", "")
				mu.Lock()
				defer mu.Unlock()
				if st == 200 {
					tokens = append(tokens, body["access_token"].(string))
				} else {
					fails++
				}
			}()
		}
		wg.Wait()
		if len(tokens) != 1 || fails != 1 {
			t.Fatalf("winners %d failures %d", len(tokens), fails)
		}
		if _, err := e.srv.VerifyAccess(context.Background(), tokens[0]); err == nil {
			t.Fatal("token of a replayed code is valid")
		}
	}
}

// An EHR launch does not sign the browser in: another app in the same
// browser sees the login page.
func TestEHRLaunchDoesNotSignInBrowser(t *testing.T) {
	e := newEnv(t, nil)
	launchURL, _ := e.srv.NewLaunch(context.Background(), ehr.LaunchRequest{ClientID: "public", Patient: "p1", User: "doc"})
	lu, _ := url.Parse(launchURL)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "openid", "fhirUser", "patient/*.rs")
	v := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, v, oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")))
	if hasForm(page, "password") {
		t.Fatal("EHR launch shows a login page")
	}
	tok := exchange(t, e, cfg, fill(t, b, page, "doc", "", "approve"), v)
	if tok.Extra("patient") != "p1" {
		t.Errorf("patient %v", tok.Extra("patient"))
	}
	_, page = e.authorize(b, e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "fhirUser", "user/*.rs"), v)
	if !hasForm(page, "password") {
		t.Errorf("second app in the same browser skipped login: %s", page.URL)
	}
	// prompt=none has no signed-in user either.
	cb, _ := e.authorize(b, e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "user/*.rs"), v, oauth2.SetAuthURLParam("prompt", "none"))
	if cb == nil || cb.Query().Get("error") != "login_required" {
		t.Errorf("prompt=none after a launch: %v", cb)
	}
}

// Clients without the refresh_token grant get no refresh token and cannot
// use the grant; clients with it keep working.
func TestRefreshGrantEnforced(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("post", "s3cret", oauth2.AuthStyleInParams, "openid", "profile", "user/*.rs", "offline_access")
	v := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, v)
	tok := exchange(t, e, cfg, fill(t, b, page, "doc", "", "approve"), v)
	if tok.RefreshToken != "" || strings.Contains(tok.Extra("scope").(string), "offline_access") {
		t.Errorf("refresh token for a client without the grant: %q %v", tok.RefreshToken, tok.Extra("scope"))
	}
	st, body, _ := postForm(t, e.ts.URL+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"whatever"}, "client_id": {"post"}, "client_secret": {"s3cret"}}, "", "", "")
	if st != 400 || body["error"] != "unauthorized_client" {
		t.Errorf("refresh without grant: %d %v", st, body)
	}
	cfg = e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "user/*.rs", "offline_access")
	_, page = e.authorize(b, cfg, v)
	tok = exchange(t, e, cfg, fill(t, b, page, "doc", "", "approve"), v)
	if st, body, _ := postForm(t, e.ts.URL+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "secret", "s3cret", ""); st != 200 || body["refresh_token"] == nil {
		t.Errorf("refresh with grant: %d %v", st, body)
	}
}

// A partner sees access tokens and its launch-tokens, not other clients'
// refresh tokens.
func TestPartnerCannotIntrospectRefreshTokens(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "user/*.rs", "offline_access")
	v := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, v)
	tok := exchange(t, e, cfg, fill(t, b, page, "doc", "", "approve"), v)
	bt := e.backendToken(t, "otheras", e.partner, "pk1", "system/Patient.rs introspect")
	if _, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.RefreshToken}}, "", "", bt); len(body) != 1 || body["active"] != false {
		t.Errorf("partner sees a refresh token: %v", body)
	}
	if _, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.AccessToken}}, "", "", bt); body["active"] != true {
		t.Errorf("partner cannot see an access token: %v", body)
	}
	if _, body, _ := postForm(t, e.ts.URL+"/auth/introspect", url.Values{"token": {tok.RefreshToken}}, "secret", "s3cret", ""); body["active"] != true {
		t.Errorf("own refresh token: %v", body)
	}
}

// A client assertion without kid is refused.
func TestClientAssertionNeedsKid(t *testing.T) {
	e := newEnv(t, nil)
	as := assertion(t, e.ecKey, "", "asym", e.ts.URL+"/auth/token", e.clock.Now(), nil)
	st, body, _ := postForm(t, e.ts.URL+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}, "client_assertion_type": {authkit.AssertionType}, "client_assertion": {as}}, "", "", "")
	if st != 401 && st != 400 || body["error"] != "invalid_client" {
		t.Errorf("assertion without kid: %d %v", st, body)
	}
}

// openid alone yields an id_token.
func TestIDTokenWithOpenIDAlone(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.oauth("secret", "s3cret", oauth2.AuthStyleInHeader, "openid", "user/*.rs")
	v := oauth2.GenerateVerifier()
	b := e.browser()
	_, page := e.authorize(b, cfg, v)
	tok := exchange(t, e, cfg, fill(t, b, page, "doc", "", "approve"), v)
	if idt := verifyIDToken(t, e, tok, "secret"); idt.Subject != "doc" {
		t.Errorf("sub %q", idt.Subject)
	}
}

// The consent page names the organisation a launch-token goes to.
func TestConsentNamesLaunchTokenPartner(t *testing.T) {
	e := newEnv(t, nil)
	launchURL, _ := e.srv.NewLaunch(context.Background(), ehr.LaunchRequest{ClientID: "public", Patient: "p1", User: "doc"})
	lu, _ := url.Parse(launchURL)
	cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch", "patient/*.rs", "launch-token")
	_, page := e.authorize(e.browser(), cfg, oauth2.GenerateVerifier(), oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")))
	if !hasForm(page, "decision") || !strings.Contains(string(page.Body), "Regional Lab (http://other.test/fhir)") {
		t.Errorf("consent does not name the partner: %.2000s", page.Body)
	}
}
