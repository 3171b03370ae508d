package scenarios_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/fhirstore"
	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/scenarios"
)

func getJSON(t *testing.T, rawURL, bearer string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	req.Header.Set("Accept", "application/fhir+json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && len(body) > 0 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decode %q: %v", rawURL, body, err)
		}
	}
	return resp.StatusCode
}

func world(t *testing.T, r *scenarios.Running) scenarios.WorldView {
	t.Helper()
	var w scenarios.WorldView
	if code := getJSON(t, r.Ready().API+"/world?limit=100000", "", &w); code != 200 {
		t.Fatalf("GET /world: %d", code)
	}
	return w
}

func TestWorldTruthMatchesOtherDirectory(t *testing.T) {
	r := sharedWorld(t)
	w := world(t, r)
	if w.Total != len(w.Patients) || w.Total == 0 {
		t.Fatalf("patients = %d of total %d", len(w.Patients), w.Total)
	}
	shared := scenarios.DefaultWorld().SharedIdentifierSystem
	otherToken := standaloneAtOther(t, r, "dr.smith", "user/Patient.rs").AccessToken
	seen := map[string]int{}
	for _, p := range w.Patients {
		seen[p.Class]++
		if seen[p.Class] > 3 { // three of each class is enough to show the rule
			continue
		}
		var sid string
		for _, id := range p.Identifiers {
			if id.System == shared {
				sid = id.Value
			}
		}
		var bundle struct {
			Total int `json:"total"`
			Entry []struct {
				Resource struct {
					ID string `json:"id"`
				} `json:"resource"`
			} `json:"entry"`
		}
		q := url.Values{"identifier": {shared + "|" + sid}}
		if code := getJSON(t, r.Ready().OtherFHIR+"/Patient?"+q.Encode(), otherToken, &bundle); code != 200 {
			t.Fatalf("search Other by shared identifier: %d", code)
		}
		var found []string
		for _, e := range bundle.Entry {
			found = append(found, e.Resource.ID)
		}
		switch p.Class {
		case "shared":
			if p.OtherID == nil || len(found) != 1 || found[0] != *p.OtherID {
				t.Errorf("%s (shared): search finds %v, truth other_id %v", p.EHRID, found, p.OtherID)
			}
		case "ambiguous":
			if p.OtherID != nil || len(found) != 2 || len(p.OtherRecords) != 2 {
				t.Errorf("%s (ambiguous): search finds %v, truth %v", p.EHRID, found, p.OtherRecords)
			}
		case "other_id_only", "absent":
			if p.OtherID != nil || len(found) != 0 {
				t.Errorf("%s (%s): search finds %v, want none", p.EHRID, p.Class, found)
			}
			if want := map[string]int{"other_id_only": 1, "absent": 0}[p.Class]; len(p.OtherRecords) != want {
				t.Errorf("%s (%s): other_records %v, want %d", p.EHRID, p.Class, p.OtherRecords, want)
			}
		default:
			t.Errorf("%s: unknown class %q", p.EHRID, p.Class)
		}
	}
	for _, c := range []string{"shared", "other_id_only", "ambiguous", "absent"} {
		if seen[c] == 0 || seen[c] != w.Classes[c] {
			t.Errorf("class %s: %d patients listed, classes says %d", c, seen[c], w.Classes[c])
		}
	}
}

func TestWorldPaging(t *testing.T) {
	r := sharedWorld(t)
	var all, page scenarios.WorldView
	getJSON(t, r.Ready().API+"/world?limit=100000", "", &all)
	if code := getJSON(t, r.Ready().API+"/world?limit=5&offset=10", "", &page); code != 200 {
		t.Fatalf("paged world: %d", code)
	}
	if len(page.Patients) != 5 || page.Patients[0].EHRID != all.Patients[10].EHRID {
		t.Fatalf("page = %d patients starting %v, want 5 starting %s", len(page.Patients), page.Patients, all.Patients[10].EHRID)
	}
	if code := getJSON(t, r.Ready().API+"/world?limit=x", "", nil); code != 400 {
		t.Fatalf("limit=x: %d, want 400", code)
	}
}

