package fhirstore

import (
	"strings"
	"testing"
)

func TestAuthAndCompartment(t *testing.T) {
	ts := newTestServer(t, func(c *HandlerConfig) {
		c.Verifier = testVerifier{
			"all":      testGrant{allow: map[string]bool{"*": true}},
			"p1":       testGrant{patient: "p1", allow: map[string]bool{"*": true}},
			"readonly": testGrant{allow: map[string]bool{"Patient.read": true}},
		}
	})
	loadFixtures(t, ts)
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	// metadata stays open.
	ts.mustStatus(t, 200, "GET", "/metadata", "")
	r := ts.mustStatus(t, 401, "GET", "/Patient/p1", "")
	if h := r.header.Get("WWW-Authenticate"); h != `Bearer realm="`+ts.base+`"` {
		t.Errorf("WWW-Authenticate without token = %q", h)
	}
	r = ts.mustStatus(t, 401, "GET", "/Patient/p1", "", bearer("bogus")...)
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate with bad token = %q", h)
	}
	ts.mustStatus(t, 401, "GET", "/Patient/p1", "", "Authorization", "Basic eDp5")
	ts.mustStatus(t, 200, "GET", "/Patient/p2", "", bearer("all")...)
	ts.mustStatus(t, 200, "GET", "/Patient/p2", "", bearer("readonly")...)
	r = ts.mustStatus(t, 403, "GET", "/Patient?name=x", "", bearer("readonly")...)
	if !strings.Contains(string(r.body), `"forbidden"`) || !strings.Contains(string(r.body), "insufficient scope") {
		t.Errorf("403 outcome: %s", r.body)
	}
	ts.mustStatus(t, 403, "GET", "/Observation/obs1", "", bearer("readonly")...)

	p1 := bearer("p1")
	tests := []struct {
		name, method, path, body string
		status                   int
		ids                      []string
	}{
		{"own patient", "GET", "/Patient/p1", "", 200, nil},
		{"other patient", "GET", "/Patient/p2", "", 403, nil},
		{"unknown patient", "GET", "/Patient/zz", "", 404, nil},
		{"own history", "GET", "/Patient/p1/_history", "", 200, nil},
		{"other history", "GET", "/Patient/p2/_history", "", 403, nil},
		{"other vread", "GET", "/Patient/p2/_history/1", "", 403, nil},
		{"own observation", "GET", "/Observation/obs1", "", 200, nil},
		{"other observation", "GET", "/Observation/obs3", "", 403, nil},
		{"allergy via patient", "GET", "/AllergyIntolerance/a1", "", 200, nil},
		{"practitioner outside", "GET", "/Practitioner/dr1", "", 403, nil},
		{"search confined", "GET", "/Observation?code=8867-4", "", 200, []string{"obs1"}},
		{"search own", "GET", "/Observation?patient=p1", "", 200, []string{"obs1", "obs2"}},
		{"search other", "GET", "/Observation?patient=p2", "", 403, nil},
		{"search other subject", "GET", "/Observation?subject=Patient/p2", "", 403, nil},
		{"patient search confined", "GET", "/Patient?gender=male,female", "", 200, []string{"p1"}},
		{"patient search other id", "GET", "/Patient?_id=p2", "", 403, nil},
		{"organization search empty", "GET", "/Organization", "", 200, nil},
		{"create own", "POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`, 201, nil},
		{"create other", "POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"}}`, 403, nil},
		{"create patient", "POST", "/Patient", `{"resourceType":"Patient"}`, 403, nil},
		{"move own to other", "PUT", "/Observation/obs1", `{"resourceType":"Observation","id":"obs1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"}}`, 403, nil},
		{"update other", "PUT", "/Observation/obs3", `{"resourceType":"Observation","id":"obs3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`, 403, nil},
		{"update own patient", "PUT", "/Patient/p1", `{"resourceType":"Patient","id":"p1","gender":"male"}`, 200, nil},
		{"delete other", "DELETE", "/Observation/obs3", "", 403, nil},
		{"delete own", "DELETE", "/Observation/obs2", "", 204, nil},
		{"deleted own", "GET", "/Observation/obs2", "", 410, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.mustStatus(t, tc.status, tc.method, tc.path, tc.body, p1...)
			if tc.status == 403 && !strings.Contains(string(r.body), `"forbidden"`) {
				t.Errorf("403 outcome: %s", r.body)
			}
			if tc.ids != nil || (tc.method == "GET" && strings.Contains(tc.path, "?")) {
				got := bundleIDs(t, r)
				if strings.Join(got, ",") != strings.Join(tc.ids, ",") {
					t.Errorf("ids = %v, want %v", got, tc.ids)
				}
			}
		})
	}
	// The refused writes left obs3 with its patient.
	r = ts.mustStatus(t, 200, "GET", "/Observation/obs3", "", bearer("all")...)
	if !strings.Contains(string(r.body), "Patient/p2") {
		t.Errorf("obs3 changed: %s", r.body)
	}
}
