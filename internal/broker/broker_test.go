package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/broker"
	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/scenarios"
)

// The broker is tested in front of the real EHR AS and OtherAS: one small
// world is started on first use and shared by the tests of this file.
var (
	worldOnce sync.Once
	worldEnv  *env
	worldErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if worldEnv != nil {
		worldEnv.r.Close(context.Background())
	}
	os.Exit(code)
}

// env is the started world as the tests see it.
type env struct {
	r                   *scenarios.Running
	ready               scenarios.Ready
	authorize, token    string // the broker's endpoints, from its discovery
	appRedirect         string // sim-sample-app (public)
	vendorRedirect      string // sim-vendor-app (client_secret_basic)
	sharedEHR, absentEH string // an EHR patient of class shared / absent
}

const (
	sampleApp    = "sim-sample-app"
	vendorApp    = "sim-vendor-app"
	vendorSecret = "vendor-app-secret-change-me"
	appScope     = "launch openid fhirUser patient/*.rs user/*.rs"
)

func theWorld(t *testing.T) *env {
	t.Helper()
	worldOnce.Do(func() { worldEnv, worldErr = startWorld() })
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return worldEnv
}

func startWorld() (*env, error) {
	w, err := scenarios.ParseWorld("broker.yaml", []byte("ehr: {patients: 40}\n"))
	if err != nil {
		return nil, err
	}
	r, err := scenarios.Start(context.Background(), w, scenarios.Options{})
	if err != nil {
		return nil, err
	}
	e := &env{r: r, ready: r.Ready()}
	fail := func(err error) (*env, error) { r.Close(context.Background()); return nil, err }
	if e.ready.BrokerIssuer == "" {
		return fail(fmt.Errorf("the world runs no broker: %+v", e.ready))
	}
	var disc struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint         string   `json:"token_endpoint"`
		Capabilities          []string `json:"capabilities"`
		ISSParam              bool     `json:"authorization_response_iss_parameter_supported"`
	}
	if err := getJSON(e.ready.BrokerIssuer+"/.well-known/smart-configuration", &disc); err != nil {
		return fail(err)
	}
	if disc.Issuer != e.ready.BrokerIssuer || !disc.ISSParam {
		return fail(fmt.Errorf("broker discovery %+v", disc))
	}
	e.authorize, e.token = disc.AuthorizationEndpoint, disc.TokenEndpoint
	e.appRedirect = e.ready.Console + "/sample-app/callback"
	e.vendorRedirect = e.ready.Console + "/vendor-app/callback"
	var wv scenarios.WorldView
	if err := getJSON(e.ready.API+"/world?limit=1000", &wv); err != nil {
		return fail(err)
	}
	for _, p := range wv.Patients {
		switch {
		case p.Class == "shared" && e.sharedEHR == "":
			e.sharedEHR = p.EHRID
		case p.Class == "absent" && e.absentEH == "":
			e.absentEH = p.EHRID
		}
	}
	if e.sharedEHR == "" || e.absentEH == "" {
		return fail(fmt.Errorf("the world has no shared or no absent patient: %v", wv.Classes))
	}
	return e, nil
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// launch makes an EHR launch for the broker's EHR registration.
func (e *env) launch(t *testing.T, patient string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"client_id": "sim-broker", "launch_url": e.ready.Console + "/sample-app/launch", "patient": patient, "user": "dr.smith"})
	resp, err := http.Post(e.ready.API+"/launches", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var launched struct{ URL string }
	if err := json.NewDecoder(resp.Body).Decode(&launched); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /launches: %d %v", resp.StatusCode, err)
	}
	u, err := url.Parse(launched.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("launch")
}

// flow is one run of a brokered authorization through a browser.
type flow struct {
	// params override the app's authorization request ("" deletes).
	params url.Values
	// patient is the EHR patient of the launch (default: a shared one).
	patient string
	// ehr and other are the user's consent decisions (default approve).
	ehr, other string
	// tamper edits an upstream authorization response (leg "ehr" or
	// "other") before the broker's callback receives it.
	tamper func(leg string, q url.Values)
}

