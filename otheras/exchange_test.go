package otheras_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/otheras"
)

const (
	ttID     = otheras.TokenTypeIDToken
	ttAccess = otheras.TokenTypeAccessToken
	// subjectErr is the error for an invalid or unacceptable subject
	// token: RFC 8693 §2.2.2 says it MUST be invalid_request.
	subjectErr = "invalid_request"
)

// exchangeWorld is the test world plus confidential clients at OtherAS:
// "vendor" is the same app as the EHR's "app" (software_id sw-app),
// "secret" (sw-conf) is another app.
func exchangeWorld(t testing.TB) *world {
	t.Helper()
	return newWorld(t, func(c *otheras.Config) {
		c.Clients = append(c.Clients,
			authkit.Client{ID: "vendor", Secret: "v3ndor", AuthMethod: authkit.AuthSecretBasic, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code"}, SoftwareID: "sw-app", Name: "Chart App"},
			authkit.Client{ID: "vendor-post", Secret: "v3ndor", AuthMethod: authkit.AuthSecretPost, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code"}, SoftwareID: "sw-app", Name: "Chart App"},
		)
	})
}

var clientSecrets = map[string]string{"vendor": "v3ndor", "secret": "s3cret"}

// exchangeCall posts a token-exchange request to OtherAS with HTTP Basic
// client authentication (none when client is "" or a public client).
func (w *world) exchangeCall(t testing.TB, client string, form url.Values) (int, map[string]any, http.Header) {
	t.Helper()
	return w.postToken(t, client, clientSecrets[client], form.Encode())
}

func (w *world) postToken(t testing.TB, client, secret, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.otherTS.URL+"/auth/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(client, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("token endpoint answered no JSON object (%d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, m, resp.Header
}

func exchangeForm(subject, typ string, scopes ...string) url.Values {
	return url.Values{
		"grant_type":         {otheras.GrantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {typ},
		"scope":              {strings.Join(scopes, " ")},
	}
}

func launchTokenOf(tok *oauth2.Token) string { s, _ := tok.Extra("launch_token").(string); return s }
func idTokenOf(tok *oauth2.Token) string     { s, _ := tok.Extra("id_token").(string); return s }

func scopesOf(body map[string]any) []string {
	s, _ := body["scope"].(string)
	return strings.Fields(s)
}

// checkIssued checks the RFC 8693 §2.2.1 shape and returns the verified
// grant of the access token at the Other FHIR server.
func checkIssued(t *testing.T, w *world, st int, body map[string]any, h http.Header) *authkit.Access {
	t.Helper()
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, body)
	}
	if h.Get("Cache-Control") != "no-store" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Errorf("headers %v", h)
	}
	if body["issued_token_type"] != ttAccess || body["token_type"] != "Bearer" || body["expires_in"] == nil || body["scope"] == nil {
		t.Errorf("RFC 8693 response fields: %v", body)
	}
	for _, k := range []string{"refresh_token", "id_token", "launch_token"} {
		if _, ok := body[k]; ok {
			t.Errorf("exchange answer holds %s", k)
		}
	}
	at, _ := body["access_token"].(string)
	a, err := w.other.VerifyAccess(context.Background(), at)
	if err != nil {
		t.Fatalf("the issued token is not accepted by the Other FHIR verifier: %v", err)
	}
	if a.ClientID != "vendor" || !slices.Equal(a.Audience, []string{w.otherCfg.FHIRBase}) {
		t.Errorf("token client %q aud %v", a.ClientID, a.Audience)
	}
	if _, err := w.ehr.VerifyAccess(context.Background(), at); err == nil {
		t.Error("the EHR accepts the exchanged token")
	}
	return a
}

func hasFullURLContext(body map[string]any, full string) bool {
	b, _ := json.Marshal(body["fhirContext"])
	var entries []map[string]any
	_ = json.Unmarshal(b, &entries)
	for _, e := range entries {
		id, _ := e["identifier"].(map[string]any)
		if e["type"] == "Patient" && e["role"] == otheras.RoleLaunchFullURL && id["system"] == "urn:ietf:rfc:3986" && id["value"] == full {
			return true
		}
	}
	return false
}

func decisionsOf(w *world) []string {
	var out []string
	for _, f := range w.rec.Flows() {
		for _, e := range f.Events {
			if e.Kind == trace.KindDecision {
				out = append(out, e.Decision)
			}
		}
	}
	return out
}

func containsSub(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}

func TestExchangeLaunchToken(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	lt := launchTokenOf(ehrTok)
	form := exchangeForm(lt, ttID, "patient/*.rs", "user/Practitioner.rs", "fhirUser", "openid", "offline_access", "launch")
	form.Set("resource", w.otherCfg.FHIRBase)
	form.Set("audience", w.otherCfg.Issuer)
	form.Set("requested_token_type", ttAccess)
	st, body, h := w.exchangeCall(t, "vendor", form)
	a := checkIssued(t, w, st, body, h)
	if body["patient"] != "o-ada" || a.Patient() != "o-ada" || !a.Allows("Observation", "search", nil) {
		t.Errorf("patient %v / token patient %q", body["patient"], a.Patient())
	}
	if !hasFullURLContext(body, w.ehrCfg.FHIRBase+"/Patient/p-shared") {
		t.Errorf("fhirContext lacks the EHR patient's full URL: %v", body["fhirContext"])
	}
	if got := scopesOf(body); !slices.Equal(got, []string{"patient/*.rs", "user/Practitioner.rs", "fhirUser"}) {
		t.Errorf("scope %v: openid, offline_access and launch are not exchanged", got)
	}
	if a.Subject != "doc" || a.FHIRUser != w.otherCfg.FHIRBase+"/Practitioner/op1" {
		t.Errorf("user %q fhirUser %q", a.Subject, a.FHIRUser)
	}

	// The trace shows the exchange, the introspection, the patient read
	// and the decisions, and never the subject token.
	var labels []string
	for _, f := range w.rec.Flows() {
		for _, e := range f.Events {
			if e.From == trace.OtherAS && e.Kind == trace.KindHTTP {
				labels = append(labels, string(e.To)+" "+e.Label)
			}
		}
	}
	for _, want := range []string{"EHR AS POST /auth/introspect", "EHR FHIR GET /fhir/Patient/p-shared"} {
		if !slices.Contains(labels, want) {
			t.Errorf("trace lacks %q; has %v", want, labels)
		}
	}
	ds := decisionsOf(w)
	for _, want := range []string{"vendor exchanges a launch-token", "is Other Patient/o-ada", "issued an access token"} {
		if !containsSub(ds, want) {
			t.Errorf("trace lacks decision %q: %v", want, ds)
		}
	}
	dump, _ := json.Marshal(w.rec.Flows())
	if strings.Contains(string(dump), lt) || strings.Contains(string(dump), body["access_token"].(string)) {
		t.Error("the trace holds a token")
	}

	// Replay: the launch-token is single use.
	st, body, h = w.exchangeCall(t, "vendor", exchangeForm(lt, ttID, "patient/*.rs"))
	if st != http.StatusBadRequest || body["error"] != subjectErr || h.Get("Cache-Control") != "no-store" {
		t.Errorf("replayed launch-token: %d %v", st, body)
	}
}

func TestExchangeAccessToken(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	st, body, h := w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "patient/Observation.rs", "launch/patient"))
	a := checkIssued(t, w, st, body, h)
	if body["patient"] != "o-ada" || a.Patient() != "o-ada" || !a.Allows("Observation", "read", nil) || a.Allows("Condition", "read", nil) {
		t.Errorf("patient %v, grant %+v", body["patient"], a)
	}
	if !hasFullURLContext(body, w.ehrCfg.FHIRBase+"/Patient/p-shared") {
		t.Errorf("fhirContext %v", body["fhirContext"])
	}
	// An access token is not single use: it is exchanged again.
	st, body, h = w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "user/Practitioner.rs"))
	a = checkIssued(t, w, st, body, h)
	if body["patient"] != nil || a.Patient() != "" || !slices.Equal(scopesOf(body), []string{"user/Practitioner.rs"}) {
		t.Errorf("user-only exchange: %v", body)
	}
	// Client auth by client_secret_post works the same.
	form := exchangeForm(ehrTok.AccessToken, ttAccess, "user/Practitioner.rs")
	form.Set("client_id", "vendor-post")
	form.Set("client_secret", "v3ndor")
	if st, body, _ := w.postToken(t, "", "", form.Encode()); st != http.StatusOK || body["issued_token_type"] != ttAccess {
		t.Errorf("client_secret_post: %d %v", st, body)
	}
}

