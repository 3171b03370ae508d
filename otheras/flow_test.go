package otheras_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/otheras"
)

var fullScopes = []string{"launch", "openid", "fhirUser", "patient/*.rs", "user/Practitioner.rs", "offline_access"}

func TestSecondLaunchSharedPatient(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	ehrTok := w.ehrLaunch(t, "p-shared")
	var consentBody string
	tok, _ := w.secondLaunch(t, ehrTok, "app-other", "approve", func(p *browser.Page) { consentBody = p.Body }, fullScopes...)
	if tok == nil {
		t.Fatal("no Other token")
	}
	if !strings.Contains(consentBody, "Ada Lovelace") || !strings.Contains(consentBody, "matched by identifier "+sysNID+"|N1") {
		t.Errorf("consent page does not show the matched patient: %.600s", consentBody)
	}
	if tok.Extra("patient") != "o-ada" {
		t.Errorf("patient = %v, want the Other id o-ada", tok.Extra("patient"))
	}
	sc, _ := tok.Extra("scope").(string)
	for _, want := range []string{"patient/*.rs", "user/Practitioner.rs", "launch"} {
		if !slices.Contains(strings.Fields(sc), want) {
			t.Errorf("scope %q lacks %s", sc, want)
		}
	}
	ehrURL := w.ehrCfg.FHIRBase + "/Patient/p-shared"
	ctxs, _ := json.Marshal(tok.Extra("fhirContext"))
	wantEntry := `{"identifier":{"system":"urn:ietf:rfc:3986","value":"` + ehrURL + `"},"role":"urn:sim:launch-full-url","type":"Patient"}`
	var entries []map[string]any
	_ = json.Unmarshal(ctxs, &entries)
	found := false
	for _, e := range entries {
		b, _ := json.Marshal(e)
		found = found || string(b) == wantEntry
	}
	if !found || !strings.Contains(string(ctxs), `"reference":"Patient/o-ada"`) {
		t.Errorf("fhirContext = %s, want Patient/o-ada and %s", ctxs, wantEntry)
	}
	if tok.RefreshToken == "" || tok.Extra("id_token") == nil {
		t.Error("no refresh token or id_token")
	}

	// Each server accepts only its own access tokens.
	a, err := w.other.VerifyAccess(ctx, tok.AccessToken)
	if err != nil || a.Patient() != "o-ada" || !a.Allows("Observation", "search", nil) {
		t.Fatalf("OtherAS verifier: %v %+v", err, a)
	}
	if _, err := w.ehr.VerifyAccess(ctx, tok.AccessToken); err == nil {
		t.Error("the EHR accepts the Other token")
	}
	for name, bearer := range map[string]string{
		"EHR access token": ehrTok.AccessToken,
		"launch-token":     ehrTok.Extra("launch_token").(string),
		"EHR id_token":     ehrTok.Extra("id_token").(string),
		"Other id_token":   tok.Extra("id_token").(string),
		"refresh token":    tok.RefreshToken,
		"garbage":          "not.a.token",
	} {
		if _, err := w.other.VerifyAccess(ctx, bearer); err == nil {
			t.Errorf("OtherAS VerifyAccess accepts the %s", name)
		}
	}

	// Refresh with rotation keeps the context.
	cfg := w.otherOAuth("app-other")
	rt1 := tok.RefreshToken
	nt, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt1}).Token()
	if err != nil || nt.RefreshToken == "" || nt.RefreshToken == rt1 || nt.Extra("patient") != "o-ada" {
		t.Fatalf("refresh: %v %+v", err, nt)
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt1}).Token(); err == nil {
		t.Error("a rotated refresh token was accepted again")
	}

	// The trace shows OtherAS's exchanges and decisions, and no secret.
	flows := w.rec.Flows()
	var labels []string
	var decisions []string
	for _, f := range flows {
		for _, e := range f.Events {
			if e.From == trace.OtherAS && e.Kind == trace.KindHTTP {
				labels = append(labels, string(e.To)+" "+e.Label)
			}
			if e.Kind == trace.KindDecision {
				decisions = append(decisions, e.Decision)
			}
		}
	}
	for _, want := range []string{"EHR AS POST /auth/token", "EHR AS POST /auth/introspect", "EHR FHIR GET /fhir/Patient/p-shared"} {
		if !slices.Contains(labels, want) {
			t.Errorf("trace lacks %q; has %v", want, labels)
		}
	}
	if !slices.ContainsFunc(decisions, func(d string) bool { return strings.Contains(d, "is Other Patient/o-ada") }) {
		t.Errorf("trace lacks the match decision: %v", decisions)
	}
	dump, _ := json.Marshal(flows)
	for name, secret := range map[string]string{"launch-token": ehrTok.Extra("launch_token").(string), "Other access token": tok.AccessToken, "refresh token": rt1} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("trace holds the %s", name)
		}
	}
	// The whole second launch (authorize .. token) is one flow.
	var authorizeFlow, tokenFlow string
	for _, f := range flows {
		for _, e := range f.Events {
			if e.To == trace.OtherAS && e.Label == "GET /auth/authorize" {
				authorizeFlow = f.ID
			}
			if e.To == trace.OtherAS && e.Label == "POST /auth/token" && e.Status == 200 && e.Request != nil && strings.Contains(e.Request.Body, "authorization_code") {
				tokenFlow = f.ID
			}
		}
	}
	if authorizeFlow == "" || authorizeFlow != tokenFlow {
		t.Errorf("authorize in flow %q, token in flow %q", authorizeFlow, tokenFlow)
	}
}

