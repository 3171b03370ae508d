package scenarios_test

import (
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/scenarios"
)

type smartConfig struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	Capabilities          []string `json:"capabilities"`
}

func discover(t *testing.T, fhirBase string) smartConfig {
	t.Helper()
	var c smartConfig
	if code := getJSON(t, fhirBase+"/.well-known/smart-configuration", "", &c); code != 200 {
		t.Fatalf("discovery at %s: %d", fhirBase, code)
	}
	return c
}

// authorize drives the user through the pages of one authorization (login
// when asked, consent) and returns the app's redirect.
func authorize(t *testing.T, b *browser.Browser, authURL, username, decision string) *url.URL {
	t.Helper()
	ctx := t.Context()
	page, err := b.Get(ctx, authURL)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if page.Redirect != nil {
			return page.Redirect
		}
		switch {
		case hasField(page, "password"):
			f, _ := page.FormWith("password")
			page, err = b.Submit(ctx, f, browser.Submit{Set: map[string]string{"username": username, "password": "smart"}})
		case hasField(page, "decision"):
			f, _ := page.FormWith("decision")
			page, err = b.Submit(ctx, f, browser.Submit{Button: "decision=" + decision})
		default:
			t.Fatalf("unexpected page %q (status %d): %.600s", page.Title, page.Status, page.Body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("authorization did not end at the app")
	return nil
}

func hasField(p *browser.Page, name string) bool {
	_, ok := p.FormWith(name)
	return ok
}

// standaloneAtOther runs a standalone launch at OtherAS with user scopes.
func standaloneAtOther(t *testing.T, r *scenarios.Running, user string, scopes ...string) *oauth2.Token {
	t.Helper()
	ready := r.Ready()
	sc := discover(t, ready.OtherFHIR)
	redirect := ready.Console + "/sample-app/callback"
	conf := &oauth2.Config{ClientID: "sim-sample-app", RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: sc.AuthorizationEndpoint, TokenURL: sc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	v := oauth2.GenerateVerifier()
	u := authorize(t, browser.New(nil, redirect), conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v),
		oauth2.SetAuthURLParam("aud", ready.OtherFHIR)), user, "approve")
	if u.Query().Get("iss") != sc.Issuer {
		t.Fatalf("Other redirect iss = %q, want %q", u.Query().Get("iss"), sc.Issuer)
	}
	tok, err := conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("Other token: %v", err)
	}
	return tok
}

// secondLaunch runs the launch at OtherAS with the EHR's launch-token.
func secondLaunch(t *testing.T, r *scenarios.Running, launchToken, decision string, scopes ...string) (*url.URL, *oauth2.Config, string) {
	t.Helper()
	ready := r.Ready()
	sc := discover(t, ready.OtherFHIR)
	redirect := ready.Console + "/sample-app/callback"
	conf := &oauth2.Config{ClientID: "sim-sample-app", RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: sc.AuthorizationEndpoint, TokenURL: sc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	v := oauth2.GenerateVerifier()
	u := authorize(t, browser.New(nil, redirect), conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(v),
		oauth2.SetAuthURLParam("launch", launchToken), oauth2.SetAuthURLParam("aud", ready.OtherFHIR)), "", decision)
	return u, conf, v
}

func patientOfClass(t *testing.T, w scenarios.WorldView, class string) scenarios.PatientView {
	t.Helper()
	for _, p := range w.Patients {
		if p.Class == class {
			return p
		}
	}
	t.Fatalf("no patient of class %s", class)
	return scenarios.PatientView{}
}

