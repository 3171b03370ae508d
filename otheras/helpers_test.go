package otheras_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/otheras"
)

const (
	thirdIssuer = "http://third.test/auth"
	thirdFHIR   = "http://third.test/fhir"
	appCB       = "http://app.test/cb"
	sysNID      = "urn:oid:2.16.840.1.113883.4.1" // shared national identifier
	sysEHRMRN   = "urn:sim:ehr:mrn"
	sysOthMRN   = "urn:sim:other:mrn"
)

// clock is a settable clock shared by both servers.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// --- EHR side directories ---

type ehrUsers map[string]ehr.User

func (u ehrUsers) Authenticate(_ context.Context, name, pw string) (ehr.User, error) {
	if usr, ok := u[name]; ok && pw == "pw-"+name {
		return usr, nil
	}
	return ehr.User{}, ehr.ErrNotFound
}

func (u ehrUsers) Lookup(_ context.Context, name string) (ehr.User, error) {
	if usr, ok := u[name]; ok {
		return usr, nil
	}
	return ehr.User{}, ehr.ErrNotFound
}

type ehrPatient struct {
	ID, Family, Given, BirthDate string
	Identifiers                  []otheras.Identifier
}

// The EHR directory: one patient per match class.
var ehrPatients = []ehrPatient{
	{ID: "p-shared", Family: "Lovelace", Given: "Ada", BirthDate: "1815-12-10", Identifiers: []otheras.Identifier{{System: sysEHRMRN, Value: "M1"}, {System: sysNID, Value: "N1"}}},
	{ID: "p-absent", Family: "Turing", Given: "Alan", BirthDate: "1912-06-23", Identifiers: []otheras.Identifier{{System: sysEHRMRN, Value: "M2"}, {System: sysNID, Value: "N2"}}},
	{ID: "p-otheronly", Family: "Hopper", Given: "Grace", BirthDate: "1906-12-09", Identifiers: []otheras.Identifier{{System: sysEHRMRN, Value: "M3"}}},
	{ID: "p-ambiguous", Family: "Noether", Given: "Emmy", BirthDate: "1882-03-23", Identifiers: []otheras.Identifier{{System: sysEHRMRN, Value: "M4"}, {System: sysNID, Value: "N4"}}},
	{ID: "p-namediff", Family: "Curie", Given: "Marie", BirthDate: "1867-11-07", Identifiers: []otheras.Identifier{{System: sysNID, Value: "N5"}}},
}

type ehrDirectory struct{}

func findEHR(id string) (ehrPatient, bool) {
	for _, p := range ehrPatients {
		if p.ID == id {
			return p, true
		}
	}
	return ehrPatient{}, false
}

func (ehrDirectory) Patient(_ context.Context, id string) (ehr.PatientSummary, error) {
	if p, ok := findEHR(id); ok {
		return ehr.PatientSummary{ID: p.ID, Name: p.Given + " " + p.Family, BirthDate: p.BirthDate}, nil
	}
	return ehr.PatientSummary{}, ehr.ErrNotFound
}

func (d ehrDirectory) SearchPatients(ctx context.Context, _ string, _ int) ([]ehr.PatientSummary, error) {
	var out []ehr.PatientSummary
	for _, p := range ehrPatients {
		s, _ := d.Patient(ctx, p.ID)
		out = append(out, s)
	}
	return out, nil
}

func (ehrDirectory) Encounters(context.Context, string) ([]ehr.Encounter, error) { return nil, nil }

// --- Other side directories ---

type otherUsers map[string]otheras.User

func (u otherUsers) Authenticate(_ context.Context, name, pw string) (otheras.User, error) {
	if usr, ok := u[name]; ok && pw == "pw-"+name {
		return usr, nil
	}
	return otheras.User{}, otheras.ErrNotFound
}

func (u otherUsers) Lookup(_ context.Context, name string) (otheras.User, error) {
	if usr, ok := u[name]; ok {
		return usr, nil
	}
	return otheras.User{}, otheras.ErrNotFound
}

// memDirectory is the Other directory over a small in-memory set.
type memDirectory []otheras.PatientRecord

