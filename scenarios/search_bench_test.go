package scenarios

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// BenchmarkFHIRSearchWithBearer is a FHIR search at the EHR FHIR server
// through the whole stack (loopback HTTP, middleware, the EHR AS's bearer
// check, the SQLite search and the Bundle), 16 at a time, with an access
// token from a real EHR launch: the launch patient by identifier, and
// that patient's Observations.
func BenchmarkFHIRSearchWithBearer(b *testing.B) {
	plan, at, patient := benchLaunch(b)
	truth := plan.patients[0]
	if truth.EHRID != patient || len(truth.Identifiers) == 0 {
		b.Fatalf("launched for %s, want %s with identifiers", patient, truth.EHRID)
	}
	id := truth.Identifiers[0]
	client := &http.Client{Transport: plan.rn.transport}
	for _, c := range []struct{ name, query string }{
		{"Patient-identifier", "Patient?identifier=" + url.QueryEscape(id.System+"|"+id.Value)},
		{"Observation-patient", "Observation?patient=" + patient + "&_count=20"},
	} {
		b.Run(c.name, func(b *testing.B) {
			u := plan.rn.ready.EHRFHIR + "/" + c.query
			if n := searchOnce(b, client, u, at); c.name == "Patient-identifier" && n != 1 {
				b.Fatalf("%s: %d entries, want 1", c.query, n)
			}
			benchBearerGET(b, client, u, at, "searches/s")
		})
	}
}

// searchOnce runs a search and returns its number of entries.
func searchOnce(b *testing.B, client *http.Client, u, at string) int {
	resp, err := bearerGET(b.Context(), client, u, at)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var bundle struct {
		ResourceType string            `json:"resourceType"`
		Entry        []json.RawMessage `json:"entry"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&bundle); err != nil || resp.StatusCode != http.StatusOK || bundle.ResourceType != "Bundle" {
		b.Fatalf("search %s: status %d, %v", u, resp.StatusCode, err)
	}
	return len(bundle.Entry)
}
