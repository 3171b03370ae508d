// Package conformance is the OAuth conformance suite every sim
// authorization server runs from a five-line test: discovery, PKCE S256
// only, exact redirect_uri, error page vs. redirect, state + iss echo,
// single-use codes with replay revocation, no-store headers, client
// authentication failures, refresh rotation, introspection rules and
// registration.
package conformance

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/browser"
)

// Target is a running authorization server under test.
type Target struct {
	FHIRBase string // discovery starts at {FHIRBase}/.well-known/smart-configuration
	// A registered confidential client (client_secret_basic) allowed
	// authorization_code and refresh_token, with RedirectURI registered.
	ClientID, ClientSecret, RedirectURI string
	// Scope to request; it must include offline_access.
	Scope string
	// Authorize takes the browser (already at the AS's first page) to the
	// app's redirect: sign in, pick, consent with approve.
	Authorize func(t *testing.T, b *browser.Browser, page *browser.Page) *url.URL
	// Extra authorize parameters (e.g. aud, launch).
	Extra url.Values
}

// RunTests runs every invariant against targets built by newTarget.
func RunTests(t *testing.T, newTarget func(t *testing.T) Target) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, tg Target, d discovery)
	}{
		{"DiscoveryAbsoluteURLs", testDiscovery},
		{"PKCEPlainRefused", testPlainPKCE},
		{"RedirectURIExact", testRedirectExact},
		{"ErrorRedirectEchoesStateAndIss", testErrorRedirect},
		{"CodeSingleUseReplayRevokes", testCodeReplay},
		{"TokenErrorsNoStore", testNoStore},
		{"BadClientSecret", testBadSecret},
		{"RefreshRotation", testRefresh},
		{"IntrospectionAuth", testIntrospection},
		{"Registration", testRegistration},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t)
			tc.fn(t, tg, discover(t, tg))
		})
	}
}

type discovery struct {
	Issuer        string   `json:"issuer"`
	Authorize     string   `json:"authorization_endpoint"`
	Token         string   `json:"token_endpoint"`
	Register      string   `json:"registration_endpoint"`
	Introspect    string   `json:"introspection_endpoint"`
	Revoke        string   `json:"revocation_endpoint"`
	JWKS          string   `json:"jwks_uri"`
	PKCE          []string `json:"code_challenge_methods_supported"`
	ISSParam      bool     `json:"authorization_response_iss_parameter_supported"`
	Capabilities  []string `json:"capabilities"`
	ResponseTypes []string `json:"response_types_supported"`
}

func discover(t *testing.T, tg Target) discovery {
	t.Helper()
	resp, err := http.Get(tg.FHIRBase + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d discovery
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("smart-configuration: %v", err)
	}
	return d
}

func testDiscovery(t *testing.T, tg Target, d discovery) {
	for name, u := range map[string]string{"issuer": d.Issuer, "authorization_endpoint": d.Authorize, "token_endpoint": d.Token, "registration_endpoint": d.Register, "introspection_endpoint": d.Introspect, "revocation_endpoint": d.Revoke, "jwks_uri": d.JWKS} {
		p, err := url.Parse(u)
		if err != nil || !p.IsAbs() || p.Host == "" {
			t.Errorf("%s not absolute: %q", name, u)
		}
	}
	if len(d.PKCE) != 1 || d.PKCE[0] != "S256" {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", d.PKCE)
	}
	if !d.ISSParam {
		t.Error("authorization_response_iss_parameter_supported not true")
	}
	resp, err := http.Get(d.Issuer + "/.well-known/openid-configuration")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("openid-configuration: %v", err)
	}
	resp.Body.Close()
	r, err := http.Get(d.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []map[string]any }
	_ = json.NewDecoder(r.Body).Decode(&set)
	r.Body.Close()
	if len(set.Keys) == 0 || set.Keys[0]["kid"] == nil {
		t.Error("jwks has no key with kid")
	}
}

func authURL(d discovery, tg Target, challenge, method string) string {
	v := url.Values{"response_type": {"code"}, "client_id": {tg.ClientID}, "redirect_uri": {tg.RedirectURI}, "state": {"s-1"}, "scope": {tg.Scope}, "aud": {tg.FHIRBase}}
	if method != "" {
		v.Set("code_challenge", challenge)
		v.Set("code_challenge_method", method)
	}
	for k, vs := range tg.Extra {
		v[k] = vs
	}
	return d.Authorize + "?" + v.Encode()
}

