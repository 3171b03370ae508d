package scenarios_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/scenarios"
)

// launchFor creates an EHR launch of the sample app's launch URL for
// clientID (the app itself, or the broker's EHR registration).
func launchFor(t *testing.T, r *scenarios.Running, clientID, patient string) string {
	t.Helper()
	ready := r.Ready()
	body, _ := json.Marshal(map[string]string{"client_id": clientID, "launch_url": ready.Console + "/sample-app/launch", "patient": patient, "user": "dr.smith"})
	resp, err := http.Post(ready.API+"/launches", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var launched struct{ URL string }
	json.NewDecoder(resp.Body).Decode(&launched)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /launches for %s: %d", clientID, resp.StatusCode)
	}
	u, _ := url.Parse(launched.URL)
	return u.Query().Get("launch")
}

// authURL builds an authorization URL with repeatable parameters.
func authURL(conf *oauth2.Config, verifier string, params url.Values) string {
	u, _ := url.Parse(conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func startGovernedWorld(t *testing.T) *scenarios.Running {
	t.Helper()
	w, err := scenarios.ParseWorld("c.yaml", []byte("ehr: {patients: 40}\nother: {governed_by: ehr}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := scenarios.Start(t.Context(), w, scenarios.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// TestDirectionC: one token for both servers, issued by the EHR AS.
func TestDirectionC(t *testing.T) {
	r := startGovernedWorld(t)
	ready := r.Ready()
	w := world(t, r)
	if ready.OtherIssuer != "" || ready.BrokerIssuer != "" {
		t.Errorf("a governed world runs no OtherAS and no broker: %+v", ready)
	}
	ehrSC, otherSC := discover(t, ready.EHRFHIR), discover(t, ready.OtherFHIR)
	for _, sc := range []smartConfig{ehrSC, otherSC} {
		if sc.Issuer != ready.EHRIssuer || sc.TokenEndpoint != ehrSC.TokenEndpoint || !slices.Contains(sc.Capabilities, "auth-multi-aud-token") {
			t.Fatalf("discovery %+v: want the EHR AS with auth-multi-aud-token", sc)
		}
	}
	redirect := ready.Console + "/sample-app/callback"
	conf := &oauth2.Config{ClientID: "sim-sample-app", RedirectURL: redirect, Scopes: []string{"launch", "patient/*.rs"},
		Endpoint: oauth2.Endpoint{AuthURL: ehrSC.AuthorizationEndpoint, TokenURL: ehrSC.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	run := func(t *testing.T, p scenarios.PatientView, params url.Values) (*oauth2.Token, string) {
		t.Helper()
		params.Set("launch", launchFor(t, r, "sim-sample-app", p.EHRID))
		v := oauth2.GenerateVerifier()
		b := browser.New(nil, redirect)
		page, err := b.Get(t.Context(), authURL(conf, v, params))
		if err != nil {
			t.Fatal(err)
		}
		consent := page.Body
		f, ok := page.FormWith("decision")
		if !ok {
			t.Fatalf("no consent page: %v %.300s", page.Redirect, page.Body)
		}
		if page, err = b.Submit(t.Context(), f, browser.Submit{Button: "decision=approve"}); err != nil || page.Redirect == nil {
			t.Fatalf("approve: %v", err)
		}
		tok, err := conf.Exchange(t.Context(), page.Redirect.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		return tok, consent
	}

	t.Run("shared patient: one token reads both, each confined to its own id", func(t *testing.T) {
		p := patientOfClass(t, w, "shared")
		tok, consent := run(t, p, url.Values{"resource": {ready.EHRFHIR, ready.OtherFHIR}})
		if !strings.Contains(consent, "does not hold") || !strings.Contains(consent, r.World.Other.Name) {
			t.Errorf("the consent page does not say the EHR grants access to %s's data", r.World.Other.Name)
		}
		raw, _ := json.Marshal(tok.Extra("fhirContext"))
		wantFull := `"value":"` + ready.OtherFHIR + "/Patient/" + *p.OtherID + `"`
		if !strings.Contains(string(raw), `"reference":"Patient/`+p.EHRID+`"`) || !strings.Contains(string(raw), wantFull) || !strings.Contains(string(raw), "urn:sim:launch-full-url") {
			t.Fatalf("fhirContext %s: want the EHR patient by reference and the Other record by full URL", raw)
		}
		if code := getJSON(t, ready.EHRFHIR+"/Patient/"+p.EHRID, tok.AccessToken, nil); code != 200 {
			t.Errorf("EHR patient: %d", code)
		}
		if code := getJSON(t, ready.OtherFHIR+"/Patient/"+*p.OtherID, tok.AccessToken, nil); code != 200 {
			t.Errorf("Other record with the same token: %d", code)
		}
		// At Other the token is confined to the Other id, not the EHR id.
		if q := "/Patient/" + otherRecordOf(t, w, p); getJSON(t, ready.OtherFHIR+q, tok.AccessToken, nil) != 403 {
			t.Errorf("GET Other%s (another patient's record) was not refused with 403", q)
		}
	})

	t.Run("a server whose base is not in aud rejects the token", func(t *testing.T) {
		p := patientOfClass(t, w, "shared")
		tok, _ := run(t, p, url.Values{"aud": {ready.EHRFHIR}})
		if code := getJSON(t, ready.EHRFHIR+"/Patient/"+p.EHRID, tok.AccessToken, nil); code != 200 {
			t.Errorf("EHR: %d", code)
		}
		if code := getJSON(t, ready.OtherFHIR+"/Patient/"+*p.OtherID, tok.AccessToken, nil); code != 401 {
			t.Errorf("Other with an EHR-only token: %d, want 401", code)
		}
	})

	t.Run("a resource the AS does not govern: invalid_target", func(t *testing.T) {
		page, err := browser.New(nil, redirect).Get(t.Context(), authURL(conf, oauth2.GenerateVerifier(),
			url.Values{"resource": {ready.EHRFHIR, "http://127.0.0.1:1/fhir"}}))
		if err != nil {
			t.Fatal(err)
		}
		if page.Redirect == nil || page.Redirect.Query().Get("error") != "invalid_target" {
			t.Fatalf("got %v, want error=invalid_target", page.Redirect)
		}
	})
}

// otherRecordOf returns an Other record that is not p's: some other
// shared patient's.
func otherRecordOf(t *testing.T, w scenarios.WorldView, p scenarios.PatientView) string {
	t.Helper()
	for _, q := range w.Patients {
		if q.Class == "shared" && q.EHRID != p.EHRID && q.OtherID != nil {
			return *q.OtherID
		}
	}
	t.Fatal("no second shared patient")
	return ""
}

type brokerToken struct {
	AccessToken      string `json:"access_token"`
	Scope            string `json:"scope"`
	Patient          string `json:"patient"`
	AdditionalTokens []struct {
		Resource    string `json:"resource"`
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
		Patient     string `json:"patient"`
	} `json:"additional_tokens"`
	AdditionalTokenErrors []struct {
		Resource, Error string
	} `json:"additional_token_errors"`
}

// TestDirectionD: one launch at the broker gives a token per server.
func TestDirectionD(t *testing.T) {
	r := sharedWorld(t)
	ready := r.Ready()
	w := world(t, r)
	var sc smartConfig
	if code := getJSON(t, ready.BrokerIssuer+"/.well-known/smart-configuration", "", &sc); code != 200 || sc.Issuer != ready.BrokerIssuer {
		t.Fatalf("broker discovery: %d %+v", code, sc)
	}
	redirect := ready.Console + "/sample-app/callback"
	conf := &oauth2.Config{ClientID: "sim-sample-app", RedirectURL: redirect,
		Scopes:   []string{"launch", "openid", "fhirUser", "patient/*.rs", "user/*.rs"},
		Endpoint: oauth2.Endpoint{AuthURL: sc.AuthorizationEndpoint, TokenURL: sc.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	run := func(t *testing.T, p scenarios.PatientView) brokerToken {
		t.Helper()
		v := oauth2.GenerateVerifier()
		u := authorize(t, browser.New(nil, redirect), authURL(conf, v, url.Values{"launch": {launchFor(t, r, "sim-broker", p.EHRID)}}), "dr.smith", "approve")
		if u.Query().Get("iss") != ready.BrokerIssuer || u.Query().Get("code") == "" {
			t.Fatalf("broker redirect %s", u.RawQuery)
		}
		tok, err := conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		var bt brokerToken
		raw, _ := json.Marshal(map[string]any{"access_token": tok.AccessToken, "scope": tok.Extra("scope"), "patient": tok.Extra("patient"),
			"additional_tokens": tok.Extra("additional_tokens"), "additional_token_errors": tok.Extra("additional_token_errors")})
		json.Unmarshal(raw, &bt)
		return bt
	}

	t.Run("shared patient: a token per server, each accepted only by its server", func(t *testing.T) {
		p := patientOfClass(t, w, "shared")
		bt := run(t, p)
		if bt.Patient != p.EHRID || len(bt.AdditionalTokens) != 1 {
			t.Fatalf("broker token: %+v", bt)
		}
		ot := bt.AdditionalTokens[0]
		if ot.Resource != ready.OtherFHIR || ot.Patient != *p.OtherID || !strings.Contains(ot.Scope, "patient/") {
			t.Fatalf("Other token entry %+v: want patient %s with patient scopes", ot, *p.OtherID)
		}
		for _, c := range []struct {
			url, bearer string
			want        int
		}{
			{ready.EHRFHIR + "/Patient/" + p.EHRID, bt.AccessToken, 200},
			{ready.OtherFHIR + "/Patient/" + *p.OtherID, ot.AccessToken, 200},
			{ready.OtherFHIR + "/Patient/" + *p.OtherID, bt.AccessToken, 401},
			{ready.EHRFHIR + "/Patient/" + p.EHRID, ot.AccessToken, 401},
		} {
			if code := getJSON(t, c.url, c.bearer, nil); code != c.want {
				t.Errorf("GET %s: %d, want %d", c.url, code, c.want)
			}
		}
	})

	t.Run("absent patient: Other patient scopes refused through the broker", func(t *testing.T) {
		bt := run(t, patientOfClass(t, w, "absent"))
		if bt.AccessToken == "" || len(bt.AdditionalTokens) != 1 {
			t.Fatalf("broker token: %+v", bt)
		}
		if s := bt.AdditionalTokens[0].Scope; strings.Contains(s, "patient/") || !strings.Contains(s, "user/") {
			t.Fatalf("Other scope %q: want patient scopes refused, user scopes kept", s)
		}
		if !strings.Contains(bt.Scope, "patient/") {
			t.Errorf("EHR scope %q lost its patient scopes", bt.Scope)
		}
	})

	t.Run("the broker's code is single-use and bound to PKCE", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		u := authorize(t, browser.New(nil, redirect), authURL(conf, v, url.Values{"launch": {launchFor(t, r, "sim-broker", patientOfClass(t, w, "shared").EHRID)}}), "dr.smith", "approve")
		code := u.Query().Get("code")
		if _, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Fatal("a wrong code_verifier was accepted")
		}
		if _, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(v)); err == nil {
			t.Fatal("a used code was accepted")
		}
	})
}
