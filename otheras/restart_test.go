package otheras_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smart-sim/sim/otheras"
)

// TestRefreshAfterRestartOnOtherPorts: a refresh token issued before a
// restart on other ports (same DataPath, new Issuer and FHIR base, the
// trusted EHR moved too) yields an access token for the current Other
// FHIR base, which the restarted server accepts, and names the EHR
// patient under the EHR's current FHIR base.
func TestRefreshAfterRestartOnOtherPorts(t *testing.T) {
	data := filepath.Join(t.TempDir(), "otheras.db")
	w := newWorld(t, func(c *otheras.Config) { c.DataPath = data })
	tok, _ := w.secondLaunch(t, w.ehrLaunch(t, "p-shared"), "app-other", "approve", nil, fullScopes...)
	if tok == nil || tok.RefreshToken == "" {
		t.Fatal("no refresh token from the second launch")
	}
	if err := w.other.Close(); err != nil {
		t.Fatal(err)
	}
	w.otherTS.Close()

	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	const movedEHR = "http://ehr-moved.test"
	cfg := w.otherCfg
	cfg.Issuer, cfg.FHIRBase, cfg.Origin = ts.URL+"/auth", ts.URL+"/fhir", ts.URL
	cfg.TrustedIssuers = []otheras.TrustedEHR{{Issuer: movedEHR + "/auth", FHIRBase: movedEHR + "/fhir", ClientID: "otheras"}}
	cfg.Clients = append(cfg.Clients[:0:0], cfg.Clients...)
	srv, err := otheras.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.Mount(mux)

	resp, err := http.PostForm(ts.URL+"/auth/token", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app-other"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh after the restart: %d %v", resp.StatusCode, body)
	}
	at, _ := body["access_token"].(string)
	a, err := srv.VerifyAccess(t.Context(), at)
	if err != nil {
		t.Fatalf("the restarted server refuses its refreshed token: %v", err)
	}
	if len(a.Audience) != 1 || a.Audience[0] != cfg.FHIRBase || a.Patient() != "o-ada" {
		t.Errorf("aud %v patient %q, want [%s] o-ada", a.Audience, a.Patient(), cfg.FHIRBase)
	}
	raw, _ := json.Marshal(body["fhirContext"])
	if !strings.Contains(string(raw), `"`+movedEHR+`/fhir/Patient/p-shared"`) || strings.Contains(string(raw), w.ehrTS.URL) {
		t.Errorf("fhirContext %s: want the EHR patient under the EHR's current base", raw)
	}
}