var otherRecords = memDirectory{
	{ID: "o-ada", Name: "Ada Lovelace", Family: "Lovelace", Given: []string{"Ada"}, BirthDate: "1815-12-10", Identifiers: []otheras.Identifier{{System: sysNID, Value: "N1"}, {System: sysOthMRN, Value: "X1"}}},
	{ID: "o-grace", Name: "Grace Hopper", Family: "Hopper", Given: []string{"Grace"}, BirthDate: "1906-12-09", Identifiers: []otheras.Identifier{{System: sysOthMRN, Value: "X3"}}},
	{ID: "o-emmy-1", Name: "Emmy Noether", Family: "Noether", BirthDate: "1882-03-23", Identifiers: []otheras.Identifier{{System: sysNID, Value: "N4"}}},
	{ID: "o-emmy-2", Name: "Emmy Noether", Family: "Noether", BirthDate: "1882-03-23", Identifiers: []otheras.Identifier{{System: sysNID, Value: "N4"}, {System: sysOthMRN, Value: "X4"}}},
	{ID: "o-marie", Name: "Marie Sklodowska", Family: "Sklodowska", BirthDate: "1867-11-07", Identifiers: []otheras.Identifier{{System: sysNID, Value: "N5"}}},
}

func (d memDirectory) FindByIdentifier(_ context.Context, system, value string) ([]otheras.PatientRecord, error) {
	var out []otheras.PatientRecord
	for _, r := range d {
		for _, id := range r.Identifiers {
			if id.System == system && id.Value == value {
				out = append(out, r)
				break
			}
		}
	}
	return out, nil
}

func (d memDirectory) Patient(_ context.Context, id string) (otheras.PatientRecord, error) {
	for _, r := range d {
		if r.ID == id {
			return r, nil
		}
	}
	return otheras.PatientRecord{}, otheras.ErrNotFound
}

func (d memDirectory) SearchPatients(_ context.Context, text string, limit int) ([]otheras.PatientRecord, error) {
	var out []otheras.PatientRecord
	for _, r := range d {
		if len(out) < limit && strings.Contains(strings.ToLower(r.Name), strings.ToLower(text)) {
			out = append(out, r)
		}
	}
	return out, nil
}

// world is a real EHR AS (+ a tiny EHR FHIR Patient endpoint) and a real
// OtherAS, each on its own httptest server.
type world struct {
	t        testing.TB
	clock    *clock
	rec      *trace.Recorder
	ehr      *ehr.Server
	ehrTS    *httptest.Server
	ehrCfg   ehr.Config
	other    *otheras.Server
	otherTS  *httptest.Server
	otherCfg otheras.Config

	backendTokens atomic.Int64 // client_credentials requests at the EHR AS
	fromOther     atomic.Int64 // every request OtherAS made to the EHR
	delay         atomic.Int64 // ns the EHR sleeps on OtherAS requests
}

