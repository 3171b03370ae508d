package scenarios_test

import (
	"slices"
	"testing"

	"github.com/smart-sim/sim/scenarios"
)

func TestCompareDirections(t *testing.T) {
	w, err := scenarios.ParseWorld("small.yaml", []byte("ehr: {patients: 30}\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := scenarios.Compare(t.Context(), scenarios.CompareOptions{World: w})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d directions, want 4", len(res))
	}
	by := map[string]scenarios.DirectionResult{}
	for _, r := range res {
		if r.Error != "" {
			t.Errorf("direction %s: %s", r.Direction, r.Error)
		}
		if r.Exchanges == 0 || r.Exchanges < r.Redirects+r.Interactions+r.ServerToServe {
			t.Errorf("direction %s: counts do not add up: %+v", r.Direction, r)
		}
		by[r.Direction] = r
	}
	// What sets the directions apart.
	if by["A"].Interactions != 2 || by["B"].Interactions != 1 || by["C"].Interactions != 1 || by["D"].Interactions != 2 {
		t.Errorf("user interactions A %d B %d C %d D %d, want 2 1 1 2", by["A"].Interactions, by["B"].Interactions, by["C"].Interactions, by["D"].Interactions)
	}
	if by["C"].ServerToServe != 0 || by["A"].ServerToServe == 0 || by["D"].ServerToServe <= by["A"].ServerToServe {
		t.Errorf("server-to-server calls A %d C %d D %d: want C none, D more than A (the broker's token calls)", by["A"].ServerToServe, by["C"].ServerToServe, by["D"].ServerToServe)
	}
	if by["A"].UserSawOther[:3] != "yes" || by["B"].UserSawOther != "no" || by["D"].UserSawOther[:3] != "yes" {
		t.Errorf("user saw Other: A %q B %q D %q", by["A"].UserSawOther, by["B"].UserSawOther, by["D"].UserSawOther)
	}
	if !slices.Contains(by["D"].Readers["Other FHIR"], "Broker") || !slices.Contains(by["D"].Readers["EHR FHIR"], "Broker") {
		t.Errorf("D readers %v: the broker holds both tokens", by["D"].Readers)
	}
	if !slices.Contains(by["A"].Readers["EHR FHIR"], "OtherAS") || slices.Contains(by["C"].Readers["Other FHIR"], "OtherAS") {
		t.Errorf("readers A %v C %v", by["A"].Readers, by["C"].Readers)
	}
	for _, r := range res {
		for _, s := range r.Scopes {
			if len(s.Granted) == 0 {
				t.Errorf("direction %s: nothing granted at %s: %+v", r.Direction, s.Server, s)
			}
		}
	}
}

// With an absent patient the app still holds a user-level token for Other
// in every direction that asks OtherAS, and the comparison says so.
func TestCompareAbsentPatientAppStillReadsOther(t *testing.T) {
	w, err := scenarios.ParseWorld("small.yaml", []byte("ehr: {patients: 30}\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := scenarios.Compare(t.Context(), scenarios.CompareOptions{World: w, Class: "absent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res {
		if !slices.Contains(d.Readers["Other FHIR"], "App") {
			t.Errorf("%s: Other FHIR readers %v, want the App among them", d.Direction, d.Readers["Other FHIR"])
		}
	}
}
