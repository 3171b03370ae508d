package fhirstore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{
		"Patient?identifier=urn:mrn|100", "Patient?birthdate=ge1970-05&birthdate=lt2000",
		"Observation?patient=Patient/1&code=a,b|c&_sort=-date&_count=5",
		"Organization?_include=Organization:endpoint:Endpoint", "Patient?name:contains=é",
		"Patient?_snapshot=10&_offset=20", "Observation?subject:Patient=1", "Patient?x=\\,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, raw, _ := strings.Cut(s, "?")
		params, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for _, lenient := range []bool{false, true} {
			q, err := parseSearch(typ, params, lenient, "http://x.test/fhir")
			if err != nil {
				if _, ok := asOutcome(err); !ok {
					t.Fatalf("non-client error %v", err)
				}
				continue
			}
			q.where(1)
			q.orderBy()
		}
	})
}

// FuzzCreate posts arbitrary bodies: the answer is never a 5xx.
func FuzzCreate(f *testing.F) {
	for _, s := range []string{
		patientJSON, `{"resourceType":"Observation"}`, `{`, `[]`, `{"resourceType":"Patient","name":[{"family":""}]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Patient","contained":[]}]}`, `null`,
	} {
		f.Add(s)
	}
	s, err := Open(context.Background(), Options{Path: f.TempDir() + "/fuzz.db"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	h := NewHandler(HandlerConfig{Store: s, BaseURL: "http://x.test/fhir"})
	f.Fuzz(func(t *testing.T, body string) {
		for _, target := range []string{"/fhir/Patient", "/fhir/Observation"} {
			req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/fhir+json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
			}
		}
	})
}