func TestExchangeIDToken(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	idt := idTokenOf(ehrTok)
	st, body, h := w.exchangeCall(t, "vendor", exchangeForm(idt, ttID, "patient/*.rs", "launch/patient", "user/*.rs", "fhirUser"))
	a := checkIssued(t, w, st, body, h)
	if got := scopesOf(body); !slices.Equal(got, []string{"user/*.rs", "fhirUser"}) {
		t.Errorf("scope %v: patient scopes must be refused with an id_token", got)
	}
	if body["patient"] != nil || body["fhirContext"] != nil || a.Patient() != "" || a.Subject != "doc" {
		t.Errorf("id_token exchange: %v, grant %+v", body, a)
	}
	if !containsSub(decisionsOf(w), "refused patient/*.rs: an id_token carries no patient context") {
		t.Errorf("trace lacks the refusal: %v", decisionsOf(w))
	}
	// Only patient scopes: nothing left.
	st, body, _ = w.exchangeCall(t, "vendor", exchangeForm(idt, ttID, "patient/*.rs"))
	if st != http.StatusBadRequest || body["error"] != "invalid_scope" || !strings.Contains(body["error_description"].(string), "no patient context") {
		t.Errorf("id_token with patient scopes only: %d %v", st, body)
	}
	// id_tokens are introspected, not consumed: a second exchange works.
	st, body, h = w.exchangeCall(t, "vendor", exchangeForm(idt, ttID, "user/Practitioner.rs"))
	checkIssued(t, w, st, body, h)
}