// ehrLaunch runs an EHR launch of the sample app for patient as user,
// filling the real consent form, and returns the token response.
func ehrLaunch(t *testing.T, r *scenarios.Running, patient, user string, extraScopes ...string) *oauth2.Token {
	t.Helper()
	ctx := t.Context()
	ready := r.Ready()
	launchURL := ready.Console + "/sample-app/launch"
	redirect := ready.Console + "/sample-app/callback"
	body, _ := json.Marshal(map[string]string{"client_id": "sim-sample-app", "launch_url": launchURL, "patient": patient, "user": user})
	resp, err := http.Post(ready.API+"/launches", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var launched struct{ URL string }
	json.NewDecoder(resp.Body).Decode(&launched)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /launches: %d", resp.StatusCode)
	}
	lu, err := url.Parse(launched.URL)
	if err != nil || lu.Query().Get("iss") != ready.EHRFHIR || lu.Query().Get("launch") == "" {
		t.Fatalf("launch URL %q: want iss=%s and a launch", launched.URL, ready.EHRFHIR)
	}

	var smart struct {
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	getJSON(t, lu.Query().Get("iss")+"/.well-known/smart-configuration", "", &smart)
	conf := &oauth2.Config{
		ClientID:    "sim-sample-app",
		Endpoint:    oauth2.Endpoint{AuthURL: smart.AuthorizationEndpoint, TokenURL: smart.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirect,
		Scopes:      append([]string{"launch", "openid", "fhirUser", "offline_access", "patient/*.rs"}, extraScopes...),
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("launch", lu.Query().Get("launch")), oauth2.SetAuthURLParam("aud", ready.EHRFHIR))
	b := browser.New(nil, redirect)
	page, err := b.Get(ctx, authURL)
	if err != nil {
		t.Fatal(err)
	}
	form, ok := page.FormWith("decision")
	if !ok {
		t.Fatalf("no consent form (status %d): %.400s", page.Status, page.Body)
	}
	page, err = b.Submit(ctx, form, browser.Submit{Button: "decision=approve"})
	if err != nil || page.Redirect == nil {
		t.Fatalf("approve: %v, page %+v", err, page)
	}
	q := page.Redirect.Query()
	if q.Get("state") != "st-1" || q.Get("iss") != ready.EHRIssuer || q.Get("code") == "" {
		t.Fatalf("redirect %s: want state, iss and code", page.Redirect.Redacted())
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return tok
}

func TestEHRLaunchThenFHIRAccessIsEnforced(t *testing.T) {
	r := sharedWorld(t)
	w := world(t, r)
	patient := w.Patients[0].EHRID
	other := w.Patients[1].EHRID
	tok := ehrLaunch(t, r, patient, "dr.smith")
	if got := tok.Extra("patient"); got != patient {
		t.Fatalf("token patient = %v, want %s", got, patient)
	}
	base := r.Ready().EHRFHIR
	access := tok.AccessToken
	var p struct{ ID string }
	if code := getJSON(t, base+"/Patient/"+patient, access, &p); code != 200 || p.ID != patient {
		t.Fatalf("read own patient: %d %q", code, p.ID)
	}
	cases := []struct {
		name, path, bearer string
		want               int
	}{
		{"no token", "/Patient/" + patient, "", 401},
		{"garbage token", "/Patient/" + patient, "not-a-token", 401},
		{"other patient", "/Patient/" + other, access, 403},
		{"unknown id", "/Patient/does-not-exist", access, 404},
		{"compartment search", "/Observation?patient=" + patient, access, 200},
		{"search of another patient", "/Observation?patient=" + other, access, 403},
		{"metadata stays open", "/metadata", "", 200},
		{"token is not for Other", "", access, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := base + tc.path
			if tc.path == "" {
				u = r.Ready().OtherFHIR + "/Patient"
			}
			var oo struct{ ResourceType string }
			if code := getJSON(t, u, tc.bearer, &oo); code != tc.want {
				t.Fatalf("GET %s = %d, want %d", tc.path, code, tc.want)
			}
			if tc.want >= 400 && oo.ResourceType != "OperationOutcome" {
				t.Fatalf("error body is %q, want an OperationOutcome", oo.ResourceType)
			}
		})
	}
}

func TestLaunchAPIRefusesUnknownNames(t *testing.T) {
	r := sharedWorld(t)
	w := world(t, r)
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"unknown client", `{"client_id":"nope","patient":"` + w.Patients[0].EHRID + `","user":"dr.smith"}`, "unknown_client"},
		{"unknown patient", `{"client_id":"sim-sample-app","patient":"nope","user":"dr.smith"}`, "unknown_patient"},
		{"unknown user", `{"client_id":"sim-sample-app","patient":"` + w.Patients[0].EHRID + `","user":"nobody"}`, "unknown_user"},
		{"not JSON", `{`, "invalid_request"},
		{"unknown field", `{"client":"x"}`, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(r.Ready().API+"/launches", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != 400 || e.Error != tc.wantErr {
				t.Fatalf("status %d error %q, want 400 %q", resp.StatusCode, e.Error, tc.wantErr)
			}
		})
	}
}

