package fhirstore

import (
	"context"
	"errors"
	"net/url"
	"testing"
)

// TestFindByIdentifierMatchesSearch: FindByIdentifier finds what Search
// with identifier=system|value finds, in the same order, after updates and
// deletions too.
func TestFindByIdentifierMatchesSearch(t *testing.T) {
	ts := newTestServer(t, nil)
	loadFixtures(t, ts)
	ctx := context.Background()
	s := ts.store
	// p4 and p5 share an identifier with p1 (a duplicate registration); p5 is
	// then deleted and p4 updated to carry it no more, then back again.
	if err := s.Load(ctx, rawList(
		`{"resourceType":"Patient","id":"p4","identifier":[{"system":"urn:mrn","value":"100"}]}`,
		`{"resourceType":"Patient","id":"p5","identifier":[{"system":"urn:mrn","value":"100"}]}`,
		`{"resourceType":"Patient","id":"p6","identifier":[{"system":"urn:mrn","value":"600"}]}`,
	), true); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		for _, c := range []struct{ system, value string }{
			{"urn:mrn", "100"}, {"", "100"}, {"urn:ssn", "A|1"}, {"urn:mrn", "300"}, {"urn:mrn", "600"},
			{"urn:mrn", "999"}, {"urn:other", "100"},
		} {
			want, err := s.Search(ctx, "Patient", url.Values{"identifier": {escapeToken(c.system) + "|" + escapeToken(c.value)}, "_count": {"10"}})
			if err != nil {
				t.Fatalf("%s: search %v: %v", step, c, err)
			}
			got, err := s.FindByIdentifier(ctx, "Patient", c.system, c.value, 10)
			if err != nil {
				t.Fatalf("%s: find %v: %v", step, c, err)
			}
			if len(got) != len(want.Entries) {
				t.Fatalf("%s: %v: found %d, search found %d", step, c, len(got), len(want.Entries))
			}
			for i := range got {
				if got[i].ID != want.Entries[i].ID || string(got[i].Resource) != string(want.Entries[i].Resource) || got[i].Type != "Patient" {
					t.Errorf("%s: %v entry %d: found %s, search found %s", step, c, i, got[i].ID, want.Entries[i].ID)
				}
			}
		}
	}
	check("loaded")
	if got, _ := s.FindByIdentifier(ctx, "Patient", "urn:mrn", "100", 10); len(got) != 3 || got[0].ID != "p1" || got[1].ID != "p4" || got[2].ID != "p5" {
		t.Fatalf("urn:mrn|100: %+v, want p1, p4, p5", got)
	}
	if err := s.Delete(ctx, "Patient", "p5"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "Patient", "p4", []byte(`{"resourceType":"Patient","id":"p4","identifier":[{"system":"urn:mrn","value":"400"}]}`), 0); err != nil {
		t.Fatal(err)
	}
	check("updated")
	if got, _ := s.FindByIdentifier(ctx, "Patient", "urn:mrn", "100", 10); len(got) != 1 || got[0].ID != "p1" {
		t.Fatalf("urn:mrn|100 after update and delete: %+v, want p1", got)
	}
	if _, err := s.Update(ctx, "Patient", "p4", []byte(`{"resourceType":"Patient","id":"p4","identifier":[{"system":"urn:mrn","value":"100"}],"gender":"other"}`), 0); err != nil {
		t.Fatal(err)
	}
	check("restored")
	if got, _ := s.FindByIdentifier(ctx, "Patient", "urn:mrn", "100", 1); len(got) != 1 || got[0].ID != "p1" {
		t.Fatalf("limit 1: %+v", got)
	}
	if got, _ := s.FindByIdentifier(ctx, "Practitioner", "urn:npi", "9", 0); len(got) != 1 || got[0].ID != "dr1" {
		t.Fatalf("practitioner: %+v", got)
	}
	var oe *OutcomeError
	if _, err := s.FindByIdentifier(ctx, "Nope", "urn:mrn", "100", 10); !errors.As(err, &oe) || oe.Status != 404 {
		t.Fatalf("unknown type: %v", err)
	}
}

// escapeToken escapes a token part for a search URL value.
func escapeToken(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '|' || s[i] == ',' || s[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