func TestLaunchTokenFlowAcrossBothServers(t *testing.T) {
	r := sharedWorld(t)
	w := world(t, r)
	ready := r.Ready()

	t.Run("shared patient: data from both servers", func(t *testing.T) {
		p := patientOfClass(t, w, "shared")
		ehrTok := ehrLaunch(t, r, p.EHRID, "dr.smith", "launch-token")
		lt, _ := ehrTok.Extra("launch_token").(string)
		if lt == "" {
			t.Fatal("EHR token response has no launch_token")
		}
		if code := getJSON(t, ready.EHRFHIR+"/Patient/"+p.EHRID, lt, nil); code != 401 {
			t.Fatalf("launch-token as a bearer at the EHR: %d, want 401", code)
		}
		u, conf, v := secondLaunch(t, r, lt, "approve", "launch", "patient/*.rs", "user/Practitioner.rs")
		if u.Query().Get("code") == "" {
			t.Fatalf("second launch ended with %s", u.Query().Get("error"))
		}
		tok, err := conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Extra("patient"); got != *p.OtherID {
			t.Fatalf("Other token patient = %v, want the Other id %s", got, *p.OtherID)
		}
		if !strings.Contains(tok.Extra("scope").(string), "patient/") {
			t.Fatalf("patient scopes not granted for a shared patient: %v", tok.Extra("scope"))
		}
		var pat struct{ ID string }
		if code := getJSON(t, ready.OtherFHIR+"/Patient/"+*p.OtherID, tok.AccessToken, &pat); code != 200 || pat.ID != *p.OtherID {
			t.Fatalf("read Other patient with the Other token: %d %q", code, pat.ID)
		}
		var studies struct{ Total int }
		if code := getJSON(t, ready.OtherFHIR+"/ImagingStudy?patient="+*p.OtherID, tok.AccessToken, &studies); code != 200 {
			t.Fatalf("search Other imaging: %d", code)
		}
		if code := getJSON(t, ready.EHRFHIR+"/Patient/"+p.EHRID, tok.AccessToken, nil); code != 401 {
			t.Fatalf("Other token at the EHR: %d, want 401", code)
		}
		if code := getJSON(t, ready.OtherFHIR+"/Patient/"+*p.OtherID, ehrTok.AccessToken, nil); code != 401 {
			t.Fatalf("EHR token at Other: %d, want 401", code)
		}
		// The launch-token is single-use.
		u, _, _ = secondLaunch(t, r, lt, "approve", "launch", "patient/*.rs")
		if u.Query().Get("error") != "invalid_request" {
			t.Fatalf("replayed launch-token: %s, want error=invalid_request", u.RawQuery)
		}
	})

	for _, class := range []string{"absent", "other_id_only", "ambiguous"} {
		t.Run(class+" patient: patient scopes refused, user scopes granted", func(t *testing.T) {
			p := patientOfClass(t, w, class)
			ehrTok := ehrLaunch(t, r, p.EHRID, "dr.smith", "launch-token")
			lt, _ := ehrTok.Extra("launch_token").(string)
			u, conf, v := secondLaunch(t, r, lt, "approve", "launch", "patient/*.rs", "user/Practitioner.rs")
			tok, err := conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(v))
			if err != nil {
				t.Fatalf("token: %v (redirect %s)", err, u.RawQuery)
			}
			scope, _ := tok.Extra("scope").(string)
			if strings.Contains(scope, "patient/") || !strings.Contains(scope, "user/Practitioner.rs") {
				t.Fatalf("granted scope %q: want patient scopes refused and user scopes kept", scope)
			}
			if tok.Extra("patient") != nil {
				t.Fatalf("patient %v in the token response of an unmatched patient", tok.Extra("patient"))
			}
		})
	}

	t.Run("only patient scopes for an absent patient: access_denied", func(t *testing.T) {
		p := patientOfClass(t, w, "absent")
		lt, _ := ehrLaunch(t, r, p.EHRID, "dr.smith", "launch-token").Extra("launch_token").(string)
		u, _, _ := secondLaunch(t, r, lt, "approve", "launch", "patient/*.rs")
		if u.Query().Get("error") != "access_denied" {
			t.Fatalf("redirect %s, want error=access_denied", u.RawQuery)
		}
	})

	t.Run("the trace shows OtherAS introspecting at the EHR", func(t *testing.T) {
		var body struct {
			Flows []struct {
				Events []struct {
					From, To, Label, Decision string
				}
			}
		}
		getJSON(t, ready.API+"/traces", "", &body)
		var introspect, refusal bool
		for _, f := range body.Flows {
			for _, e := range f.Events {
				if e.From == "OtherAS" && e.To == "EHR AS" && strings.Contains(e.Label, "introspect") {
					introspect = true
				}
				if e.From == "OtherAS" && strings.Contains(e.Decision, "refused") {
					refusal = true
				}
			}
		}
		if !introspect || !refusal {
			t.Fatalf("trace: introspection recorded %v, refusal recorded %v; want both", introspect, refusal)
		}
	})
}

