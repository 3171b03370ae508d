package ehr_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/browser"
)

type users map[string]ehr.User

func (u users) Authenticate(ctx context.Context, name, pw string) (ehr.User, error) {
	if usr, ok := u[name]; ok && pw == "pw-"+name {
		return usr, nil
	}
	return ehr.User{}, ehr.ErrNotFound
}

func (u users) Lookup(ctx context.Context, name string) (ehr.User, error) {
	if usr, ok := u[name]; ok {
		return usr, nil
	}
	return ehr.User{}, ehr.ErrNotFound
}

type patients struct{}

var patientList = []ehr.PatientSummary{{ID: "p1", Name: "Ada Lovelace", BirthDate: "1815-12-10"}, {ID: "p2", Name: "Alan Turing"}}

func (patients) Patient(ctx context.Context, id string) (ehr.PatientSummary, error) {
	for _, p := range patientList {
		if p.ID == id {
			return p, nil
		}
	}
	return ehr.PatientSummary{}, ehr.ErrNotFound
}
func (patients) SearchPatients(ctx context.Context, text string, limit int) ([]ehr.PatientSummary, error) {
	return patientList, nil
}
func (patients) Encounters(ctx context.Context, id string) ([]ehr.Encounter, error) {
	if id == "p1" {
		return []ehr.Encounter{{ID: "e1", Label: "Visit 1"}, {ID: "e2", Label: "Visit 2"}}, nil
	}
	return nil, nil
}

var testUsers = users{
	"doc":  {Username: "doc", DisplayName: "Dr Who", FHIRUser: "Practitioner/pr1", Kind: ehr.Clinician},
	"pat":  {Username: "pat", DisplayName: "Ada", FHIRUser: "Patient/p1", Kind: ehr.PatientUser, PatientID: "p1"},
	"nurs": {Username: "nurs", DisplayName: "Nurse", FHIRUser: "Practitioner/pr2", Kind: ehr.Clinician},
}

const appCB = "http://app.test/cb"

type env struct {
	t       testing.TB
	srv     *ehr.Server
	ts      *httptest.Server
	cfg     ehr.Config
	clock   *clock
	ecKey   *ecdsa.PrivateKey
	partner *ecdsa.PrivateKey
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func jwksOf(t testing.TB, k *ecdsa.PrivateKey, kid string) json.RawMessage {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: kid, Algorithm: "ES384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEnv(t testing.TB, mutate func(*ehr.Config)) *env {
	t.Helper()
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pk, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ck := &clock{now: time.Now()}
	cfg := ehr.Config{
		Issuer: ts.URL + "/auth", FHIRBase: ts.URL + "/fhir", Origin: ts.URL, OrgName: "General Hospital",
		Others:   []ehr.Org{{Name: "Regional Lab", FHIRBase: "http://other.test/fhir", Capabilities: []string{"launch-standalone"}}},
		Users:    testUsers,
		Patients: patients{},
		Clients: []authkit.Client{
			{ID: "public", AuthMethod: authkit.AuthNone, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code", "refresh_token"}, SoftwareID: "sw-1", Name: "Public App", LaunchURI: "http://app.test/launch"},
			{ID: "secret", Secret: "s3cret", AuthMethod: authkit.AuthSecretBasic, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code", "refresh_token"}},
			{ID: "post", Secret: "s3cret", AuthMethod: authkit.AuthSecretPost, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code"}},
			{ID: "asym", AuthMethod: authkit.AuthPrivateKeyJWT, JWKS: jwksOf(t, ec, "k1"), RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code", "client_credentials", "refresh_token"}, Scope: "system/*.rs launch openid fhirUser patient/*.rs offline_access launch/patient"},
		},
		Partners: []ehr.Partner{{Issuer: "http://other.test/auth", FHIRBase: "http://other.test/fhir", ClientID: "otheras", JWKS: jwksOf(t, pk, "pk1")}},
		Now:      ck.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := ehr.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.Mount(mux)
	return &env{t: t, srv: srv, ts: ts, cfg: cfg, clock: ck, ecKey: ec, partner: pk}
}

func (e *env) oauth(clientID, secret string, style oauth2.AuthStyle, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURL: appCB, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.ts.URL + "/auth/authorize", TokenURL: e.ts.URL + "/auth/token", AuthStyle: style},
	}
}

// assertion signs a private_key_jwt client assertion.
func assertion(t testing.TB, k *ecdsa.PrivateKey, kid, clientID, aud string, now time.Time, mutate func(*jwt.Claims)) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	c := jwt.Claims{Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: authkit.RandomString(8)}
	if mutate != nil {
		mutate(&c)
	}
	s, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authorize runs the browser through authorize until the app callback.
func (e *env) authorize(b *browser.Browser, cfg *oauth2.Config, verifier string, extra ...oauth2.AuthCodeOption) (*url.URL, *browser.Page) {
	e.t.Helper()
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", e.cfg.FHIRBase), oauth2.SetAuthURLParam("nonce", "n-1")}, extra...)
	page, err := b.Get(context.Background(), cfg.AuthCodeURL("st-1", opts...))
	if err != nil {
		e.t.Fatal(err)
	}
	return page.Redirect, page
}

func (e *env) browser() *browser.Browser { return browser.New(nil, appCB) }

// fill walks login / picker / consent pages until the app callback.
func fill(t testing.TB, b *browser.Browser, page *browser.Page, user, patient string, decision string) *url.URL {
	t.Helper()
	page, err := b.Walk(context.Background(), page,
		browser.Step{Field: "password", Submit: browser.Submit{Set: map[string]string{"username": user, "password": "pw-" + user}}},
		browser.Step{Field: "encounter"},
		browser.Step{Field: "patient", Submit: browser.Submit{Set: map[string]string{"patient": patient}}},
		browser.Step{Field: "decision", Submit: browser.Submit{Button: "decision=" + decision}})
	if err != nil {
		t.Fatalf("no redirect to app: %v: %.300s", err, page.Body)
	}
	return page.Redirect
}

func hasForm(p *browser.Page, name string) bool { return p.HasPostField(name) }

func postForm(t testing.TB, u string, v url.Values, basicUser, basicPass string, bearer string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}
