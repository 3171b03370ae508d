package fhirstore

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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

// FuzzInitialLoad loads arbitrary resources (one a line) into a new store,
// whose initial load stages its index rows, and into a store that is not
// new, which writes them directly: both end with the same index rows, or
// both fail.
func FuzzInitialLoad(f *testing.F) {
	for _, s := range []string{
		patientJSON,
		`{"resourceType":"Patient","id":"a","identifier":[{"system":"urn:x","value":"1"},{"system":"urn:x","value":"1"}],"name":[{"family":"Ödö","given":["É","É"]}]}` + "\n" +
			`{"resourceType":"Patient","id":"a","birthDate":"1970","gender":"other"}`,
		`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1-8"}]},"subject":{"reference":"Patient/a"},"effectivePeriod":{"start":"2020-01-01","end":"2020-02"}}` + "\n" +
			`{"resourceType":"Organization","id":"g","name":"G","alias":["G"],"endpoint":[{"reference":"http://other.test/fhir/Endpoint/e"}]}`,
		`{"resourceType":"Nope","id":"x"}`, `{"resourceType":"Patient","id":"bad id"}`, `[]`,
	} {
		f.Add(s)
	}
	ctx := context.Background()
	const reserved = "fuzz-reserved-first"
	f.Fuzz(func(t *testing.T, lines string) {
		if strings.Contains(lines, reserved) {
			return
		}
		var res []json.RawMessage
		for l := range strings.Lines(lines) {
			res = append(res, json.RawMessage(strings.TrimSpace(l)))
		}
		initial, direct := openTestStore(t, ""), openTestStore(t, "")
		if err := direct.Load(ctx, rawList(`{"resourceType":"Practitioner","id":"`+reserved+`"}`), false); err != nil {
			t.Fatal(err)
		}
		ierr, derr := initial.Load(ctx, res, false), direct.Load(ctx, res, false)
		if (ierr == nil) != (derr == nil) {
			t.Fatalf("initial load: %v; direct load: %v", ierr, derr)
		}
		got, want := indexRowsByResource(t, initial), indexRowsByResource(t, direct)
		want = slices.DeleteFunc(want, func(r string) bool { return strings.HasSuffix(r, " "+reserved+"/1") })
		if !slices.Equal(got, want) {
			t.Fatalf("index rows differ:\ninitial %q\ndirect  %q", got, want)
		}
		if n := orphanIndexRows(t, initial); n != 0 {
			t.Fatalf("%d index rows of no version", n)
		}
	})
}
