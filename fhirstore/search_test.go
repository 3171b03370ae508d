package fhirstore

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func loadFixtures(t *testing.T, ts *testServer) {
	t.Helper()
	err := ts.store.Load(context.Background(), rawList(
		`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"100"},{"system":"urn:ssn","value":"A|1"}],"name":[{"family":"Müller","given":["Jörg","Peter"]}],"birthDate":"1970-05-06","gender":"male"}`,
		`{"resourceType":"Patient","id":"p2","identifier":[{"value":"100"}],"name":[{"family":"Muller","given":["Anna"]}],"birthDate":"1985","gender":"female"}`,
		`{"resourceType":"Patient","id":"p3","identifier":[{"system":"urn:mrn","value":"300"}],"name":[{"family":"Smith","given":["Ann"]}],"birthDate":"2001-12-31","gender":"female"}`,
		`{"resourceType":"Practitioner","id":"dr1","identifier":[{"system":"urn:npi","value":"9"}],"name":[{"family":"House","given":["Greg"]}]}`,
		`{"resourceType":"Endpoint","id":"e1","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},"payloadType":[{"text":"any"}],"address":"http://other.test/fhir"}`,
		`{"resourceType":"Organization","id":"o1","name":"Other Hospital","type":[{"coding":[{"system":"urn:orgtype","code":"prov"}]}],"endpoint":[{"reference":"Endpoint/e1"}]}`,
		`{"resourceType":"Organization","id":"o2","name":"Clinic","alias":["Health Centre"]}`,
		`{"resourceType":"Observation","id":"obs1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-10T10:00:00Z"}`,
		`{"resourceType":"Observation","id":"obs2","status":"amended","code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2024-02-01","end":"2024-02-03"}}`,
		`{"resourceType":"Observation","id":"obs3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p2"},"effectiveDateTime":"2023-06-01"}`,
		`{"resourceType":"Encounter","id":"enc1","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2024-01-10T09:00:00Z","end":"2024-01-10T11:00:00Z"}}`,
		`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p2"},"code":{"text":"x","coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2019-03"}`,
		`{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1"},"code":{"text":"peanut"},"recordedDate":"2020-01-01"}`,
		`{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"140"}]},"patient":{"reference":"Patient/p2"},"occurrenceDateTime":"2021-10-01"}`,
		`{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1049502"}]},"subject":{"reference":"Patient/p1"},"authoredOn":"2024-03-01"}`,
		`{"resourceType":"Procedure","id":"pr1","status":"completed","subject":{"reference":"Patient/p3"},"performedPeriod":{"start":"2022-01-01"}}`,
		`{"resourceType":"DiagnosticReport","id":"d1","status":"final","code":{"text":"cbc"},"subject":{"reference":"Patient/p3"},"effectiveDateTime":"2022-05-05"}`,
		`{"resourceType":"ImagingStudy","id":"is1","status":"available","subject":{"reference":"Patient/p3"},"started":"2022-05-06T08:00:00Z","series":[{"uid":"1.2.3","modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}}]}`,
	), true)
	if err != nil {
		t.Fatalf("load fixtures: %v", err)
	}
}