func newWorld(t testing.TB, mutate func(*otheras.Config)) *world {
	t.Helper()
	w := &world{t: t, clock: &clock{now: time.Now()}}
	w.rec = trace.NewRecorder(500, nil)
	ehrMux, otherMux := http.NewServeMux(), http.NewServeMux()
	w.ehrTS = httptest.NewServer(w.ehrFront(ehrMux))
	t.Cleanup(w.ehrTS.Close)
	w.otherTS = httptest.NewServer(w.rec.Middleware(trace.OtherAS, func(*http.Request) trace.Party { return trace.User }, otherMux))
	t.Cleanup(w.otherTS.Close)

	w.otherCfg = otheras.Config{
		Issuer: w.otherTS.URL + "/auth", FHIRBase: w.otherTS.URL + "/fhir", Origin: w.otherTS.URL, OrgName: "Regional Lab",
		TrustedIssuers: []otheras.TrustedEHR{{Issuer: w.ehrTS.URL + "/auth", FHIRBase: w.ehrTS.URL + "/fhir", ClientID: "otheras"}},
		Directory:      otherRecords,
		Users:          otherUsers{"doc": {Username: "doc", DisplayName: "Dr Who", FHIRUser: "Practitioner/op1"}, "nurse": {Username: "nurse", DisplayName: "Nurse"}},
		MatchSystems:   []string{sysNID},
		Clients: []authkit.Client{
			{ID: "app-other", AuthMethod: authkit.AuthNone, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code", "refresh_token"}, SoftwareID: "sw-app", Name: "Chart App"},
			{ID: "evil-other", AuthMethod: authkit.AuthNone, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code"}, SoftwareID: "sw-evil", Name: "Other App"},
			{ID: "secret", Secret: "s3cret", AuthMethod: authkit.AuthSecretBasic, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code", "refresh_token"}, SoftwareID: "sw-conf"},
		},
		Timeout: 2 * time.Second,
		Now:     w.clock.Now,
		Trace:   w.rec,
	}
	if mutate != nil {
		mutate(&w.otherCfg)
	}
	other, err := otheras.New(context.Background(), w.otherCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	w.other = other
	other.Mount(otherMux)

	w.ehrCfg = ehr.Config{
		Issuer: w.ehrTS.URL + "/auth", FHIRBase: w.ehrTS.URL + "/fhir", Origin: w.ehrTS.URL, OrgName: "General Hospital",
		Users:    ehrUsers{"doc": {Username: "doc", DisplayName: "Dr Who", FHIRUser: "Practitioner/pr1", Kind: ehr.Clinician}},
		Patients: ehrDirectory{},
		Clients: []authkit.Client{
			{ID: "app", AuthMethod: authkit.AuthNone, RedirectURIs: []string{appCB}, GrantTypes: []string{"authorization_code"}, SoftwareID: "sw-app", Name: "Chart App", LaunchURI: "http://app.test/launch"},
		},
		Partners: []ehr.Partner{
			{Issuer: w.otherCfg.Issuer, FHIRBase: w.otherCfg.FHIRBase, ClientID: "otheras", JWKS: other.PublicJWKS()},
			{Issuer: thirdIssuer, FHIRBase: thirdFHIR, ClientID: "third", JWKS: other.PublicJWKS()},
		},
		Now: w.clock.Now,
	}
	e, err := ehr.New(context.Background(), w.ehrCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	w.ehr = e
	e.Mount(ehrMux)
	ehrMux.HandleFunc("GET /fhir/Patient/{id}", w.servePatient)
	return w
}

// ehrFront counts and (optionally) delays what OtherAS sends the EHR.
func (w *world) ehrFront(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get(trace.FromHeader) == string(trace.OtherAS) {
			w.fromOther.Add(1)
			if d := time.Duration(w.delay.Load()); d > 0 {
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
		}
		if r.Method == http.MethodPost && r.URL.Path == "/auth/token" {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			if v, _ := url.ParseQuery(string(b)); v.Get("grant_type") == "client_credentials" {
				w.backendTokens.Add(1)
			}
		}
		next.ServeHTTP(rw, r)
	})
}

// servePatient is a tiny EHR FHIR read guarded by the EHR AS's verifier.
func (w *world) servePatient(rw http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a, err := w.ehr.VerifyAccess(r.Context(), bearer)
	if !ok || err != nil {
		http.Error(rw, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !a.Allows("Patient", "read", nil) {
		http.Error(rw, "forbidden", http.StatusForbidden)
		return
	}
	p, found := findEHR(r.PathValue("id"))
	if !found {
		http.Error(rw, "not found", http.StatusNotFound)
		return
	}
	rw.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(rw).Encode(map[string]any{
		"resourceType": "Patient", "id": p.ID, "identifier": p.Identifiers,
		"name": []any{map[string]any{"family": p.Family, "given": []string{p.Given}}}, "birthDate": p.BirthDate,
	})
}

func (w *world) ehrOAuth(scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: "app", RedirectURL: appCB, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: w.ehrTS.URL + "/auth/authorize", TokenURL: w.ehrTS.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInParams}}
}

func (w *world) otherOAuth(clientID string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, RedirectURL: appCB, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: w.otherTS.URL + "/auth/authorize", TokenURL: w.otherTS.URL + "/auth/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// ehrLaunch runs an EHR launch for patient up to the token response and
// returns it (with its launch_token addressed to OtherAS).
func (w *world) ehrLaunch(t testing.TB, patient string) *oauth2.Token {
	t.Helper()
	return w.ehrLaunchFor(t, patient, w.otherCfg.FHIRBase)
}

// ehrLaunchFor names resource (RFC 8707) as the server the launch-token
// is for.
func (w *world) ehrLaunchFor(t testing.TB, patient, resource string) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	launchURL, err := w.ehr.NewLaunch(ctx, ehr.LaunchRequest{ClientID: "app", Patient: patient, User: "doc"})
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(launchURL)
	cfg := w.ehrOAuth("launch", "openid", "fhirUser", "patient/*.rs", "launch-token")
	v := oauth2.GenerateVerifier()
	b := browser.New(nil, appCB)
	page, err := b.Get(ctx, cfg.AuthCodeURL("ehr-state", oauth2.S256ChallengeOption(v),
		oauth2.SetAuthURLParam("aud", w.ehrCfg.FHIRBase), oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")),
		oauth2.SetAuthURLParam("resource", resource)))
	if err != nil {
		t.Fatal(err)
	}
	cb := walk(t, b, page, "doc", "", "approve", nil)
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if lt, _ := tok.Extra("launch_token").(string); lt == "" {
		t.Fatal("EHR token response has no launch_token")
	}
	return tok
}

// otherAuthorize starts the second launch; it returns the first page
// (consent, or the app callback on an error).
func (w *world) otherAuthorize(t testing.TB, b *browser.Browser, cfg *oauth2.Config, v, launch string) *browser.Page {
	t.Helper()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("aud", w.otherCfg.FHIRBase), oauth2.SetAuthURLParam("nonce", "n-2")}
	if launch != "" {
		opts = append(opts, oauth2.SetAuthURLParam("launch", launch))
	}
	page, err := b.Get(context.Background(), cfg.AuthCodeURL("other-state", opts...))
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// walk fills login / picker / consent pages until the app callback;
// consent (when not nil) receives the consent page.
func walk(t testing.TB, b *browser.Browser, page *browser.Page, user, patient, decision string, consent func(*browser.Page)) *url.URL {
	t.Helper()
	page, err := b.Walk(context.Background(), page,
		browser.Step{Field: "password", Submit: browser.Submit{Set: map[string]string{"username": user, "password": "pw-" + user}}},
		browser.Step{Field: "decision", Submit: browser.Submit{Button: "decision=" + decision}, Seen: consent},
		browser.Step{Field: "patient", Submit: browser.Submit{Set: map[string]string{"patient": patient}}})
	if err != nil {
		t.Fatalf("no redirect to app: %v: %.400s", err, page.Body)
	}
	return page.Redirect
}

func hasForm(p *browser.Page, name string) bool { return p.HasPostField(name) }

// secondLaunch runs the whole second launch for an EHR token and returns
// the Other token (nil with the callback when it failed).
func (w *world) secondLaunch(t testing.TB, ehrTok *oauth2.Token, clientID, decision string, consent func(*browser.Page), scopes ...string) (*oauth2.Token, *url.URL) {
	t.Helper()
	lt, _ := ehrTok.Extra("launch_token").(string)
	cfg := w.otherOAuth(clientID, scopes...)
	v := oauth2.GenerateVerifier()
	b := browser.New(nil, appCB)
	page := w.otherAuthorize(t, b, cfg, v, lt)
	if hasForm(page, "password") {
		t.Fatal("second launch showed a login page")
	}
	cb := walk(t, b, page, "doc", "", decision, consent)
	q := cb.Query()
	if q.Get("iss") != w.otherCfg.Issuer || q.Get("state") != "other-state" {
		t.Fatalf("callback lacks OtherAS iss/state: %s", cb.RawQuery)
	}
	if q.Get("code") == "" {
		return nil, cb
	}
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	return tok, cb
}
