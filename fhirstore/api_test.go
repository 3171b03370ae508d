package fhirstore

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

const patientJSON = `{"resourceType":"Patient","name":[{"family":"Müller","given":["Jörg"]}],"identifier":[{"system":"urn:mrn","value":"123"}],"birthDate":"1970-05-06","gender":"male"}`

func TestCRUDOverHTTP(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.mustStatus(t, 201, "POST", "/Patient", patientJSON)
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if r.header.Get("ETag") != `W/"1"` || r.header.Get("Last-Modified") == "" {
		t.Errorf("headers: %v", r.header)
	}
	created := r.json(t)
	id := created["id"].(string)
	if loc := r.header.Get("Location"); loc != ts.base+"/Patient/"+id+"/_history/1" {
		t.Errorf("Location = %q", loc)
	}
	meta := created["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Errorf("meta = %v", meta)
	}

	read := ts.mustStatus(t, 200, "GET", "/Patient/"+id, "")
	if string(read.body) != string(r.body) {
		t.Errorf("read body differs from create response:\n%s\n%s", read.body, r.body)
	}

	upd := strings.Replace(patientJSON, `"gender":"male"`, `"gender":"female","id":"`+id+`"`, 1)
	r = ts.mustStatus(t, 200, "PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`)
	if r.header.Get("ETag") != `W/"2"` {
		t.Errorf("ETag after update = %q", r.header.Get("ETag"))
	}
	ts.mustStatus(t, 412, "PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`)
	ts.mustStatus(t, 400, "PUT", "/Patient/"+id, upd, "If-Match", `garbage`)
	v1 := ts.mustStatus(t, 200, "GET", "/Patient/"+id+"/_history/1", "").json(t)
	if v1["gender"] != "male" {
		t.Errorf("vread 1 gender = %v", v1["gender"])
	}
	ts.mustStatus(t, 404, "GET", "/Patient/"+id+"/_history/9", "")
	ts.mustStatus(t, 404, "GET", "/Patient/"+id+"/_history/x", "")

	ts.mustStatus(t, 412, "DELETE", "/Patient/"+id, "", "If-Match", `W/"1"`)
	ts.mustStatus(t, 204, "DELETE", "/Patient/"+id, "")
	ts.mustStatus(t, 410, "GET", "/Patient/"+id, "")
	ts.mustStatus(t, 204, "DELETE", "/Patient/"+id, "")
	ts.mustStatus(t, 200, "GET", "/Patient/"+id+"/_history/2", "")
	h := ts.mustStatus(t, 200, "GET", "/Patient/"+id+"/_history", "").json(t)
	if h["type"] != "history" || h["total"].(float64) != 3 {
		t.Fatalf("history bundle: %v", h)
	}
	first := h["entry"].([]any)[0].(map[string]any)
	if first["request"].(map[string]any)["method"] != "DELETE" {
		t.Errorf("newest history entry: %v", first)
	}
	// A search no longer finds the deleted patient.
	if ids := bundleIDs(t, ts.mustStatus(t, 200, "GET", "/Patient?_id="+id, "")); len(ids) != 0 {
		t.Errorf("deleted patient found: %v", ids)
	}
	// Update on a deleted resource resurrects it with a new version.
	r = ts.mustStatus(t, 201, "PUT", "/Patient/"+id, upd)
	if r.header.Get("ETag") != `W/"4"` {
		t.Errorf("ETag = %q", r.header.Get("ETag"))
	}

	// Create on update with a client id.
	r = ts.mustStatus(t, 201, "PUT", "/Patient/p-1", `{"resourceType":"Patient","id":"p-1"}`)
	if r.header.Get("Location") == "" {
		t.Error("no Location on create-on-update")
	}
	ts.mustStatus(t, 200, "GET", "/Patient/p-1", "")
}

func TestErrorsAreOperationOutcomes(t *testing.T) {
	ts := newTestServer(t, func(c *HandlerConfig) { c.MaxBodyBytes = 4096 })
	ts.mustStatus(t, 201, "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a"}`)
	// A primitive's extensions ("_" and the element's name) are not a
	// miscased element.
	ts.mustStatus(t, 201, "POST", "/Patient", `{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}}`)
	tests := []struct {
		name         string
		method, path string
		body         string
		hdr          []string
		status       int
		expr         string
	}{
		{"unknown type", "GET", "/Foo/1", "", nil, 404, ""},
		{"unknown type search", "GET", "/Foo", "", nil, 404, ""},
		{"unknown id", "GET", "/Patient/nope", "", nil, 404, ""},
		{"bad id", "GET", "/Patient/a$b", "", nil, 404, ""},
		{"invalid json", "POST", "/Patient", `{"resourceType":`, nil, 400, ""},
		{"not an object", "POST", "/Patient", `[1,2]`, nil, 400, ""},
		{"unknown field", "POST", "/Patient", `{"resourceType":"Patient","colour":"red"}`, nil, 400, ""},
		{"bad code", "POST", "/Patient", `{"resourceType":"Patient","gender":"blue"}`, nil, 400, "Patient.gender"},
		{"empty string", "POST", "/Patient", `{"resourceType":"Patient","name":[{"family":""}]}`, nil, 400, "Patient.name[0].family"},
		{"miscased element", "POST", "/Patient", `{"resourceType":"Patient","Gender":"male"}`, nil, 400, "Patient.Gender"},
		{"miscased primitive extension", "POST", "/Patient", `{"resourceType":"Patient","_BirthDate":{"id":"x"}}`, nil, 400, "Patient._BirthDate"},
		{"miscased contained", "POST", "/Patient", `{"resourceType":"Patient","Contained":[{}]}`, nil, 400, "Patient.Contained"},
		{"miscased inside contained", "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a","contained":[{"resourceType":"Patient","Contained":[{}]}]}`, nil, 400, "Patient.contained[0].Contained"},
		{"missing required", "POST", "/Observation", `{"resourceType":"Observation","code":{"text":"x"}}`, nil, 422, "Observation"},
		{"wrong type in body", "POST", "/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "resourceType"},
		{"id mismatch", "PUT", "/Patient/a", `{"resourceType":"Patient","id":"b"}`, nil, 400, "Patient.id"},
		{"empty body", "POST", "/Patient", ` `, nil, 400, ""},
		{"xml format", "GET", "/Patient/a?_format=xml", "", nil, 406, ""},
		{"xml accept", "GET", "/Patient/a", "", []string{"Accept", "application/fhir+xml"}, 406, ""},
		{"xml body", "POST", "/Patient", `<Patient/>`, []string{"Content-Type", "application/fhir+xml"}, 415, ""},
		{"patch", "PATCH", "/Patient/a", `{}`, nil, 405, ""},
		{"post metadata", "POST", "/metadata", `{}`, nil, 405, ""},
		{"post instance", "POST", "/Patient/a", `{}`, nil, 405, ""},
		{"unknown param", "GET", "/Patient?colour=red", "", nil, 400, ""},
		{"bad date", "GET", "/Patient?birthdate=ge19x", "", nil, 400, ""},
		{"bad prefix", "GET", "/Patient?birthdate=sa2000", "", nil, 400, ""},
		{"bad count", "GET", "/Patient?_count=-1", "", nil, 400, ""},
		{"bad sort", "GET", "/Patient?_sort=name", "", nil, 400, ""},
		{"bad include", "GET", "/Patient?_include=Patient:organization", "", nil, 400, ""},
		{"bad summary", "GET", "/Patient?_summary=text", "", nil, 400, ""},
		{"unsupported modifier", "GET", "/Patient?gender:not=male", "", nil, 400, ""},
		{"too large", "POST", "/Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("x", 5000) + `</div>"}}`, nil, 413, ""},
		{"unknown path", "GET", "/", "", nil, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do(t, tc.method, tc.path, tc.body, tc.hdr...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			m := r.json(t)
			if m["resourceType"] != "OperationOutcome" {
				t.Fatalf("not an OperationOutcome: %s", r.body)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if tc.expr != "" && !strings.Contains(string(r.body), `"`+tc.expr+`"`) {
				t.Errorf("outcome does not name %s: %s", tc.expr, r.body)
			}
		})
	}
}

// TestMiscasedNamesAtAnyDepth: a miscased "ValueString" at the bottom of a
// chain of extensions (jsonformat alone takes it for valueString) is a 400
// at every depth, around where the pre-check stops walking and
// jsonformat's nesting limit takes over.
func TestMiscasedNamesAtAnyDepth(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, levels := range []int{1, 62, 63, 64, 65, 66, 70} {
		body := `{"resourceType":"Patient",` + strings.Repeat(`"extension":[{"url":"http://example.org/x",`, levels) +
			`"ValueString":"a"` + strings.Repeat(`}]`, levels) + `}`
		if r := ts.do(t, "POST", "/Patient", body); r.status != 400 {
			t.Errorf("%d levels: status %d, want 400: %s", levels, r.status, r.body)
		}
	}
}

func TestLenientSearchReportsIgnoredParameters(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.mustStatus(t, 201, "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a"}`)
	r := ts.mustStatus(t, 200, "GET", "/Patient?colour=red", "", "Prefer", "handling=lenient")
	if ids := bundleIDs(t, r); len(ids) != 1 {
		t.Fatalf("ids = %v", ids)
	}
	if !strings.Contains(string(r.body), `"mode":"outcome"`) || !strings.Contains(string(r.body), "colour") {
		t.Errorf("no outcome entry: %s", r.body)
	}
}