func TestDataDirPersistsAndRefusesAnotherWorld(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	r, err := scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	first := world(t, r).Patients[0].EHRID
	tok := ehrLaunch(t, r, first, "dr.smith")
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ehr-fhir.db", "other-fhir.db", "ehr-auth.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("data file %s: %v", f, err)
		}
	}

	// Same world again: same data, and the refresh token issued before the
	// restart still works.
	r, err = scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := world(t, r).Patients[0].EHRID; got != first {
		t.Fatalf("after restart first patient %s, want %s", got, first)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}
	{
		var smart struct {
			TokenEndpoint string `json:"token_endpoint"`
		}
		getJSON(t, r.Ready().EHRFHIR+"/.well-known/smart-configuration", "", &smart)
		resp, err := http.PostForm(smart.TokenEndpoint, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"sim-sample-app"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("refresh after restart: %d, want 200", resp.StatusCode)
		}
	}
	r.Close(ctx)

	// Another world over the same data: a clear error, unless --reset.
	other := scenarios.DefaultWorld()
	other.Seed++
	if _, err := scenarios.Start(ctx, other, scenarios.Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "--reset") {
		t.Fatalf("start another world over the data: %v, want an error naming --reset", err)
	}
	r, err = scenarios.Start(ctx, other, scenarios.Options{DataDir: dir, Reset: true})
	if err != nil {
		t.Fatalf("start with reset: %v", err)
	}
	if got := world(t, r).Patients[0].EHRID; got == first {
		t.Fatalf("after reset with another seed the first patient is still %s", got)
	}
	r.Close(ctx)
}

// A store left by a start that stopped during its first load has no world
// fingerprint: the next start makes it anew instead of serving a partial
// directory (or one whose first load ran without fsync).
func TestDataDirHalfLoadedStoreIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	st, err := fhirstore.Open(ctx, fhirstore.Options{Path: filepath.Join(dir, "ehr-fhir.db")})
	if err != nil {
		t.Fatal(err)
	}
	leftover := json.RawMessage(`{"resourceType":"Patient","id":"leftover","name":[{"family":"Partial"}]}`)
	if err := st.Load(ctx, []json.RawMessage{leftover}, false); err != nil {
		t.Fatal(err)
	}
	st.Close()

	r, err := scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("start over a half-loaded store: %v", err)
	}
	defer r.Close(ctx)
	first := world(t, r).Patients[0].EHRID
	tok := ehrLaunch(t, r, first, "dr.smith")
	if code := getJSON(t, r.Ready().EHRFHIR+"/Patient/"+first, tok.AccessToken, nil); code != http.StatusOK {
		t.Fatalf("read of the world's patient: %d, want 200", code)
	}
	if code := getJSON(t, r.Ready().EHRFHIR+"/Patient/leftover", tok.AccessToken, nil); code != http.StatusNotFound {
		t.Fatalf("read of the half-loaded store's patient: %d, want 404 (the store is made anew)", code)
	}
}

// Two sims on one data directory would write the same stores: the second
// is refused while the first runs, and starts once it has stopped.
func TestDataDirIsLockedWhileInUse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	ctx := t.Context()
	first, err := scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "in use by another sim") {
		first.Close(ctx)
		t.Fatalf("second start on the same data directory: %v, want it refused as in use", err)
	}
	if _, err := scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir, Reset: true}); err == nil {
		first.Close(ctx)
		t.Fatal("a --reset start emptied a data directory another sim is using")
	}
	// The first still serves its data.
	if got := len(world(t, first).Patients); got == 0 {
		t.Fatal("the first sim lost its patients")
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := scenarios.Start(ctx, scenarios.DefaultWorld(), scenarios.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("start after the first stopped: %v", err)
	}
	second.Close(ctx)
}
