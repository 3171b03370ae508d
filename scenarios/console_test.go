package scenarios_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestConsolePages checks each console page of the real world over HTTP
// (no browser): status and key content.
func TestConsolePages(t *testing.T) {
	r := sharedWorld(t)
	ready := r.Ready()
	w := world(t, r)
	shared := patientOfClass(t, w, "shared")
	cases := []struct {
		path string
		want []string
	}{
		{"/", []string{ready.EHRFHIR, ready.OtherFHIR, "/.well-known/smart-configuration", "launch-token", "sim-sample-app", "dr.smith", ready.Console + "/sample-app/callback"}},
		{"/ehr", []string{`name="username"`}},
		{"/directories?class=shared", []string{"found once, Other record " + *shared.OtherID, "<svg"}},
		{"/directories?class=ambiguous", []string{"More than one match"}},
		{"/directories?class=other_id_only", []string{"only under its own MRN"}},
		{"/traces", []string{`data-stream="/traces/events"`, `href="/traces"`}},
		{"/scenarios", []string{"happy-path", `action="/scenarios/run"`}},
		{"/register", []string{`name="software_id"`}},
		{"/sample-app/launch", []string{"app.js"}},
	}
	for _, tc := range cases {
		resp, err := http.Get(ready.Console + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", tc.path, resp.StatusCode)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(string(body), want) {
				t.Errorf("%s lacks %q", tc.path, want)
			}
		}
	}
}

// TestConsoleRegistersAtBothServers registers an app from the console form
// and checks both authorization servers know it under one software_id.
func TestConsoleRegistersAtBothServers(t *testing.T) {
	r := sharedWorld(t)
	ready := r.Ready()
	form := url.Values{
		"client_name": {"Workshop App"}, "launch_url": {"http://localhost:3000/launch"},
		"redirect_uris": {"http://localhost:3000/callback"}, "type": {"confidential-symmetric"},
		"scope": {"launch launch-token openid patient/*.rs"}, "software_id": {"https://workshop.example.org/app"}, "at": {"both"},
	}
	resp, err := http.PostForm(ready.Console+"/register", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %.500s", resp.StatusCode, body)
	}
	ids := regexp.MustCompile(`class="c-client-id"><span class="c-copy"><code class="c-val">([^<]+)</code>`).FindAllStringSubmatch(string(body), -1)
	if len(ids) != 2 || strings.Count(string(body), "client_secret") < 2 {
		t.Fatalf("want a client_id and secret per server, got %d ids", len(ids))
	}
	if n := strings.Count(string(body), `&#34;software_id&#34;: &#34;https://workshop.example.org/app&#34;`); n != 2 {
		t.Errorf("registration responses with the software_id: %d, want 2", n)
	}
	// Each server knows its client: authorize shows its pages (an unknown
	// client_id gets the "Unknown app" page with 400).
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, base := range []string{ready.EHRIssuer, ready.OtherIssuer} {
		q := url.Values{"client_id": {ids[i][1]}, "redirect_uri": {"http://localhost:3000/callback"}, "response_type": {"code"}}
		resp, err := noFollow.Get(base + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadRequest {
			t.Errorf("%s does not know client %s", base, ids[i][1])
		}
	}
	// The new app can be launched from the EHR (it has a launch URL there).
	resp, _ = http.Get(ready.Console + "/")
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(home), "Workshop App") {
		t.Error("the home page does not list the registered app")
	}
	// A cross-site form post is refused.
	req, _ := http.NewRequest("POST", ready.Console+"/register", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site registration: %v %v", resp.StatusCode, err)
	}
}

func TestConsoleRunsABundledScenarioAgainstTheRunningWorld(t *testing.T) {
	r := sharedWorld(t)
	console := r.Ready().Console
	req, _ := http.NewRequest(http.MethodPost, console+"/scenarios/run", strings.NewReader("file=patient_absent.yaml"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", console)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "✓") || strings.Contains(string(body), "✗") {
		t.Fatalf("run from the console: %d\n%.2000s", resp.StatusCode, body)
	}
	// The flows ran against this world, so they are in its traces.
	var traces struct{ Flows []struct{ ID string } }
	getJSON(t, r.Ready().API+"/traces", "", &traces)
	found := false
	for _, f := range traces.Flows {
		found = found || strings.HasPrefix(f.ID, "patient-absent/")
	}
	if !found {
		t.Fatalf("no patient-absent flow among the traces %v", traces.Flows)
	}
}

func TestConsoleSampleAppAddressAndNoListings(t *testing.T) {
	r := sharedWorld(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(r.Ready().Console + "/sample-app/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ehr" {
		t.Fatalf("/sample-app/: %d to %q, want 303 to /ehr", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = http.Get(r.Ready().Console + "/static/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/static/: %d, want 404 (no directory listing)", resp.StatusCode)
	}
}
