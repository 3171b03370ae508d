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