func TestPortalUsersCannotSignInAtOther(t *testing.T) {
	r := sharedWorld(t)
	ready := r.Ready()
	sc := discover(t, ready.OtherFHIR)
	redirect := ready.Console + "/sample-app/callback"
	conf := &oauth2.Config{ClientID: "sim-sample-app", RedirectURL: redirect, Scopes: []string{"user/Patient.rs"},
		Endpoint: oauth2.Endpoint{AuthURL: sc.AuthorizationEndpoint, TokenURL: sc.TokenEndpoint}}
	b := browser.New(nil, redirect)
	page, err := b.Get(t.Context(), conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("aud", ready.OtherFHIR)))
	if err != nil {
		t.Fatal(err)
	}
	f, ok := page.FormWith("password")
	if !ok {
		t.Fatalf("no login page at Other: %.300s", page.Body)
	}
	page, err = b.Submit(t.Context(), f, browser.Submit{Set: map[string]string{"username": "patient.shared", "password": "smart"}})
	if err != nil {
		t.Fatal(err)
	}
	if page.Redirect != nil || !hasField(page, "password") {
		t.Fatalf("portal user signed in at Other: redirect %v, page %q", page.Redirect, page.Title)
	}
}

// A patient who opens the app from the portal shares their own record at
// Other, and nothing more.
func TestPortalPatientLaunchSharesOnlyTheirOwnRecordAtOther(t *testing.T) {
	r := sharedWorld(t)
	w := world(t, r)
	var patientID string
	for _, u := range w.Users {
		if u.Username == "patient.shared" {
			patientID = u.FHIRUser[strings.LastIndex(u.FHIRUser, "/")+1:]
		}
	}
	var truth scenarios.PatientView
	for _, p := range w.Patients {
		if p.EHRID == patientID {
			truth = p
		}
	}
	if truth.Class != "shared" || truth.OtherID == nil {
		t.Fatalf("patient.shared's record %s is not a shared patient: %+v", patientID, truth)
	}
	lt, _ := ehrLaunch(t, r, patientID, "patient.shared", "launch-token").Extra("launch_token").(string)
	u, conf, v := secondLaunch(t, r, lt, "approve", "launch", "openid", "fhirUser", "patient/*.rs", "user/*.rs")
	tok, err := conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("token: %v (redirect %s)", err, u.RawQuery)
	}
	scope, _ := tok.Extra("scope").(string)
	if !strings.Contains(scope, "patient/*.rs") || strings.Contains(scope, "user/") {
		t.Fatalf("granted %q: want the patient's own record only", scope)
	}
	if tok.Extra("patient") != *truth.OtherID {
		t.Fatalf("patient %v, want %s", tok.Extra("patient"), *truth.OtherID)
	}
	ready := r.Ready()
	if code := getJSON(t, ready.OtherFHIR+"/Patient?_count=5", tok.AccessToken, nil); code != 200 {
		t.Fatalf("search own compartment: %d", code)
	}
	var other scenarios.PatientView
	for _, p := range w.Patients {
		if p.Class == "shared" && p.EHRID != patientID {
			other = p
			break
		}
	}
	if code := getJSON(t, ready.OtherFHIR+"/Patient/"+*other.OtherID, tok.AccessToken, nil); code != 403 {
		t.Fatalf("another patient's Other record: %d, want 403", code)
	}
}