func TestSearch(t *testing.T) {
	ts := newTestServer(t, nil)
	loadFixtures(t, ts)
	tests := []struct {
		query string
		want  []string // ids in order when ordered, else sorted
		order bool
	}{
		{"Patient?identifier=urn:mrn|100", []string{"p1"}, false},
		{"Patient?identifier=|100", []string{"p2"}, false},
		{"Patient?identifier=100", []string{"p1", "p2"}, false},
		{"Patient?identifier=urn:mrn|", []string{"p1", "p3"}, false},
		{"Patient?identifier=urn:ssn|A\\|1", []string{"p1"}, false},
		{"Patient?identifier=urn:mrn|100,urn:mrn|300", []string{"p1", "p3"}, false},
		{"Patient?name=mul", []string{"p1", "p2"}, false},
		{"Patient?family=MÜLLER", []string{"p1", "p2"}, false},
		{"Patient?family:exact=Müller", []string{"p1"}, false},
		{"Patient?family:exact=müller", nil, false},
		{"Patient?given:contains=nn", []string{"p2", "p3"}, false},
		{"Patient?given=jorg", []string{"p1"}, false},
		{"Patient?name=ann", []string{"p2", "p3"}, false},
		{"Patient?birthdate=1970", []string{"p1"}, false},
		{"Patient?birthdate=1970-05", []string{"p1"}, false},
		{"Patient?birthdate=eq1970-05-06", []string{"p1"}, false},
		{"Patient?birthdate=ne1970-05-06", []string{"p2", "p3"}, false},
		{"Patient?birthdate=lt1985", []string{"p1"}, false},
		{"Patient?birthdate=le1985", []string{"p1", "p2"}, false},
		{"Patient?birthdate=gt1985-06", []string{"p2", "p3"}, false}, // 1985 overlaps the range above
		{"Patient?birthdate=ge1985-06", []string{"p2", "p3"}, false},
		{"Patient?birthdate=ge1980&birthdate=lt2000", []string{"p2"}, false},
		{"Patient?gender=female", []string{"p2", "p3"}, false},
		{"Patient?gender=female&name=smith", []string{"p3"}, false},
		{"Patient?_id=p1,p3", []string{"p1", "p3"}, false},
		{"Patient?_sort=birthdate", []string{"p1", "p2", "p3"}, true},
		{"Patient?_sort=-birthdate", []string{"p3", "p2", "p1"}, true},
		{"Patient?_lastUpdated=ge2000-01-01", []string{"p1", "p2", "p3"}, false},
		{"Patient?_lastUpdated=lt2000-01-01", nil, false},
		{"Practitioner?identifier=urn:npi|9&name=greg", []string{"dr1"}, false},
		{"Organization?name=other", []string{"o1"}, false},
		{"Organization?name=health", []string{"o2"}, false},
		{"Organization?type=urn:orgtype|prov", []string{"o1"}, false},
		{"Endpoint?_id=e1", []string{"e1"}, false},
		{"Observation?patient=p1", []string{"obs1", "obs2"}, false},
		{"Observation?patient=Patient/p1", []string{"obs1", "obs2"}, false},
		{"Observation?subject=Patient/p2", []string{"obs3"}, false},
		{"Observation?subject=p2", []string{"obs3"}, false},
		{"Observation?subject:Patient=p2", []string{"obs3"}, false},
		{"Observation?patient={base}/Patient/p1", []string{"obs1", "obs2"}, false},
		{"Observation?patient=http://elsewhere.test/fhir/Patient/p1", nil, false},
		{"Observation?code=http://loinc.org|8867-4", []string{"obs1", "obs3"}, false},
		{"Observation?code=8867-4&patient=p1", []string{"obs1"}, false},
		{"Observation?category=vital-signs", []string{"obs1"}, false},
		{"Observation?status=amended", []string{"obs2"}, false},
		{"Observation?date=2024", []string{"obs1", "obs2"}, false},
		{"Observation?date=2024-02-02", nil, false},
		{"Observation?date=ge2024-02-02", []string{"obs2"}, false},
		{"Observation?date=lt2024-01-10T10:00:01Z", []string{"obs1", "obs3"}, false},
		{"Observation?_sort=-date", []string{"obs2", "obs1", "obs3"}, true},
		{"Observation?_sort=date", []string{"obs3", "obs1", "obs2"}, true},
		{"Encounter?date=2024-01-10&patient=p1&class=AMB&status=finished", []string{"enc1"}, false},
		{"Condition?date=2019&code=44054006&subject=p2", []string{"c1"}, false},
		{"AllergyIntolerance?patient=p1&date=2020", []string{"a1"}, false},
		{"Immunization?patient=p2&vaccine-code=140&date=2021-10", []string{"i1"}, false},
		{"MedicationRequest?subject=Patient/p1&code=1049502&date=ge2024", []string{"m1"}, false},
		{"Procedure?patient=p3&date=ge2030", []string{"pr1"}, false},
		{"DiagnosticReport?patient=p3&date=2022-05-05&status=final", []string{"d1"}, false},
		{"ImagingStudy?patient=p3&date=2022-05-06&modality=CT", []string{"is1"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			path := "/" + strings.ReplaceAll(tc.query, "{base}", ts.base)
			typ, rawq, _ := strings.Cut(path, "?")
			vals, err := url.ParseQuery(rawq)
			if err != nil {
				t.Fatal(err)
			}
			r := ts.mustStatus(t, 200, "GET", typ+"?"+vals.Encode(), "")
			got := bundleIDs(t, r)
			if !tc.order {
				sort.Strings(got)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
			if total := int(r.json(t)["total"].(float64)); total != len(tc.want) {
				t.Errorf("total = %d", total)
			}
		})
	}
}

func TestSearchIncludeSummaryAndPost(t *testing.T) {
	ts := newTestServer(t, nil)
	loadFixtures(t, ts)
	r := ts.mustStatus(t, 200, "GET", "/Organization?type=prov&_include=Organization:endpoint", "")
	body := string(r.body)
	if !strings.Contains(body, `"fullUrl":"`+ts.base+`/Endpoint/e1"`) || !strings.Contains(body, `"mode":"include"`) {
		t.Fatalf("include missing: %s", body)
	}
	if r.json(t)["total"].(float64) != 1 {
		t.Errorf("total counts includes: %s", body)
	}
	r = ts.mustStatus(t, 200, "GET", "/Patient?_summary=count", "")
	m := r.json(t)
	if m["total"].(float64) != 3 || m["entry"] != nil {
		t.Fatalf("_summary=count: %s", r.body)
	}
	req := ts.do(t, "POST", "/Patient/_search", "family=smith", "Content-Type", "application/x-www-form-urlencoded")
	if req.status != 200 || !slices.Equal(bundleIDs(t, req), []string{"p3"}) {
		t.Fatalf("POST _search: %d %s", req.status, req.body)
	}
	r = ts.mustStatus(t, 200, "GET", "/Patient?_format=application/fhir%2Bjson&_count=1&_sort=birthdate", "")
	if ids := bundleIDs(t, r); !slices.Equal(ids, []string{"p1"}) {
		t.Fatalf("page 1 = %v", ids)
	}
	next := nextLink(t, r)
	if next == "" {
		t.Fatalf("no next link: %s", r.body)
	}
	r = ts.mustStatus(t, 200, "GET", next, "")
	if ids := bundleIDs(t, r); !slices.Equal(ids, []string{"p2"}) {
		t.Fatalf("page 2 = %v", ids)
	}
	if !strings.Contains(string(r.body), `"relation":"previous"`) {
		t.Errorf("no previous link: %s", r.body)
	}
}

// TestPagingStableUnderConcurrentWrites pages through a search while other
// clients create, update and delete matching resources: every page comes
// from the first page's snapshot, so no id is lost or repeated and the
// total never changes.
func TestPagingStableUnderConcurrentWrites(t *testing.T) {
	ts := newTestServer(t, nil)
	var docs []string
	for i := range 120 {
		docs = append(docs, fmt.Sprintf(`{"resourceType":"Patient","id":"p%03d","gender":"female","birthDate":"19%02d-01-01"}`, i, i%100))
	}
	if err := ts.store.Load(context.Background(), rawList(docs...), false); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 120 {
		want = append(want, fmt.Sprintf("p%03d", i))
	}
	for _, sortParam := range []string{"", "&_sort=-birthdate"} {
		var got []string
		r := ts.mustStatus(t, 200, "GET", "/Patient?gender=female&_count=7"+sortParam, "")
		// Writers start once the first page has fixed the snapshot.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var writes atomic.Int64
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("p%03d", (i*7+w*13)%120)
					var r *response
					switch i % 3 {
					case 0:
						r = ts.do(t, "POST", "/Patient", `{"resourceType":"Patient","gender":"female"}`)
					case 1:
						r = ts.do(t, "PUT", "/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`","gender":"female","birthDate":"1950"}`)
					default:
						r = ts.do(t, "DELETE", "/Patient/"+id, "")
					}
					if r.status >= 500 {
						t.Errorf("write failed: %d %s", r.status, r.body)
						return
					}
					writes.Add(1)
				}
			}()
		}
		total := r.json(t)["total"]
		for {
			got = append(got, bundleIDs(t, r)...)
			if r.json(t)["total"] != total {
				t.Fatalf("total changed between pages")
			}
			next := nextLink(t, r)
			if next == "" {
				break
			}
			for writes.Load() < int64(len(got)) { // make sure writes interleave with paging
				select {
				case <-stop:
				default:
				}
				if t.Failed() {
					break
				}
				runtimeGosched()
			}
			r = ts.mustStatus(t, 200, "GET", next, "")
		}
		close(stop)
		wg.Wait()
		sorted := slices.Clone(got)
		sort.Strings(sorted)
		if !slices.Equal(sorted, want) {
			t.Fatalf("paging%s saw %d ids (want 120), first pages %v", sortParam, len(got), got[:min(len(got), 10)])
		}
		if writes.Load() == 0 {
			t.Fatal("no concurrent writes happened")
		}
		// Reset for the next round.
		if err := ts.store.Load(context.Background(), rawList(docs...), false); err != nil {
			t.Fatal(err)
		}
		rows, _ := ts.store.Search(context.Background(), "Patient", url.Values{"_id": {strings.Join(want[:50], ",")}})
		if rows.Total != 50 {
			t.Fatalf("reload: %d", rows.Total)
		}
		for _, id := range extraIDs(t, ts, want) {
			ts.store.Delete(context.Background(), "Patient", id)
		}
	}
}

func extraIDs(t *testing.T, ts *testServer, keep []string) []string {
	res, err := ts.store.Search(context.Background(), "Patient", url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range res.Entries {
		if !slices.Contains(keep, e.ID) {
			out = append(out, e.ID)
		}
	}
	return out
}