func TestSecondLaunchRefusesUnmatchedPatients(t *testing.T) {
	w := newWorld(t, nil)
	for _, tc := range []struct {
		patient, reason string
	}{
		{"p-absent", "patient not found in Other's directory"},
		{"p-otheronly", "patient not found in Other's directory"},
		{"p-ambiguous", "2 records share identifier " + sysNID + "|N4"},
	} {
		t.Run(tc.patient, func(t *testing.T) {
			ehrTok := w.ehrLaunch(t, tc.patient)
			var page *browser.Page
			tok, _ := w.secondLaunch(t, ehrTok, "app-other", "approve", func(p *browser.Page) { page = p }, fullScopes...)
			if tok == nil {
				t.Fatal("user-level scopes were not granted")
			}
			sc, _ := tok.Extra("scope").(string)
			if strings.Contains(sc, "patient/") || !strings.Contains(sc, "user/Practitioner.rs") {
				t.Errorf("granted scope %q", sc)
			}
			if tok.Extra("patient") != nil {
				t.Errorf("patient %v granted", tok.Extra("patient"))
			}
			f, _ := page.FormWith("decision")
			refused := false
			for _, fl := range f.Fields {
				if fl.Name == "scope" && fl.Value == "patient/*.rs" {
					refused = fl.Disabled && !fl.Checked
				}
			}
			if !refused || !strings.Contains(page.Body, htmlEscape(tc.reason)) {
				t.Errorf("consent page does not refuse patient/*.rs with %q: %.800s", tc.reason, page.Body)
			}
			if !hasDecision(w.rec, "refused patient/*.rs: "+tc.reason) {
				t.Errorf("no trace decision for the refusal")
			}
		})
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("'", "&#39;", "|", "|").Replace(s)
}

func hasDecision(rec *trace.Recorder, text string) bool {
	for _, f := range rec.Flows() {
		for _, e := range f.Events {
			if e.Kind == trace.KindDecision && strings.Contains(e.Decision, text) {
				return true
			}
		}
	}
	return false
}

func TestSecondLaunchConfirmDemographics(t *testing.T) {
	w := newWorld(t, nil)
	tok, _ := w.secondLaunch(t, w.ehrLaunch(t, "p-namediff"), "app-other", "approve", nil, fullScopes...)
	if tok == nil || tok.Extra("patient") != "o-marie" {
		t.Fatalf("identifier match without demographics: %+v", tok)
	}
	w = newWorld(t, func(c *otheras.Config) { c.ConfirmDemographics = true })
	tok, _ = w.secondLaunch(t, w.ehrLaunch(t, "p-namediff"), "app-other", "approve", nil, fullScopes...)
	if tok == nil || tok.Extra("patient") != nil {
		t.Fatalf("demographics differ but the patient was matched: %+v", tok)
	}
	if !hasDecision(w.rec, "name or birth date differs") {
		t.Error("no trace decision for the demographics mismatch")
	}
}

func TestOnlyPatientScopesAccessDenied(t *testing.T) {
	w := newWorld(t, nil)
	tok, cb := w.secondLaunch(t, w.ehrLaunch(t, "p-absent"), "app-other", "approve", nil, "launch", "patient/*.rs")
	if tok != nil || cb.Query().Get("error") != "access_denied" || !strings.Contains(cb.Query().Get("error_description"), "patient not found") {
		t.Fatalf("callback %s, want access_denied", cb.RawQuery)
	}
}

func TestDenyAtConsent(t *testing.T) {
	w := newWorld(t, nil)
	tok, cb := w.secondLaunch(t, w.ehrLaunch(t, "p-shared"), "app-other", "deny", nil, fullScopes...)
	if tok != nil || cb.Query().Get("error") != "access_denied" || cb.Query().Get("code") != "" {
		t.Fatalf("callback %s, want access_denied", cb.RawQuery)
	}
}

func TestStandaloneLaunch(t *testing.T) {
	w := newWorld(t, nil)
	cfg := w.otherOAuth("app-other", "openid", "fhirUser", "launch/patient", "patient/*.rs", "offline_access")
	v := oauth2.GenerateVerifier()
	b := browser.New(nil, appCB)
	page := w.otherAuthorize(t, b, cfg, v, "")
	if !hasForm(page, "password") {
		t.Fatalf("standalone launch: want the login page, got %s", page.URL)
	}
	cb := walk(t, b, page, "doc", "o-grace", "approve", nil)
	tok, err := cfg.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "o-grace" || tok.Extra("need_patient_banner") != true {
		t.Errorf("patient %v banner %v", tok.Extra("patient"), tok.Extra("need_patient_banner"))
	}
	if w.fromOther.Load() != 0 {
		t.Errorf("standalone launch called the EHR %d times", w.fromOther.Load())
	}
	// RFC 7009: revoking the access token makes the verifier refuse it.
	ctx := context.Background()
	if _, err := w.other.VerifyAccess(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(w.otherCfg.Issuer+"/revoke", url.Values{"client_id": {"app-other"}, "token": {tok.AccessToken}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", err, resp)
	}
	resp.Body.Close()
	if _, err := w.other.VerifyAccess(ctx, tok.AccessToken); err == nil {
		t.Error("revoked token still accepted")
	}
}

func TestDiscovery(t *testing.T) {
	w := newWorld(t, nil)
	resp, err := http.Get(w.otherCfg.FHIRBase + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&d)
	if d["issuer"] != w.otherCfg.Issuer {
		t.Errorf("issuer %v", d["issuer"])
	}
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint", "introspection_endpoint", "revocation_endpoint"} {
		if u, _ := d[k].(string); !strings.HasPrefix(u, w.otherCfg.Issuer+"/") {
			t.Errorf("%s = %v, not on OtherAS's origin", k, d[k])
		}
	}
	caps, _ := json.Marshal(d["capabilities"])
	for _, c := range []string{"launch-ehr", "launch-standalone", "launch-token", "client-public", "client-confidential-symmetric", "permission-patient", "permission-user"} {
		if !strings.Contains(string(caps), `"`+c+`"`) {
			t.Errorf("capabilities lack %s", c)
		}
	}
	if d["authorization_response_iss_parameter_supported"] != true || !strings.Contains(string(mustJSON(d["code_challenge_methods_supported"])), `["S256"]`) {
		t.Error("iss parameter or S256 not advertised")
	}
	r2, err := http.Get(w.otherCfg.Issuer + "/.well-known/openid-configuration")
	if err != nil || r2.StatusCode != 200 {
		t.Fatalf("openid-configuration: %v", err)
	}
	r2.Body.Close()
	if u := w.other.SecurityURIs(); u.Token != w.otherCfg.Issuer+"/token" || u.Authorize != w.otherCfg.Issuer+"/authorize" {
		t.Errorf("SecurityURIs %+v", u)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestRegisteredAppLinksBySoftwareID registers the app at OtherAS (RFC
// 7591) with the software_id of its EHR registration and runs the flow.
func TestRegisteredAppLinksBySoftwareID(t *testing.T) {
	w := newWorld(t, nil)
	resp, err := http.Post(w.otherCfg.Issuer+"/register", "application/json", strings.NewReader(
		`{"redirect_uris":["`+appCB+`"],"token_endpoint_auth_method":"none","grant_types":["authorization_code"],"software_id":"sw-app","client_name":"Chart App"}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	id, _ := reg["client_id"].(string)
	if resp.StatusCode != 201 || id == "" {
		t.Fatalf("register: %d %v", resp.StatusCode, reg)
	}
	tok, _ := w.secondLaunch(t, w.ehrLaunch(t, "p-shared"), id, "approve", nil, "launch", "patient/*.rs")
	if tok == nil || tok.Extra("patient") != "o-ada" {
		t.Fatalf("registered app: %+v", tok)
	}
}
