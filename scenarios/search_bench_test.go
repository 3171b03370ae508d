package scenarios

import (
	"encoding/json"
	"io"
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
	plan, f := benchPlan(b, DirectionEHR)
	var at, patient string
	plan.afterFlow = func(fl *flowRun) {
		at, patient = fl.steps["ehr"].values["access_token"], fl.steps["ehr"].values["patient"]
	}
	if kind := plan.runOne(b.Context(), f, 1); kind != "" || at == "" {
		b.Fatalf("launch: %q", kind)
	}
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
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, u, nil)
					req.Header.Set("Authorization", "Bearer "+at)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
		})
	}
}

// searchOnce runs a search and returns its number of entries.
func searchOnce(b *testing.B, client *http.Client, u, at string) int {
	req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := client.Do(req)
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