func TestExchangeAbsentPatient(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-absent")
	// Access token: patient scopes refused, user scopes granted.
	st, body, h := w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "patient/*.rs", "user/Practitioner.rs"))
	a := checkIssued(t, w, st, body, h)
	if !slices.Equal(scopesOf(body), []string{"user/Practitioner.rs"}) || body["patient"] != nil || a.Patient() != "" {
		t.Errorf("absent patient: %v", body)
	}
	if body["fhirContext"] != nil {
		t.Errorf("fhirContext without a match: %v", body["fhirContext"])
	}
	// Launch-token with patient scopes only: invalid_scope, with the reason.
	st, body, _ = w.exchangeCall(t, "vendor", exchangeForm(launchTokenOf(ehrTok), ttID, "patient/*.rs"))
	if st != http.StatusBadRequest || body["error"] != "invalid_scope" || !strings.Contains(body["error_description"].(string), "not found") {
		t.Errorf("absent patient, patient scopes only: %d %v", st, body)
	}
	// Ambiguous: refused too.
	ehrTok = w.ehrLaunch(t, "p-ambiguous")
	st, body, h = w.exchangeCall(t, "vendor", exchangeForm(launchTokenOf(ehrTok), ttID, "patient/*.rs", "user/*.rs"))
	checkIssued(t, w, st, body, h)
	if body["patient"] != nil || !slices.Equal(scopesOf(body), []string{"user/*.rs"}) {
		t.Errorf("ambiguous patient: %v", body)
	}
}

