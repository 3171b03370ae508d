package ehr_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/internal/browser"
)

// governedEnv is an EHR AS that also governs two other FHIR servers
// (direction C): an imaging server where patient p1 is "img-9", and a lab
// server where nobody resolves. Both publish the EHR AS's discovery.
func governedEnv(t *testing.T) (e *env, imaging, lab string) {
	t.Helper()
	e = newEnv(t, func(c *ehr.Config) {
		origin := strings.TrimSuffix(c.Issuer, "/auth")
		c.Governed = []ehr.Governed{
			{Name: "Northside Imaging", FHIRBase: origin + "/imaging/fhir", ResolvePatient: func(_ context.Context, id string) (string, bool) {
				return map[string]string{"p1": "img-9"}[id], id == "p1"
			}},
			{Name: "Lab", FHIRBase: origin + "/lab/fhir"},
		}
	})
	return e, e.ts.URL + "/imaging/fhir", e.ts.URL + "/lab/fhir"
}

func TestMultiAudienceToken(t *testing.T) {
	e, imaging, lab := governedEnv(t)
	mux := http.NewServeMux()
	mux.Handle("GET /imaging/fhir/.well-known/smart-configuration", e.srv.GovernedDiscovery())
	e.srv.Mount(mux)
	e.ts.Config.Handler = mux

	t.Run("both discovery documents name the same AS and auth-multi-aud-token", func(t *testing.T) {
		var docs [2]struct {
			Issuer                string
			AuthorizationEndpoint string `json:"authorization_endpoint"`
			TokenEndpoint         string `json:"token_endpoint"`
			Capabilities          []string
		}
		for i, base := range []string{e.cfg.FHIRBase, imaging} {
			resp, err := http.Get(base + "/.well-known/smart-configuration")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&docs[i])
			resp.Body.Close()
			if !slices.Contains(docs[i].Capabilities, ehr.CapabilityMultiAud) {
				t.Errorf("%s: capabilities lack %s", base, ehr.CapabilityMultiAud)
			}
		}
		if docs[0].TokenEndpoint == "" || docs[0].TokenEndpoint != docs[1].TokenEndpoint || docs[0].AuthorizationEndpoint != docs[1].AuthorizationEndpoint {
			t.Errorf("endpoints differ: %+v vs %+v", docs[0], docs[1])
		}
	})

	authorizeWith := func(t *testing.T, params url.Values, user, patient string) (*oauth2.Token, string) {
		t.Helper()
		cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "launch/patient", "patient/*.rs", "user/*.rs")
		v := oauth2.GenerateVerifier()
		q := url.Values{"response_type": {"code"}, "client_id": {"public"}, "redirect_uri": {appCB}, "state": {"st-1"},
			"scope": {strings.Join(cfg.Scopes, " ")}, "code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"}}
		for k, vs := range params {
			q[k] = vs
		}
		b := e.browser()
		page, err := b.Get(t.Context(), e.ts.URL+"/auth/authorize?"+q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		consent := ""
		for i := 0; i < 6 && page.Redirect == nil; i++ {
			switch {
			case hasForm(page, "password"):
				f, _ := page.FormWith("password")
				page, err = b.Submit(t.Context(), f, browser.Submit{Set: map[string]string{"username": user, "password": "pw-" + user}})
			case hasForm(page, "patient"):
				f := &page.Forms[len(page.Forms)-1]
				page, err = b.Submit(t.Context(), f, browser.Submit{Set: map[string]string{"patient": patient}})
			case hasForm(page, "decision"):
				consent = page.Body
				f, _ := page.FormWith("decision")
				page, err = b.Submit(t.Context(), f, browser.Submit{Button: "decision=approve"})
			default:
				t.Fatalf("stuck on %s: %.300s", page.URL, page.Body)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if page.Redirect == nil {
			t.Fatal("no redirect to the app")
		}
		return exchange(t, e, cfg, page.Redirect, v), consent
	}

	t.Run("one token for the EHR and a governed server; fhirContext names both ids", func(t *testing.T) {
		tok, _ := authorizeWith(t, url.Values{"resource": {e.cfg.FHIRBase, imaging}}, "doc", "p1")
		if tok.Extra("patient") != "p1" {
			t.Fatalf("patient = %v", tok.Extra("patient"))
		}
		raw, _ := json.Marshal(tok.Extra("fhirContext"))
		var fc []ehr.FHIRContext
		json.Unmarshal(raw, &fc)
		want := ehr.FHIRContext{Type: "Patient", Identifier: &ehr.Identifier{System: "urn:ietf:rfc:3986", Value: imaging + "/Patient/img-9"}, Role: ehr.RoleLaunchFullURL}
		if !slices.ContainsFunc(fc, func(c ehr.FHIRContext) bool { return c.Reference == "Patient/p1" }) ||
			!slices.ContainsFunc(fc, func(c ehr.FHIRContext) bool {
				return c.Identifier != nil && *c.Identifier == *want.Identifier && c.Role == want.Role && c.Type == "Patient"
			}) {
			t.Fatalf("fhirContext %s: want Patient/p1 and the imaging full URL", raw)
		}
		at, err := e.srv.VerifyAccess(t.Context(), tok.AccessToken)
		if err != nil || at.Patient() != "p1" {
			t.Fatalf("EHR: %v, patient %q", err, at.Patient())
		}
		if len(at.Audience) != 2 || at.Audience[0] != e.cfg.FHIRBase || at.Audience[1] != imaging {
			t.Errorf("aud = %v, want both servers", at.Audience)
		}
		img, err := e.srv.VerifyAccessAt(imaging)(t.Context(), tok.AccessToken)
		if err != nil {
			t.Fatalf("imaging refused the token: %v", err)
		}
		if img.Patient() != "img-9" || img.EncounterID != "" {
			t.Errorf("at imaging the token is confined to %q (encounter %q), want img-9", img.Patient(), img.EncounterID)
		}
		// A third server, governed too but not in aud, rejects it; so does
		// any base this AS does not govern.
		if _, err := e.srv.VerifyAccessAt(lab)(t.Context(), tok.AccessToken); err == nil {
			t.Error("lab accepted a token whose aud does not name it")
		}
		if _, err := e.srv.VerifyAccessAt("http://elsewhere.test/fhir")(t.Context(), tok.AccessToken); err == nil {
			t.Error("an ungoverned server accepted the token")
		}
	})

	t.Run("aud may be omitted; a patient not found there gets no patient data there", func(t *testing.T) {
		tok, consent := authorizeWith(t, url.Values{"resource": {e.cfg.FHIRBase, lab}}, "doc", "p1")
		if !strings.Contains(consent, "data it does not hold") || !strings.Contains(consent, "Lab (") {
			t.Errorf("consent page does not say the EHR grants access to the lab's data: %.600s", consent)
		}
		raw, _ := json.Marshal(tok.Extra("fhirContext"))
		if strings.Contains(string(raw), lab) {
			t.Errorf("fhirContext names an unresolved patient: %s", raw)
		}
		a, err := e.srv.VerifyAccessAt(lab)(t.Context(), tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if a.Patient() != "" || a.PatientID != "" {
			t.Errorf("lab: confined to %q (%q), want no patient there", a.Patient(), a.PatientID)
		}
		if _, err := e.srv.VerifyAccessAt(imaging)(t.Context(), tok.AccessToken); err == nil {
			t.Error("imaging accepted a token for the EHR and the lab")
		}
	})

	t.Run("refusals", func(t *testing.T) {
		cfg := e.oauth("public", "", oauth2.AuthStyleInParams, "patient/*.rs")
		for _, tc := range []struct {
			name   string
			params url.Values
			want   string
		}{
			{"resource neither governed nor a partner's", url.Values{"aud": {e.cfg.FHIRBase}, "resource": {"http://elsewhere.test/fhir"}}, "invalid_target"},
			{"aud names an ungoverned server", url.Values{"aud": {"http://elsewhere.test/fhir"}}, "invalid_request"},
			{"neither aud nor a governed resource", url.Values{"resource": {"http://other.test/fhir"}}, "invalid_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())}
				for k, vs := range tc.params {
					for _, v := range vs {
						opts = append(opts, oauth2.SetAuthURLParam(k, v))
					}
				}
				u := cfg.AuthCodeURL("st-1", opts...)
				// oauth2 keeps one value per key: add repeated resources by hand.
				pu, _ := url.Parse(u)
				q := pu.Query()
				q["resource"] = tc.params["resource"]
				pu.RawQuery = q.Encode()
				page, err := e.browser().Get(t.Context(), pu.String())
				if err != nil {
					t.Fatal(err)
				}
				if page.Redirect == nil || page.Redirect.Query().Get("error") != tc.want {
					t.Fatalf("got %v, want error=%s", page.Redirect, tc.want)
				}
			})
		}
	})
}