// result is where the broker finally sent the browser.
type result struct {
	verifier, state string
	redirect        string // the redirect_uri the app asked for
	at              *url.URL
	callbacks       []*url.URL // the upstream responses the broker got (after tampering)
}

func (e *env) run(t *testing.T, f flow) result {
	t.Helper()
	res := result{verifier: authkit.RandomString(48), state: authkit.RandomString(16)}
	patient := f.patient
	if patient == "" {
		patient = e.sharedEHR
	}
	q := url.Values{
		"response_type": {"code"}, "client_id": {sampleApp}, "redirect_uri": {e.appRedirect},
		"state": {res.state}, "scope": {appScope}, "code_challenge": {authkit.S256(res.verifier)},
		"code_challenge_method": {"S256"}, "aud": {e.ready.EHRFHIR}, "launch": {e.launch(t, patient)},
	}
	for k, v := range f.params {
		if len(v) == 1 && v[0] == "" {
			delete(q, k)
		} else {
			q[k] = v
		}
	}
	res.redirect = q.Get("redirect_uri")
	callback := e.ready.BrokerIssuer + "/callback"
	b := browser.New(nil, callback, res.redirect)
	ctx := t.Context()
	page, err := b.Get(ctx, e.authorize+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	for _, leg := range []string{"ehr", "other"} {
		at := fill(t, b, page, f)
		if !strings.HasPrefix(at.String(), callback) {
			res.at = at
			return res
		}
		if f.tamper != nil {
			cq := at.Query()
			f.tamper(leg, cq)
			at.RawQuery = cq.Encode()
		}
		res.callbacks = append(res.callbacks, at)
		next := hop(t, b, at.String())
		if strings.HasPrefix(next, res.redirect) {
			res.at, _ = url.Parse(next)
			return res
		}
		if page, err = b.Get(ctx, next); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("the browser did not come back to the app after both legs (last callback %v)", res.callbacks)
	return res
}

// fill logs in and answers consent pages until the browser is sent to a
// stop URL.
func fill(t *testing.T, b *browser.Browser, page *browser.Page, f flow) *url.URL {
	t.Helper()
	var err error
	for range 6 {
		if page.Redirect != nil {
			return page.Redirect
		}
		if login, ok := page.FormWith("password"); ok {
			page, err = b.Submit(t.Context(), login, browser.Submit{Set: map[string]string{"username": "dr.smith", "password": "smart"}})
		} else if form, ok := page.FormWith("decision"); ok {
			decision := f.ehr
			if !strings.HasPrefix(page.URL.String(), theWorldEHROrigin(t)) {
				decision = f.other
			}
			if decision == "" {
				decision = "approve"
			}
			page, err = b.Submit(t.Context(), form, browser.Submit{Button: "decision=" + decision})
		} else {
			t.Fatalf("unexpected page %s %q (status %d): %.400s", page.URL.Redacted(), page.Title, page.Status, page.Body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("too many pages")
	return nil
}

func theWorldEHROrigin(t *testing.T) string {
	return strings.TrimSuffix(theWorld(t).ready.EHRIssuer, "/auth")
}

// hop sends one GET to the broker and returns where it redirects.
func hop(t *testing.T, b *browser.Browser, u string) string {
	t.Helper()
	resp, err := b.Client().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("broker callback: %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// token posts form to the broker's token endpoint.
func (e *env) tokenRequest(t *testing.T, form url.Values, user, pass string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.token, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token response: %v", err)
	}
	return resp.StatusCode, resp.Header, body
}

func (e *env) redeem(t *testing.T, res result) (int, http.Header, map[string]any) {
	t.Helper()
	return e.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {res.at.Query().Get("code")},
		"redirect_uri": {res.redirect}, "code_verifier": {res.verifier}, "client_id": {sampleApp}}, "", "")
}

// wantAppError checks the browser came back to the app with error code
// want, the app's state, the broker's iss, and no code.
func (e *env) wantAppError(t *testing.T, res result, want string) {
	t.Helper()
	if res.at == nil {
		t.Fatal("the browser never came back to the app")
	}
	q := res.at.Query()
	if q.Get("error") != want || q.Has("code") || q.Get("state") != res.state || q.Get("iss") != e.ready.BrokerIssuer {
		t.Fatalf("app redirect %s: want error=%s with state and iss and no code", res.at.RawQuery, want)
	}
}

func noStore(t *testing.T, h http.Header) {
	t.Helper()
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", h.Get("Cache-Control"))
	}
}

func TestDiscovery(t *testing.T) {
	e := theWorld(t)
	for _, p := range []string{"/.well-known/smart-configuration", "/.well-known/openid-configuration"} {
		var doc map[string]any
		if err := getJSON(e.ready.BrokerIssuer+p, &doc); err != nil {
			t.Fatal(err)
		}
		caps, _ := doc["capabilities"].([]any)
		res, _ := doc["brokered_resources"].([]any)
		if doc["issuer"] != e.ready.BrokerIssuer || !containsAny(caps, broker.CapabilityBrokered) ||
			!containsAny(res, e.ready.EHRFHIR) || !containsAny(res, e.ready.OtherFHIR) {
			t.Errorf("%s: %v", p, doc)
		}
		methods, _ := doc["code_challenge_methods_supported"].([]any)
		if len(methods) != 1 || methods[0] != "S256" {
			t.Errorf("%s: code_challenge_methods_supported %v, want only S256", p, methods)
		}
	}
}

func containsAny(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestTokenResponse: the happy path through both ASes, seen from the app.
func TestTokenResponse(t *testing.T) {
	e := theWorld(t)
	res := e.run(t, flow{})
	q := res.at.Query()
	if q.Get("code") == "" || q.Get("state") != res.state || q.Get("iss") != e.ready.BrokerIssuer || q.Has("error") {
		t.Fatalf("app redirect %s: want code, the app's state and the broker's iss", res.at.RawQuery)
	}
	if len(res.callbacks) != 2 {
		t.Fatalf("%d upstream responses, want 2", len(res.callbacks))
	}
	for i, iss := range []string{e.ready.EHRIssuer, e.ready.OtherIssuer} {
		if got := res.callbacks[i].Query().Get("iss"); got != iss {
			t.Errorf("upstream response %d has iss %q, want %q", i, got, iss)
		}
	}
	status, h, body := e.redeem(t, res)
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	noStore(t, h)
	if body["access_token"] == nil || body["patient"] != e.sharedEHR {
		t.Fatalf("token response %v", body)
	}
	for _, k := range []string{"refresh_token", "launch_token", "additional_token_errors"} {
		if _, ok := body[k]; ok {
			t.Errorf("token response carries %s", k)
		}
	}
	add, _ := body["additional_tokens"].([]any)
	if len(add) != 1 {
		t.Fatalf("additional_tokens %v", body["additional_tokens"])
	}
	other, _ := add[0].(map[string]any)
	if other["resource"] != e.ready.OtherFHIR || other["access_token"] == nil || other["access_token"] == body["access_token"] {
		t.Errorf("additional token %v", other)
	}
}

// TestMixUp: an authorization response whose iss is not the AS the leg
// went to ends the flow with an error at the app (RFC 9207, RFC 9700
// §4.4): no code, no token, and the genuine response no longer works.
func TestMixUp(t *testing.T) {
	e := theWorld(t)
	for _, c := range []struct {
		name, leg string
		iss       func() []string // nil: remove iss
	}{
		{"EHR leg answered as OtherAS", "ehr", func() []string { return []string{e.ready.OtherIssuer} }},
		{"EHR leg without iss", "ehr", nil},
		{"EHR leg by a stranger", "ehr", func() []string { return []string{"https://attacker.example/auth"} }},
		{"EHR leg iss with trailing slash", "ehr", func() []string { return []string{e.ready.EHRIssuer + "/"} }},
		{"Other leg answered as the EHR", "other", func() []string { return []string{e.ready.EHRIssuer} }},
		{"Other leg without iss", "other", nil},
		{"Other leg with two iss", "other", func() []string { return []string{e.ready.OtherIssuer, e.ready.EHRIssuer} }},
		{"Other leg with two iss, wrong first", "other", func() []string { return []string{e.ready.EHRIssuer, e.ready.OtherIssuer} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var genuine string
			res := e.run(t, flow{tamper: func(leg string, q url.Values) {
				if leg != c.leg {
					return
				}
				u := url.URL{RawQuery: q.Encode()}
				genuine = u.RawQuery
				if c.iss == nil {
					q.Del("iss")
				} else {
					q["iss"] = c.iss()
				}
			}})
			if genuine == "" {
				t.Fatalf("the flow never reached the %s leg's callback", c.leg)
			}
			if res.at == nil || res.at.Query().Get("error") == "" {
				t.Fatalf("app redirect %v: want an error", res.at)
			}
			e.wantAppError(t, res, res.at.Query().Get("error"))
			// The genuine response cannot finish the flow afterwards.
			resp, err := http.Get(e.ready.BrokerIssuer + "/callback?" + genuine)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("the genuine response after the mix-up: %d (Location %q), want an error page", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// TestEHRDenial: the user's denial at the EHR reaches the app as
// access_denied.
func TestEHRDenial(t *testing.T) {
	e := theWorld(t)
	res := e.run(t, flow{ehr: "deny"})
	if len(res.callbacks) != 1 {
		t.Fatalf("%d upstream responses, want only the EHR's", len(res.callbacks))
	}
	e.wantAppError(t, res, "access_denied")
}

// TestOtherRefusal: what OtherAS refuses is reported in
// additional_token_errors; the EHR token still comes through.
func TestOtherRefusal(t *testing.T) {
	e := theWorld(t)
	for _, c := range []struct {
		name string
		f    flow
	}{
		{"user denies at Other", flow{other: "deny"}},
		{"only patient scopes for a patient Other does not know", flow{patient: "absent", params: url.Values{"scope": {"launch patient/*.rs"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.f.patient == "absent" {
				c.f.patient = e.absentEH
			}
			res := e.run(t, c.f)
			if res.at.Query().Get("code") == "" || res.at.Query().Get("state") != res.state {
				t.Fatalf("app redirect %s", res.at.RawQuery)
			}
			status, h, body := e.redeem(t, res)
			if status != http.StatusOK || body["access_token"] == nil {
				t.Fatalf("token: %d %v", status, body)
			}
			noStore(t, h)
			if _, ok := body["additional_tokens"]; ok {
				t.Errorf("additional_tokens %v next to a refusal", body["additional_tokens"])
			}
			errs, _ := body["additional_token_errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("additional_token_errors %v", body["additional_token_errors"])
			}
			got, _ := errs[0].(map[string]any)
			if got["resource"] != e.ready.OtherFHIR || got["error"] != "access_denied" {
				t.Errorf("additional_token_errors[0] = %v, want access_denied for %s", got, e.ready.OtherFHIR)
			}
		})
	}
}

// noFollow is a client that reports redirects instead of following them.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (e *env) authorizeRequest(t *testing.T, mod url.Values) *http.Response {
	t.Helper()
	q := url.Values{
		"response_type": {"code"}, "client_id": {sampleApp}, "redirect_uri": {e.appRedirect},
		"state": {"st-1"}, "scope": {appScope}, "code_challenge": {authkit.S256(authkit.RandomString(48))},
		"code_challenge_method": {"S256"},
	}
	for k, v := range mod {
		if len(v) == 1 && v[0] == "" {
			delete(q, k)
		} else {
			q[k] = v
		}
	}
	resp, err := noFollow.Get(e.authorize + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestAuthorizeUntrustedRedirect: an unknown client or a redirect_uri not
// registered for it gets an error page, never a redirect.
func TestAuthorizeUntrustedRedirect(t *testing.T) {
	e := theWorld(t)
	for name, mod := range map[string]url.Values{
		"unknown client":                   {"client_id": {"no-such-app"}},
		"no client_id":                     {"client_id": {""}},
		"no redirect_uri":                  {"redirect_uri": {""}},
		"foreign redirect_uri":             {"redirect_uri": {"https://attacker.example/cb"}},
		"redirect_uri prefix":              {"redirect_uri": {e.appRedirect + "/x"}},
		"redirect_uri with query":          {"redirect_uri": {e.appRedirect + "?a=b"}},
		"another app's redirect_uri":       {"redirect_uri": {e.vendorRedirect}},
		"repeated redirect_uri":            {"redirect_uri": {e.appRedirect, "https://attacker.example/cb"}},
		"bad redirect_uri and bad PKCE":    {"redirect_uri": {"https://attacker.example/cb"}, "code_challenge_method": {"plain"}},
		"unknown client with a good redir": {"client_id": {"sim-broker"}},
	} {
		t.Run(name, func(t *testing.T) {
			resp := e.authorizeRequest(t, mod)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("%d Location %q: want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// TestAuthorizePKCE: without S256 PKCE the app gets an error and the
// browser never leaves for the EHR.
func TestAuthorizePKCE(t *testing.T) {
	e := theWorld(t)
	verifier := authkit.RandomString(48)
	for name, mod := range map[string]url.Values{
		"no PKCE":             {"code_challenge": {""}, "code_challenge_method": {""}},
		"no method":           {"code_challenge_method": {""}},
		"plain":               {"code_challenge": {verifier}, "code_challenge_method": {"plain"}},
		"short challenge":     {"code_challenge": {"too-short"}},
		"lower-case s256":     {"code_challenge_method": {"s256"}},
		"challenge not b64":   {"code_challenge": {strings.Repeat("~", 43)}},
		"challenge too long":  {"code_challenge": {verifier}},
		"no response_type":    {"response_type": {""}},
		"implicit":            {"response_type": {"token"}},
		"no scope":            {"scope": {""}},
		"repeated challenges": {"code_challenge": {authkit.S256(verifier), authkit.S256(verifier)}},
	} {
		t.Run(name, func(t *testing.T) {
			resp := e.authorizeRequest(t, mod)
			loc, err := url.Parse(resp.Header.Get("Location"))
			if name == "repeated challenges" {
				// A malformed request cannot be trusted to say where to go.
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
					t.Fatalf("%d Location %q: want an error page", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			if err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), e.appRedirect+"?") {
				t.Fatalf("%d Location %q: want a redirect to the app", resp.StatusCode, resp.Header.Get("Location"))
			}
			q := loc.Query()
			if q.Get("error") == "" || q.Has("code") || q.Get("state") != "st-1" || q.Get("iss") != e.ready.BrokerIssuer {
				t.Errorf("app redirect %s: want an error, the state and the broker's iss", loc.RawQuery)
			}
		})
	}
	t.Run("S256 goes on to the EHR", func(t *testing.T) {
		resp := e.authorizeRequest(t, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, e.ready.EHRIssuer+"/") {
			t.Fatalf("%d Location %q: want the EHR AS", resp.StatusCode, loc)
		}
	})
}

// TestCodeBinding: the broker's code is single-use and bound to the
// client, its redirect_uri and its PKCE verifier; every error response is
// no-store.
func TestCodeBinding(t *testing.T) {
	e := theWorld(t)
	type attempt struct {
		name       string
		mod        func(res result, form url.Values) (user, pass string)
		wantStatus int
		wantErr    string
	}
	wrongVerifier := func(_ result, f url.Values) (string, string) {
		f.Set("code_verifier", authkit.RandomString(48))
		return "", ""
	}
	for _, c := range []attempt{
		{"wrong verifier", wrongVerifier, 400, "invalid_grant"},
		{"no verifier", func(_ result, f url.Values) (string, string) { f.Del("code_verifier"); return "", "" }, 400, "invalid_grant"},
		{"challenge as verifier", func(r result, f url.Values) (string, string) {
			f.Set("code_verifier", authkit.S256(r.verifier))
			return "", ""
		}, 400, "invalid_grant"},
		{"other redirect_uri", func(_ result, f url.Values) (string, string) {
			f.Set("redirect_uri", e.vendorRedirect)
			return "", ""
		}, 400, "invalid_grant"},
		{"no redirect_uri", func(_ result, f url.Values) (string, string) { f.Del("redirect_uri"); return "", "" }, 400, "invalid_grant"},
		{"another client", func(_ result, f url.Values) (string, string) {
			f.Del("client_id")
			return vendorApp, vendorSecret
		}, 400, "invalid_grant"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := e.run(t, flow{})
			form := url.Values{"grant_type": {"authorization_code"}, "code": {res.at.Query().Get("code")},
				"redirect_uri": {res.redirect}, "code_verifier": {res.verifier}, "client_id": {sampleApp}}
			user, pass := c.mod(res, form)
			status, h, body := e.tokenRequest(t, form, user, pass)
			noStore(t, h)
			if status != c.wantStatus || body["error"] != c.wantErr || body["access_token"] != nil {
				t.Fatalf("%d %v: want %d %s", status, body, c.wantStatus, c.wantErr)
			}
			// The failed attempt spent the code: the right request fails too.
			if status, _, body := e.redeem(t, res); status != 400 || body["error"] != "invalid_grant" {
				t.Errorf("the code after a failed attempt: %d %v", status, body)
			}
		})
	}
	t.Run("single use", func(t *testing.T) {
		res := e.run(t, flow{})
		if status, _, body := e.redeem(t, res); status != 200 {
			t.Fatalf("first use: %d %v", status, body)
		}
		status, h, body := e.redeem(t, res)
		noStore(t, h)
		if status != 400 || body["error"] != "invalid_grant" || body["access_token"] != nil {
			t.Fatalf("second use: %d %v", status, body)
		}
	})
	t.Run("client authentication", func(t *testing.T) {
		for name, c := range map[string]struct {
			form       url.Values
			user, pass string
		}{
			"unknown client":             {url.Values{"client_id": {"no-such-app"}}, "", ""},
			"no client":                  {url.Values{}, "", ""},
			"confidential without":       {url.Values{"client_id": {vendorApp}}, "", ""},
			"confidential wrong secret":  {url.Values{}, vendorApp, "wrong-secret-wrong-secret"},
			"confidential secret in url": {url.Values{"client_id": {vendorApp}, "client_secret": {"x"}}, "", ""},
			"public with a secret":       {url.Values{"client_id": {sampleApp}, "client_secret": {"x"}}, "", ""},
		} {
			t.Run(name, func(t *testing.T) {
				c.form.Set("grant_type", "authorization_code")
				c.form.Set("code", "whatever")
				status, h, body := e.tokenRequest(t, c.form, c.user, c.pass)
				noStore(t, h)
				if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
					t.Fatalf("%d %v: want 401 invalid_client", status, body)
				}
			})
		}
	})
	t.Run("confidential client end to end", func(t *testing.T) {
		res := e.run(t, flow{params: url.Values{"client_id": {vendorApp}, "redirect_uri": {e.vendorRedirect}}})
		form := url.Values{"grant_type": {"authorization_code"}, "code": {res.at.Query().Get("code")},
			"redirect_uri": {res.redirect}, "code_verifier": {res.verifier}}
		status, h, body := e.tokenRequest(t, form, vendorApp, vendorSecret)
		noStore(t, h)
		if status != http.StatusOK || body["access_token"] == nil {
			t.Fatalf("%d %v", status, body)
		}
	})
	t.Run("unsupported grant", func(t *testing.T) {
		status, h, body := e.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {sampleApp}}, "", "")
		noStore(t, h)
		if status != 400 || body["error"] != "unsupported_grant_type" {
			t.Fatalf("%d %v", status, body)
		}
	})
}
