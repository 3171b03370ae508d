package ui

import (
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadAndRender(t *testing.T) {
	tm, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	err = tm.Render(rec, 200, PageConsent, ConsentPage{
		Common:  Common{Title: "Allow access", Product: "EHR <test>", CSRF: "tok"},
		AppName: "App",
		Scopes:  []ConsentScope{{Value: "patient/*.rs", Description: "Read your records", Checked: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	for _, want := range []string{`name="scope" value="patient/*.rs" checked`, `name="decision" value="approve"`, `name="decision" value="deny"`, "EHR &lt;test&gt;", `name="csrf" value="tok"`} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
}

func TestLoadFailsOnMissingPage(t *testing.T) {
	fsys := fstest.MapFS{"templates/layout.html": {Data: []byte(`{{define "head"}}{{end}}{{define "foot"}}{{end}}`)}}
	if _, err := Load(fsys); err == nil {
		t.Fatal("Load succeeded without pages")
	}
}

func TestRenderFramingPolicy(t *testing.T) {
	tm, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	page := ErrorPage{Heading: "h", Message: "m"}
	rec := httptest.NewRecorder()
	tm.Render(rec, 400, PageError, page)
	if rec.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("default framing headers: %v", rec.Header())
	}
	tm.FrameAncestors = []string{"http://127.0.0.1:9402"}
	rec = httptest.NewRecorder()
	tm.Render(rec, 400, PageError, page)
	if rec.Header().Get("X-Frame-Options") != "" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "frame-ancestors 'self' http://127.0.0.1:9402") {
		t.Fatalf("framing by the EHR: %v", rec.Header())
	}
}

// BenchmarkRenderConsent renders the consent page of a two-server flow:
// every load flow shows it once at each authorization server.
func BenchmarkRenderConsent(b *testing.B) {
	tm, err := Load(nil)
	if err != nil {
		b.Fatal(err)
	}
	page := ConsentPage{
		Common:  Common{Title: "Allow access", Product: "General Hospital EHR", StaticURL: "/auth/static", CSRF: "b7Jk2mQ9xP4rT8vW1zY6nL3s", Action: "/auth/consent?req=Qm9x2Lp7Rt4Vw8Yz1Nc6Hs3J"},
		AppName: "Care Coordinator", UserName: "Dr. Alice Smith", PatientName: "Jane Q. Doe", Server: "http://127.0.0.1:40123/fhir",
	}
	for _, s := range []string{"launch", "openid", "fhirUser", "offline_access", "patient/Patient.rs", "patient/Observation.rs", "patient/Condition.rs", "patient/MedicationRequest.rs"} {
		page.Scopes = append(page.Scopes, ConsentScope{Value: s, Description: "Read your " + s, Checked: true})
	}
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := tm.Render(w, 200, PageConsent, page); err != nil {
			b.Fatal(err)
		}
	}
}