func TestFailedWriteLeavesStoreUnchanged(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.mustStatus(t, 201, "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a","gender":"male"}`)
	snapshot := func() string {
		var parts []string
		for _, q := range []string{`SELECT count(*) FROM res`, `SELECT count(*) FROM token_idx`, `SELECT count(*) FROM string_idx`, `SELECT count(*) FROM date_idx`, `SELECT count(*) FROM ref_idx`, `SELECT coalesce(max(vid),0) FROM res`} {
			var n int
			if err := ts.store.db.Read.QueryRow(q).Scan(&n); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, q+"="+strconv.Itoa(n))
		}
		return strings.Join(parts, ";")
	}
	before := snapshot()
	ts.mustStatus(t, 400, "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a","gender":"x"}`)
	ts.mustStatus(t, 412, "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a","gender":"female"}`, "If-Match", `W/"7"`)
	ts.mustStatus(t, 422, "POST", "/Observation", `{"resourceType":"Observation"}`)
	// A guard failing inside the transaction (after the version row would be
	// written) rolls everything back.
	_, err := ts.store.update(context.Background(), "Patient", "a", []byte(`{"resourceType":"Patient","id":"a","gender":"female"}`), 0,
		func(prev, next json.RawMessage) error { return forbidden("no") })
	var oe *OutcomeError
	if !errors.As(err, &oe) || oe.Status != http.StatusForbidden {
		t.Fatalf("guarded update: %v", err)
	}
	// A Load batch with one invalid resource stores nothing.
	err = ts.store.Load(context.Background(), rawList(
		`{"resourceType":"Patient","id":"ok1"}`,
		`{"resourceType":"Patient","id":"bad","gender":"x"}`), true)
	if err == nil {
		t.Fatal("Load accepted an invalid resource")
	}
	if after := snapshot(); after != before {
		t.Fatalf("store changed:\n%s\n%s", before, after)
	}
	got := ts.mustStatus(t, 200, "GET", "/Patient/a", "").json(t)
	if got["gender"] != "male" {
		t.Errorf("gender = %v", got["gender"])
	}
}

func itoa(n int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + func() string { b, _ := json.Marshal(n); return string(b) }())
}

func TestStoreGoAPI(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "http://example.test/fhir")
	if _, ok, err := s.Meta(ctx, "fingerprint"); ok || err != nil {
		t.Fatalf("Meta on empty store: %v %v", ok, err)
	}
	if err := s.SetMeta(ctx, "fingerprint", "abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "fingerprint", "def"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Meta(ctx, "fingerprint"); v != "def" || !ok || err != nil {
		t.Fatalf("Meta = %q %v %v", v, ok, err)
	}
	if err := s.Load(ctx, rawList(
		`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:a","value":"1"}],"meta":{"tag":[{"code":"t"}]}}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"http://example.test/fhir/Patient/p1"}}`,
	), false); err != nil {
		t.Fatal(err)
	}
	b, err := s.Read(ctx, "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	// The fast path's canonical form matches jsonformat's.
	canon, err := s.Codec().Canonical(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(canon) != string(b) {
		t.Errorf("Load canonical form differs from jsonformat:\n%s\n%s", b, canon)
	}
	if _, err := s.Read(ctx, "Patient", "zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read unknown: %v", err)
	}
	if err := s.Delete(ctx, "Patient", "p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", "p1"); !errors.Is(err, ErrGone) {
		t.Errorf("Read deleted: %v", err)
	}
	res, err := s.Search(ctx, "Observation", map[string][]string{"patient": {"p1"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 1 || len(res.Entries) != 1 || res.Entries[0].ID != "o1" {
		t.Errorf("search by absolute self reference: %+v", res)
	}
	// Loading again replaces with a new version.
	if err := s.Load(ctx, rawList(`{"resourceType":"Observation","id":"o1","status":"amended","code":{"text":"x"}}`), true); err != nil {
		t.Fatal(err)
	}
	v, err := s.ReadVersion(ctx, "Observation", "o1", 0)
	if err != nil || v.Version != 2 {
		t.Fatalf("version after reload: %v %v", v, err)
	}
	if _, err := s.Search(ctx, "Observation", map[string][]string{"foo": {"1"}}); err == nil {
		t.Error("unknown parameter accepted")
	}
}