func get(t *testing.T, tg Target, u string) *browser.Page {
	t.Helper()
	p, err := browser.New(nil, tg.RedirectURI).Get(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testPlainPKCE(t *testing.T, tg Target, d discovery) {
	v := strings.Repeat("v", 43)
	for _, method := range []string{"plain", ""} {
		p := get(t, tg, authURL(d, tg, v, method))
		if p.Redirect == nil || p.Redirect.Query().Get("error") != "invalid_request" {
			t.Errorf("PKCE method %q: want invalid_request redirect", method)
		}
	}
}

func testRedirectExact(t *testing.T, tg Target, d discovery) {
	u := strings.Replace(authURL(d, tg, authkit.S256(strings.Repeat("v", 43)), "S256"), url.QueryEscape(tg.RedirectURI), url.QueryEscape(tg.RedirectURI+"x"), 1)
	p := get(t, tg, u)
	if p.Redirect != nil || p.Status < 400 {
		t.Errorf("redirect_uri mismatch: want an error page, got status %d redirect %v", p.Status, p.Redirect)
	}
	p = get(t, tg, strings.Replace(u, "client_id="+url.QueryEscape(tg.ClientID), "client_id=unknown-client", 1))
	if p.Redirect != nil || p.Status < 400 {
		t.Error("unknown client: want an error page")
	}
}

func testErrorRedirect(t *testing.T, tg Target, d discovery) {
	u := authURL(d, tg, authkit.S256(strings.Repeat("v", 43)), "S256") + "&response_type=token"
	u = strings.Replace(u, "response_type=code&", "", 1)
	p := get(t, tg, u)
	if p.Redirect == nil {
		t.Fatal("no redirect")
	}
	q := p.Redirect.Query()
	if q.Get("error") == "" || q.Get("state") != "s-1" || q.Get("iss") != d.Issuer {
		t.Errorf("error redirect %s lacks error/state/iss", p.Redirect.RawQuery)
	}
}

func runCode(t *testing.T, tg Target, d discovery, verifier string) string {
	t.Helper()
	b := browser.New(nil, tg.RedirectURI)
	p, err := b.Get(context.Background(), authURL(d, tg, authkit.S256(verifier), "S256"))
	if err != nil {
		t.Fatal(err)
	}
	cb := p.Redirect
	if cb == nil {
		cb = tg.Authorize(t, b, p)
	}
	q := cb.Query()
	if q.Get("code") == "" || q.Get("state") != "s-1" || q.Get("iss") != d.Issuer {
		t.Fatalf("callback %s lacks code/state/iss", cb.RawQuery)
	}
	return q.Get("code")
}

func post(t *testing.T, u string, form url.Values, user, pass, bearer string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m, resp.Header
}

func exchange(t *testing.T, tg Target, d discovery, code, verifier string) (int, map[string]any, http.Header) {
	return post(t, d.Token, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {tg.RedirectURI}, "code_verifier": {verifier}}, tg.ClientID, tg.ClientSecret, "")
}

func testCodeReplay(t *testing.T, tg Target, d discovery) {
	v := authkit.RandomString(40)
	code := runCode(t, tg, d, v)
	st, body, h := exchange(t, tg, d, code, v)
	if st != 200 || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Fatalf("exchange: %d %v", st, body)
	}
	first, _ := body["access_token"].(string)
	if body["token_type"] != "Bearer" || body["expires_in"] == nil || body["scope"] == nil {
		t.Errorf("token response lacks token_type/expires_in/scope: %v", body)
	}
	st, body, _ = exchange(t, tg, d, code, v)
	if st != 400 || body["error"] != "invalid_grant" {
		t.Errorf("replay: %d %v", st, body)
	}
	if rt, _ := body["refresh_token"].(string); rt != "" {
		t.Error("replay returned tokens")
	}
	// The replay revoked what the first exchange issued.
	_, body, _ = post(t, d.Introspect, url.Values{"token": {first}}, tg.ClientID, tg.ClientSecret, "")
	if body["active"] != false {
		t.Errorf("access token of a replayed code still active: %v", body)
	}
}

