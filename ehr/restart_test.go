package ehr_test

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
)

// TestRefreshAfterRestartOnOtherPorts: a refresh token issued before a
// restart on other ports (same DataPath, new Issuer and FHIR bases) yields
// an access token for the servers' current bases, which the restarted
// server accepts; fhirContext full URLs name the current bases too.
func TestRefreshAfterRestartOnOtherPorts(t *testing.T) {
	data := filepath.Join(t.TempDir(), "ehr.db")
	govern := func(c *ehr.Config) {
		origin := strings.TrimSuffix(c.Issuer, "/auth")
		c.DataPath = data
		c.Governed = []ehr.Governed{
			{Name: "Lab", FHIRBase: origin + "/lab/fhir"},
			{Name: "Northside Imaging", FHIRBase: origin + "/imaging/fhir", ResolvePatient: func(_ context.Context, id string) (string, bool) {
				return map[string]string{"p1": "img-9"}[id], id == "p1"
			}},
		}
	}

	before := newEnv(t, govern)
	imaging := before.ts.URL + "/imaging/fhir"
	cfg := before.oauth("public", "", oauth2.AuthStyleInParams, "launch/patient", "patient/*.rs", "offline_access")
	v := oauth2.GenerateVerifier()
	b := before.browser()
	_, page := before.authorize(b, cfg, v, oauth2.SetAuthURLParam("resource", imaging))
	tok := exchange(t, before, cfg, fill(t, b, page, "doc", "p1", "approve"), v)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	if err := before.srv.Close(); err != nil {
		t.Fatal(err)
	}
	before.ts.Close()

	after := newEnv(t, govern)
	if after.ts.URL == before.ts.URL {
		t.Fatal("the restarted server has the same URL")
	}
	newImaging := after.ts.URL + "/imaging/fhir"
	st, body, _ := postForm(t, after.ts.URL+"/auth/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"public"},
	}, "", "", "")
	if st != 200 {
		t.Fatalf("refresh after the restart: %d %v", st, body)
	}
	at, _ := body["access_token"].(string)
	a, err := after.srv.VerifyAccess(t.Context(), at)
	if err != nil {
		t.Fatalf("the restarted server refuses its refreshed token: %v", err)
	}
	if want := []string{after.cfg.FHIRBase, newImaging}; !slices.Equal(a.Audience, want) {
		t.Errorf("aud = %v, want %v", a.Audience, want)
	}
	img, err := after.srv.VerifyAccessAt(newImaging)(t.Context(), at)
	if err != nil || img.Patient() != "img-9" {
		t.Fatalf("the governed server at its new base: %v, patient %v", err, img)
	}
	raw, _ := json.Marshal(body["fhirContext"])
	if !strings.Contains(string(raw), newImaging+"/Patient/img-9") || strings.Contains(string(raw), before.ts.URL) {
		t.Errorf("fhirContext %s: want the imaging full URL at its new base only", raw)
	}
	// The rotated token is a refresh token of the restarted server too.
	rt, _ := body["refresh_token"].(string)
	if st, body, _ := postForm(t, after.ts.URL+"/auth/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"public"},
	}, "", "", ""); st != 200 {
		t.Fatalf("second refresh: %d %v", st, body)
	}
}