func TestExchangeOtherApp(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	for name, form := range map[string]url.Values{
		"launch-token": exchangeForm(launchTokenOf(ehrTok), ttID, "patient/*.rs"),
		"access token": exchangeForm(ehrTok.AccessToken, ttAccess, "patient/*.rs"),
		"id_token":     exchangeForm(idTokenOf(ehrTok), ttID, "user/*.rs"),
	} {
		st, body, _ := w.exchangeCall(t, "secret", form)
		if st != http.StatusBadRequest || body["error"] != subjectErr || !strings.Contains(body["error_description"].(string), "another app") {
			t.Errorf("%s of another app: %d %v", name, st, body)
		}
	}
	// Another app cannot burn the launch-token: its software_id is checked
	// before the token is consumed, so the right app still gets it.
	st, body, h := w.exchangeCall(t, "vendor", exchangeForm(launchTokenOf(ehrTok), ttID, "patient/*.rs"))
	if a := checkIssued(t, w, st, body, h); a.Patient() != "o-ada" {
		t.Errorf("patient %q", a.Patient())
	}
}

func TestExchangeExpiredAndRevoked(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	// Revoked at the EHR: the introspection says inactive.
	rv := url.Values{"token": {ehrTok.AccessToken}, "client_id": {"app"}}
	resp, err := http.PostForm(w.ehrTS.URL+"/auth/revoke", rv)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st, body, _ := w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "patient/*.rs")); st != http.StatusBadRequest || body["error"] != subjectErr || !strings.Contains(body["error_description"].(string), "not active") {
		t.Errorf("revoked access token: %d %v", st, body)
	}
	w.clock.Add(6 * time.Minute)
	if st, body, _ := w.exchangeCall(t, "vendor", exchangeForm(launchTokenOf(ehrTok), ttID, "patient/*.rs")); st != http.StatusBadRequest || body["error"] != subjectErr || !strings.Contains(body["error_description"].(string), "expired") {
		t.Errorf("expired launch-token: %d %v", st, body)
	}
	w.clock.Add(2 * time.Hour)
	if st, body, _ := w.exchangeCall(t, "vendor", exchangeForm(idTokenOf(ehrTok), ttID, "user/*.rs")); st != http.StatusBadRequest || body["error"] != subjectErr || !strings.Contains(body["error_description"].(string), "expired") {
		t.Errorf("expired id_token: %d %v", st, body)
	}
}

// signJWT signs claims with a fresh key nobody trusts.
func signJWT(t testing.TB, typ string, claims map[string]any) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: k, KeyID: "forged"}}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExchangeUntrustedOrForgedSubject(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	// OtherAS's own access token: its issuer is not a trusted EHR.
	st, body, _ := w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "user/*.rs"))
	if st != http.StatusOK {
		t.Fatalf("setup exchange: %d %v", st, body)
	}
	own := body["access_token"].(string)
	now := w.clock.Now()
	before := w.fromOther.Load()
	for name, form := range map[string]url.Values{
		"OtherAS's own token": exchangeForm(own, ttAccess, "user/*.rs"),
		"third issuer id_token": exchangeForm(signJWT(t, "JWT", map[string]any{
			"iss": thirdIssuer, "sub": "doc", "aud": "app", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}), ttID, "user/*.rs"),
		"third issuer launch-token": exchangeForm(signJWT(t, "launch-token+jwt", map[string]any{
			"iss": thirdIssuer, "sub": "doc", "aud": w.otherCfg.Issuer, "azp": "app", "software_id": "sw-app", "jti": "j1",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}), ttID, "patient/*.rs"),
	} {
		st, body, _ := w.exchangeCall(t, "vendor", form)
		if st != http.StatusBadRequest || body["error"] != subjectErr || !strings.Contains(body["error_description"].(string), "not a trusted EHR") {
			t.Errorf("%s: %d %v", name, st, body)
		}
	}
	if n := w.fromOther.Load(); n != before {
		t.Errorf("OtherAS made %d calls for untrusted subjects", n-before)
	}
	// A token claiming the trusted EHR but signed with another key.
	forged := signJWT(t, "at+jwt", map[string]any{"iss": w.ehrCfg.Issuer, "sub": "doc", "aud": w.ehrCfg.FHIRBase, "client_id": "app",
		"scope": "patient/*.rs", "patient": "p-shared", "jti": "x", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	if st, body, _ := w.exchangeCall(t, "vendor", exchangeForm(forged, ttAccess, "patient/*.rs")); st != http.StatusBadRequest || body["error"] != subjectErr {
		t.Errorf("forged access token: %d %v", st, body)
	}
}

func TestExchangeEHRDown(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	w.delay.Store(int64(3 * time.Second))
	st, body, _ := w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "patient/*.rs"))
	w.delay.Store(0)
	if st != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" {
		t.Errorf("EHR down: %d %v", st, body)
	}
}