// bodyToken is a fresh access token for introspection checks.
func bodyToken(t *testing.T, tg Target, d discovery) string {
	v := authkit.RandomString(40)
	code := runCode(t, tg, d, v)
	_, body, _ := exchange(t, tg, d, code, v)
	at, _ := body["access_token"].(string)
	return at
}

func testNoStore(t *testing.T, tg Target, d discovery) {
	st, body, h := post(t, d.Token, url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "redirect_uri": {tg.RedirectURI}, "code_verifier": {strings.Repeat("v", 43)}}, tg.ClientID, tg.ClientSecret, "")
	if st != 400 || body["error"] != "invalid_grant" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("bad code: %d %v %v", st, body, h)
	}
	st, body, _ = post(t, d.Token, url.Values{"grant_type": {"urn:example:unknown"}}, tg.ClientID, tg.ClientSecret, "")
	if st != 400 || body["error"] != "unsupported_grant_type" {
		t.Errorf("unknown grant: %d %v", st, body)
	}
}

func testBadSecret(t *testing.T, tg Target, d discovery) {
	st, body, h := post(t, d.Token, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, tg.ClientID, tg.ClientSecret+"x", "")
	if st != 401 || body["error"] != "invalid_client" || h.Get("WWW-Authenticate") == "" {
		t.Errorf("wrong secret: %d %v", st, body)
	}
	st, body, _ = post(t, d.Token, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, "", "", "")
	if st != 401 || body["error"] != "invalid_client" {
		t.Errorf("no client: %d %v", st, body)
	}
}

func testRefresh(t *testing.T, tg Target, d discovery) {
	v := authkit.RandomString(40)
	_, body, _ := exchange(t, tg, d, runCode(t, tg, d, v), v)
	rt1, _ := body["refresh_token"].(string)
	if rt1 == "" {
		t.Fatal("no refresh token (Scope must include offline_access)")
	}
	refresh := func(rt string) (int, map[string]any) {
		st, b, _ := post(t, d.Token, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, tg.ClientID, tg.ClientSecret, "")
		return st, b
	}
	st, b := refresh(rt1)
	rt2, _ := b["refresh_token"].(string)
	if st != 200 || rt2 == "" || rt2 == rt1 {
		t.Fatalf("rotation: %d %v", st, b)
	}
	if st, _ := refresh(rt1); st != 400 {
		t.Error("rotated token reusable")
	}
	if st, _ := refresh(rt2); st != 400 {
		t.Error("reuse did not revoke the family")
	}
}

func testIntrospection(t *testing.T, tg Target, d discovery) {
	at := bodyToken(t, tg, d)
	if st, _, _ := post(t, d.Introspect, url.Values{"token": {at}}, "", "", ""); st != 401 {
		t.Errorf("unauthenticated: %d", st)
	}
	st, body, _ := post(t, d.Introspect, url.Values{"token": {at}}, tg.ClientID, tg.ClientSecret, "")
	if st != 200 || body["active"] != true || body["client_id"] != tg.ClientID || body["exp"] == nil || body["scope"] == nil {
		t.Errorf("own token: %d %v", st, body)
	}
	st, body, _ = post(t, d.Introspect, url.Values{"token": {"garbage"}}, tg.ClientID, tg.ClientSecret, "")
	if st != 200 || len(body) != 1 || body["active"] != false {
		t.Errorf("garbage token: %d %v", st, body)
	}
}

func testRegistration(t *testing.T, tg Target, d discovery) {
	reg := func(body string) (int, map[string]any) {
		resp, err := http.Post(d.Register, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	st, m := reg(`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic","software_id":"sw","client_name":"A"}`)
	if st != 201 || m["client_id"] == nil || m["client_secret"] == nil {
		t.Errorf("register symmetric: %d %v", st, m)
	}
	if st, m := reg(`{"redirect_uris":["https://app.example/cb#frag"]}`); st != 400 || m["error"] != "invalid_redirect_uri" {
		t.Errorf("fragment: %d %v", st, m)
	}
	if st, m := reg(`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"magic"}`); st != 400 || m["error"] != "invalid_client_metadata" {
		t.Errorf("bad method: %d %v", st, m)
	}
}