// TestExchangeBadInput: every malformed request gets the RFC 8693 /
// RFC 6749 error, as a no-store JSON error, and never burns a
// launch-token.
func TestExchangeBadInput(t *testing.T) {
	w := exchangeWorld(t)
	ehrTok := w.ehrLaunch(t, "p-shared")
	lt, at, idt := launchTokenOf(ehrTok), ehrTok.AccessToken, idTokenOf(ehrTok)
	base := func() url.Values { return exchangeForm(at, ttAccess, "patient/*.rs") }
	with := func(mut func(url.Values)) url.Values { v := base(); mut(v); return v }
	type tc struct {
		name   string
		client string
		form   url.Values
		status int
		code   string
	}
	cases := []tc{
		{"missing subject_token", "vendor", with(func(v url.Values) { v.Del("subject_token") }), 400, "invalid_request"},
		{"empty subject_token", "vendor", with(func(v url.Values) { v.Set("subject_token", "") }), 400, "invalid_request"},
		{"missing subject_token_type", "vendor", with(func(v url.Values) { v.Del("subject_token_type") }), 400, "invalid_request"},
		{"duplicated subject_token", "vendor", with(func(v url.Values) { v.Add("subject_token", at) }), 400, "invalid_request"},
		{"duplicated subject_token_type", "vendor", with(func(v url.Values) { v.Add("subject_token_type", ttAccess) }), 400, "invalid_request"},
		{"duplicated scope", "vendor", with(func(v url.Values) { v.Add("scope", "user/*.rs") }), 400, "invalid_request"},
		{"duplicated requested_token_type", "vendor", with(func(v url.Values) { v.Add("requested_token_type", ttAccess); v.Add("requested_token_type", ttAccess) }), 400, "invalid_request"},
		{"duplicated grant_type", "vendor", with(func(v url.Values) { v.Add("grant_type", otheras.GrantTokenExchange) }), 400, "invalid_request"},
		{"unknown subject_token_type", "vendor", with(func(v url.Values) { v.Set("subject_token_type", "urn:example:unknown") }), 400, "invalid_request"},
		{"saml2 subject_token_type", "vendor", with(func(v url.Values) { v.Set("subject_token_type", "urn:ietf:params:oauth:token-type:saml2") }), 400, "invalid_request"},
		{"refresh_token subject_token_type", "vendor", with(func(v url.Values) { v.Set("subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), 400, "invalid_request"},
		{"draft launch-token type name", "vendor", with(func(v url.Values) { v.Set("subject_token", lt); v.Set("subject_token_type", "urn:smart:launch-token") }), 400, "invalid_request"},
		{"requested id_token", "vendor", with(func(v url.Values) { v.Set("requested_token_type", ttID) }), 400, "invalid_request"},
		{"requested refresh_token", "vendor", with(func(v url.Values) { v.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), 400, "invalid_request"},
		{"launch-token typed as access token", "vendor", with(func(v url.Values) { v.Set("subject_token", lt) }), 400, "invalid_request"},
		{"access token typed as id_token", "vendor", with(func(v url.Values) { v.Set("subject_token_type", ttID) }), 400, "invalid_request"},
		{"id_token typed as access token", "vendor", with(func(v url.Values) { v.Set("subject_token", idt) }), 400, "invalid_request"},
		{"garbage subject", "vendor", with(func(v url.Values) { v.Set("subject_token", "not-a-token") }), 400, subjectErr},
		{"three dots of garbage", "vendor", with(func(v url.Values) { v.Set("subject_token", "a.b.c") }), 400, subjectErr},
		{"actor_token", "vendor", with(func(v url.Values) { v.Set("actor_token", at); v.Set("actor_token_type", ttAccess) }), 400, "invalid_request"},
		{"actor_token_type alone", "vendor", with(func(v url.Values) { v.Set("actor_token_type", ttAccess) }), 400, "invalid_request"},
		{"resource elsewhere", "vendor", with(func(v url.Values) { v.Set("resource", "https://elsewhere.test/fhir") }), 400, "invalid_target"},
		{"resource is the EHR", "vendor", with(func(v url.Values) { v.Set("resource", w.ehrCfg.FHIRBase) }), 400, "invalid_target"},
		{"resource relative", "vendor", with(func(v url.Values) { v.Set("resource", "/fhir") }), 400, "invalid_target"},
		{"resource with fragment", "vendor", with(func(v url.Values) { v.Set("resource", w.otherCfg.FHIRBase+"#x") }), 400, "invalid_target"},
		{"resource: one governed, one not", "vendor", with(func(v url.Values) { v["resource"] = []string{w.otherCfg.FHIRBase, "https://elsewhere.test/fhir"} }), 400, "invalid_target"},
		{"audience is the EHR", "vendor", with(func(v url.Values) { v.Set("audience", w.ehrCfg.Issuer) }), 400, "invalid_target"},
		{"missing scope", "vendor", with(func(v url.Values) { v.Del("scope") }), 400, "invalid_scope"},
		{"malformed scope", "vendor", with(func(v url.Values) { v.Set("scope", "patient/Observation.xyz") }), 400, "invalid_scope"},
		{"fhirUser alone", "vendor", with(func(v url.Values) { v.Set("scope", "fhirUser launch/patient") }), 400, "invalid_scope"},
		{"nothing exchangeable", "vendor", with(func(v url.Values) { v.Set("scope", "openid offline_access launch system/*.rs") }), 400, "invalid_scope"},
		{"public client", "app-other", with(func(v url.Values) { v.Set("client_id", "app-other") }), 400, "unauthorized_client"},
		{"no client authentication", "", base(), 401, "invalid_client"},
		{"wrong secret", "vendor-wrong", base(), 401, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st int
			var body map[string]any
			var h http.Header
			if c.client == "vendor-wrong" {
				st, body, h = w.postToken(t, "vendor", "nope", c.form.Encode())
			} else {
				st, body, h = w.exchangeCall(t, c.client, c.form)
			}
			check(t, st, body, h, c.status, c.code)
		})
	}
	// None of that burnt the launch-token, and a governed resource and
	// audience are accepted.
	form := exchangeForm(lt, ttID, "patient/*.rs")
	form["resource"] = []string{w.otherCfg.FHIRBase, w.otherCfg.FHIRBase + "/"}
	form.Set("audience", w.otherCfg.FHIRBase)
	st, body, h := w.exchangeCall(t, "vendor", form)
	if a := checkIssued(t, w, st, body, h); a.Patient() != "o-ada" {
		t.Errorf("patient %q", a.Patient())
	}
}

func check(t *testing.T, st int, body map[string]any, h http.Header, status int, code string) {
	t.Helper()
	if st != status || body["error"] != code {
		t.Errorf("got %d %v, want %d %s", st, body, status, code)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("error without no-store: %v", h)
	}
	if _, ok := body["access_token"]; ok {
		t.Error("an error answer carries an access token")
	}
}

func TestExchangeDiscovery(t *testing.T) {
	w := exchangeWorld(t)
	for _, u := range []string{w.otherCfg.FHIRBase + "/.well-known/smart-configuration", w.otherCfg.Issuer + "/.well-known/openid-configuration"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Grants       []string `json:"grant_types_supported"`
			Capabilities []string `json:"capabilities"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(doc.Grants, otheras.GrantTokenExchange) {
			t.Errorf("%s: grant_types_supported %v", u, doc.Grants)
		}
		if strings.Contains(u, "smart-configuration") {
			for _, c := range []string{"token-exchange-openid", "token-exchange-accesstoken", "token-exchange-launchtoken"} {
				if !slices.Contains(doc.Capabilities, c) {
					t.Errorf("capabilities lack %s", c)
				}
			}
		}
	}
}

// FuzzExchangeForm posts arbitrary token-exchange bodies (as the
// confidential "vendor" client): never a panic, always a JSON answer with
// no-store, and an access token only with a 200.
func FuzzExchangeForm(f *testing.F) {
	w := exchangeWorld(f)
	for _, s := range []string{
		"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&scope=patient%2F*.rs",
		"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x&subject_token=y",
		"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&resource=%25zz&audience=&scope=%22",
	} {
		f.Add(s)
	}
	// Real subjects, for the fuzzer to mutate around.
	ehrTok := w.ehrLaunch(f, "p-shared")
	f.Add(exchangeForm(ehrTok.AccessToken, ttAccess, "patient/*.rs", "user/*.rs").Encode())
	f.Add(exchangeForm(idTokenOf(ehrTok), ttID, "user/*.rs", "fhirUser").Encode())
	f.Add(exchangeForm(launchTokenOf(ehrTok), ttID, "patient/*.rs").Encode() + "&resource=" + url.QueryEscape(w.otherCfg.FHIRBase))
	mux := http.NewServeMux()
	w.other.Mount(mux)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, w.otherCfg.Issuer+"/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("vendor", "v3ndor")
		rr := httptest.NewRecorder()
		mux.ServeHTTP(rr, req)
		var m map[string]any
		if err := json.Unmarshal(rr.Body.Bytes(), &m); err != nil {
			t.Fatalf("no JSON object (%d): %q", rr.Code, rr.Body.String())
		}
		if rr.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("no no-store: %v", rr.Header())
		}
		if _, ok := m["access_token"]; ok != (rr.Code == http.StatusOK) {
			t.Fatalf("status %d with body %v", rr.Code, m)
		}
		if rr.Code != http.StatusOK {
			if e, _ := m["error"].(string); e == "" || e == "server_error" {
				t.Fatalf("error %q for %q", e, body)
			}
		}
	})
}

// An EHR user with no account here gets no user-level scope and no
// fhirUser; the matched patient's scopes are still granted.
func TestExchangeUnknownUser(t *testing.T) {
	w := newWorld(t, func(c *otheras.Config) {
		c.Users = otherUsers{"nurse": {Username: "nurse", DisplayName: "Nurse"}}
		c.Clients = append(c.Clients, authkit.Client{ID: "vendor", Secret: "v3ndor", AuthMethod: authkit.AuthSecretBasic, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code"}, SoftwareID: "sw-app"})
	})
	ehrTok := w.ehrLaunch(t, "p-shared")
	st, body, h := w.exchangeCall(t, "vendor", exchangeForm(ehrTok.AccessToken, ttAccess, "patient/*.rs", "user/*.rs", "fhirUser"))
	a := checkIssued(t, w, st, body, h)
	if !slices.Equal(scopesOf(body), []string{"patient/*.rs"}) || a.Subject != "" || a.FHIRUser != "" || a.Patient() != "o-ada" {
		t.Errorf("unknown user: %v, grant %+v", body, a)
	}
	st, body, _ = w.exchangeCall(t, "vendor", exchangeForm(idTokenOf(ehrTok), ttID, "user/*.rs"))
	if st != http.StatusBadRequest || body["error"] != "invalid_scope" || !strings.Contains(body["error_description"].(string), "no account") {
		t.Errorf("id_token of an unknown user: %d %v", st, body)
	}
}
