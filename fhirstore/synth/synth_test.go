package synth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

const (
	testEHRMRN   = "https://riverside.example.org/fhir/sid/mrn"
	testOtherMRN = "https://northside.example.org/fhir/sid/mrn"
	testShared   = "https://national.example.org/fhir/sid/patient-id"
)

// testConfig mirrors the default world's size and mix.
func testConfig(kind string) Config {
	return Config{
		Seed:          20250601,
		ReferenceDate: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
		EHR:           SideConfig{Name: "Riverside General Hospital", Kind: KindHospital, Patients: 150, MRNSystem: testEHRMRN},
		Other:         SideConfig{Name: "Northside Imaging", Kind: kind, MRNSystem: testOtherMRN},
		SharedSystem:  testShared,
		Overlap:       Overlap{Shared: 0.5, OtherIDOnly: 0.12, Ambiguous: 0.08, Absent: 0.3, OtherOnly: 15, DemographicsDrift: 0.1},
		Clinicians:    []Clinician{{Username: "dr.smith", Password: "smart", Given: "Sarah", Family: "Smith"}, {Username: "dr.jones", Password: "smart"}},
		PortalUsers: []PortalUser{
			{Username: "patient-shared", Password: "smart", Class: ClassShared},
			{Username: "patient-absent", Password: "smart", Class: ClassAbsent},
		},
	}
}

var kinds = []string{KindImaging, KindLab, KindRegionalRecord}

func mustGenerate(t testing.TB, cfg Config) *Population {
	t.Helper()
	p, err := Generate(cfg)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return p
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeterministic(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(kind)
			dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
			countsA, err := WriteNDJSON(mustGenerate(t, cfg), dirA)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := WriteNDJSON(mustGenerate(t, cfg), dirB); err != nil {
				t.Fatal(err)
			}
			a, b := readTree(t, dirA), readTree(t, dirB)
			if len(a) != len(countsA) || len(a) < 5 {
				t.Fatalf("%d files, counts %v", len(a), countsA)
			}
			for name, data := range a {
				if !bytes.Equal(data, b[name]) {
					t.Errorf("%s differs between two runs with the same seed", name)
				}
				if n := bytes.Count(data, []byte("\n")); n != countsA[filepath.ToSlash(name)] {
					t.Errorf("%s has %d lines, counts say %d", name, n, countsA[name])
				}
			}
			cfg.Seed++
			if _, err := WriteNDJSON(mustGenerate(t, cfg), dirC); err != nil {
				t.Fatal(err)
			}
			c := readTree(t, dirC)
			if bytes.Equal(a["ehr/Patient.ndjson"], c["ehr/Patient.ndjson"]) || bytes.Equal(a["other/Patient.ndjson"], c["other/Patient.ndjson"]) {
				t.Errorf("a different seed gave the same patients")
			}
		})
	}
}

func TestSeedZeroIsReproducible(t *testing.T) {
	cfg := testConfig(KindLab)
	cfg.Seed = 0
	cfg.EHR.Patients = 20
	a, b := mustGenerate(t, cfg), mustGenerate(t, cfg)
	if !bytes.Equal(a.EHR[len(a.EHR)-1].JSON, b.EHR[len(b.EHR)-1].JSON) {
		t.Errorf("seed 0 is not reproducible")
	}
}

func TestClassCounts(t *testing.T) {
	tests := []struct {
		n int
		o Overlap
	}{
		{150, Overlap{Shared: 0.5, OtherIDOnly: 0.12, Ambiguous: 0.08, Absent: 0.3}},
		{7, Overlap{Shared: 1.0 / 3, OtherIDOnly: 1.0 / 3, Ambiguous: 1.0 / 3}},
		{10, Overlap{Shared: 0.25, OtherIDOnly: 0.25, Ambiguous: 0.25, Absent: 0.25}},
		{101, Overlap{Shared: 0.6, Absent: 0.1}}, // the remainder goes to absent
		{0, Overlap{Shared: 0.5}},
		{1, Overlap{Shared: 1}},
		{100000, Overlap{Shared: 0.3333, OtherIDOnly: 0.3333, Ambiguous: 0.3333}},
	}
	for _, tc := range tests {
		got := ClassCounts(tc.n, tc.o)
		want := map[string]float64{
			ClassShared: tc.o.Shared, ClassOtherIDOnly: tc.o.OtherIDOnly, ClassAmbiguous: tc.o.Ambiguous,
			ClassAbsent: 1 - tc.o.Shared - tc.o.OtherIDOnly - tc.o.Ambiguous,
		}
		sum := 0
		for c, f := range want {
			sum += got[c]
			if math.Abs(float64(got[c])-f*float64(tc.n)) >= 1 {
				t.Errorf("n=%d %+v: %s = %d, want within 1 of %.2f", tc.n, tc.o, c, got[c], f*float64(tc.n))
			}
		}
		if sum != tc.n {
			t.Errorf("n=%d %+v: counts %v add up to %d", tc.n, tc.o, got, sum)
		}
	}
	// Ties go in class order: 10 × 0.25 = 2.5 each, two left over.
	if got := ClassCounts(10, Overlap{Shared: 0.25, OtherIDOnly: 0.25, Ambiguous: 0.25, Absent: 0.25}); got[ClassShared] != 3 || got[ClassOtherIDOnly] != 3 || got[ClassAmbiguous] != 2 {
		t.Errorf("ties: %v", got)
	}
}

type patientDoc struct {
	ID         string `json:"id"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Name []struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	BirthDate string `json:"birthDate"`
}

func patients(t *testing.T, res []Resource) map[string]patientDoc {
	t.Helper()
	out := map[string]patientDoc{}
	for _, r := range res {
		if r.Type != "Patient" {
			continue
		}
		var p patientDoc
		if err := json.Unmarshal(r.JSON, &p); err != nil {
			t.Fatal(err)
		}
		out[p.ID] = p
	}
	return out
}

func TestTruth(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(kind)
			pop := mustGenerate(t, cfg)
			ehr, other := patients(t, pop.EHR), patients(t, pop.Other)
			// The in-memory "search Other by identifier" OtherAS would run.
			bySystemValue := map[Identifier][]string{}
			for id, p := range other {
				for _, i := range p.Identifier {
					k := Identifier{i.System, i.Value}
					bySystemValue[k] = append(bySystemValue[k], id)
				}
			}
			counts := ClassCounts(cfg.EHR.Patients, cfg.Overlap)
			seen := map[string]int{}
			pairs, drifted := 0, 0
			inTruth := map[string]bool{}
			for _, tr := range pop.Truth {
				seen[tr.Class]++
				ep, ok := ehr[tr.EHRID]
				if !ok {
					t.Fatalf("truth names EHR patient %s that does not exist", tr.EHRID)
				}
				if len(ep.Identifier) != 2 || ep.Identifier[1].System != testShared || tr.Identifiers[1].Value != ep.Identifier[1].Value {
					t.Fatalf("EHR patient %s identifiers %+v, truth %+v", tr.EHRID, ep.Identifier, tr.Identifiers)
				}
				found := bySystemValue[tr.Identifiers[1]]
				slices.Sort(found)
				records := slices.Sorted(slices.Values(tr.OtherRecords))
				for _, r := range tr.OtherRecords {
					if inTruth[r] {
						t.Errorf("Other record %s belongs to two EHR patients", r)
					}
					inTruth[r] = true
				}
				switch tr.Class {
				case ClassShared:
					if len(found) != 1 || found[0] != tr.OtherID || !slices.Equal(records, found) {
						t.Errorf("shared %s: search found %v, truth other_id %q records %v", tr.EHRID, found, tr.OtherID, tr.OtherRecords)
					}
				case ClassAmbiguous:
					if len(found) != 2 || tr.OtherID != "" || !slices.Equal(records, found) {
						t.Errorf("ambiguous %s: search found %v, truth %+v", tr.EHRID, found, tr)
					}
				case ClassOtherIDOnly:
					if len(found) != 0 || tr.OtherID != "" || len(tr.OtherRecords) != 1 {
						t.Errorf("other_id_only %s: search found %v, truth %+v", tr.EHRID, found, tr)
					} else if op := other[tr.OtherRecords[0]]; len(op.Identifier) != 1 || op.Identifier[0].System != testOtherMRN {
						t.Errorf("other_id_only record %s has identifiers %+v", op.ID, op.Identifier)
					}
				case ClassAbsent:
					if len(found) != 0 || tr.OtherID != "" || len(tr.OtherRecords) != 0 {
						t.Errorf("absent %s: search found %v, truth %+v", tr.EHRID, found, tr)
					}
				default:
					t.Errorf("unknown class %q", tr.Class)
				}
				for _, r := range tr.OtherRecords {
					pairs++
					op := other[r]
					same := op.Name[0].Family == ep.Name[0].Family && op.BirthDate == ep.BirthDate && slices.Equal(op.Name[0].Given, ep.Name[0].Given)
					if slices.Contains(tr.Drifted, r) {
						drifted++
						if same {
							t.Errorf("record %s is marked drifted but matches %s", r, tr.EHRID)
						}
					} else if !same {
						t.Errorf("record %s differs from %s but is not marked drifted", r, tr.EHRID)
					}
				}
			}
			for _, c := range Classes {
				if seen[c] != counts[c] || pop.Classes[c] != counts[c] || counts[c] < 5 {
					t.Errorf("class %s: %d in truth, %d in Classes, want %d (and at least 5)", c, seen[c], pop.Classes[c], counts[c])
				}
			}
			if want := int(math.Round(cfg.Overlap.DemographicsDrift * float64(pairs))); drifted != want {
				t.Errorf("%d of %d pairs drifted, want %d", drifted, pairs, want)
			}
			if len(pop.OtherOnly) != cfg.Overlap.OtherOnly || len(other) != pairs+cfg.Overlap.OtherOnly {
				t.Errorf("other-only %d, other patients %d, pairs %d", len(pop.OtherOnly), len(other), pairs)
			}
			ehrShared := map[string]bool{}
			for _, tr := range pop.Truth {
				ehrShared[tr.Identifiers[1].Value] = true
			}
			for _, id := range pop.OtherOnly {
				if inTruth[id] {
					t.Errorf("other-only %s is also in the truth", id)
				}
				for _, i := range other[id].Identifier {
					if i.System == testShared && ehrShared[i.Value] {
						t.Errorf("other-only %s carries an EHR patient's shared identifier", id)
					}
				}
			}
		})
	}
}

func TestCodeCacheCoversEverything(t *testing.T) {
	before := cacheMisses.Load()
	for _, kind := range kinds {
		mustGenerate(t, testConfig(kind))
	}
	if n := cacheMisses.Load() - before; n != 0 {
		t.Errorf("%d codings or concepts were built outside the cache; add them to fixedCodes", n)
	}
	for c, o := range conceptCache {
		if !slices.IsSortedFunc(o, func(a, b kv) int { return strings.Compare(a.k, b.k) }) {
			t.Errorf("cached concept %v is not in key order", c)
		}
	}
	for c, o := range codingCache {
		if !slices.IsSortedFunc(o, func(a, b kv) int { return strings.Compare(a.k, b.k) }) {
			t.Errorf("cached coding %v is not in key order", c)
		}
	}
}

// TestDatesAfterBirth: nothing happens to a patient before their birth or
// after the reference date.
func TestDatesAfterBirth(t *testing.T) {
	for _, kind := range kinds {
		cfg := testConfig(kind)
		cfg.EHR.Patients = 500
		pop := mustGenerate(t, cfg)
		for side, res := range map[string][]Resource{"ehr": pop.EHR, "other": pop.Other} {
			birth := map[string]string{}
			for id, p := range patients(t, res) {
				birth["Patient/"+id] = p.BirthDate
			}
			for _, r := range res {
				var doc struct {
					Subject, Patient           struct{ Reference string }
					Period                     struct{ Start string }
					Started, EffectiveDateTime string
					OnsetDateTime              string
					OccurrenceDateTime         string
				}
				if err := json.Unmarshal(r.JSON, &doc); err != nil {
					t.Fatal(err)
				}
				who := doc.Subject.Reference + doc.Patient.Reference
				if who == "" {
					continue
				}
				b := birth[who]
				for _, d := range []string{doc.Period.Start, doc.Started, doc.EffectiveDateTime, doc.OnsetDateTime, doc.OccurrenceDateTime} {
					if d == "" {
						continue
					}
					if d[:10] < b || d[:10] > fhirDate(cfg.ReferenceDate) {
						t.Errorf("%s %s/%s: date %s, but %s was born %s", side, r.Type, r.ID, d, who, b)
					}
				}
			}
		}
	}
}

func TestUsers(t *testing.T) {
	cfg := testConfig(KindImaging)
	pop := mustGenerate(t, cfg)
	if len(pop.Users) != 4 {
		t.Fatalf("users %+v", pop.Users)
	}
	ids := map[string]Resource{}
	for _, r := range pop.EHR {
		ids[r.Type+"/"+r.ID] = r
	}
	class := map[string]string{}
	for _, tr := range pop.Truth {
		class["Patient/"+tr.EHRID] = tr.Class
	}
	for _, u := range pop.Users {
		r, ok := ids[u.FHIRUser]
		if !ok {
			t.Errorf("user %s: fhirUser %s does not resolve", u.Username, u.FHIRUser)
		}
		switch u.Kind {
		case UserClinician:
			if r.Type != "Practitioner" {
				t.Errorf("clinician %s is a %s", u.Username, r.Type)
			}
		case UserPatient:
			want := map[string]string{"patient-shared": ClassShared, "patient-absent": ClassAbsent}[u.Username]
			if class[u.FHIRUser] != want {
				t.Errorf("portal user %s linked to a %s patient, want %s", u.Username, class[u.FHIRUser], want)
			}
		}
	}
	if !bytes.Contains(ids[pop.Users[0].FHIRUser].JSON, []byte(`"family":"Smith","given":["Sarah"]`)) {
		t.Errorf("dr.smith's Practitioner: %s", ids[pop.Users[0].FHIRUser].JSON)
	}

	// Linking by id.
	cfg.PortalUsers = []PortalUser{{Username: "by-id", Password: "x", Patient: pop.Truth[3].EHRID}}
	if p := mustGenerate(t, cfg); p.Users[2].FHIRUser != "Patient/"+pop.Truth[3].EHRID {
		t.Errorf("by id: %+v", p.Users[2])
	}
	for name, pu := range map[string][]PortalUser{
		"unknown id":      {{Username: "u", Patient: "pat-nope"}},
		"class exhausted": {{Username: "a", Class: ClassAbsent}, {Username: "b", Class: ClassAbsent}},
		"duplicate":       {{Username: "dr.smith", Class: ClassShared}},
	} {
		c := testConfig(KindImaging)
		c.EHR.Patients = 4
		c.Overlap = Overlap{Shared: 0.25, Absent: 0.25, OtherIDOnly: 0.5}
		c.PortalUsers = pu
		if _, err := Generate(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestGenerateRejectsBadConfig(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"negative patients":   func(c *Config) { c.EHR.Patients = -1 },
		"fraction over 1":     func(c *Config) { c.Overlap.Shared = 1.5 },
		"NaN":                 func(c *Config) { c.Overlap.DemographicsDrift = math.NaN() },
		"sum over 1":          func(c *Config) { c.Overlap.Absent = 0.9 },
		"unknown kind":        func(c *Config) { c.Other.Kind = "pharmacy" },
		"no reference date":   func(c *Config) { c.ReferenceDate = time.Time{} },
		"no shared system":    func(c *Config) { c.SharedSystem = "" },
		"too many other-only": func(c *Config) { c.Overlap.OtherOnly = MaxPatients + 1 },
	} {
		cfg := testConfig(KindLab)
		mutate(&cfg)
		if _, err := Generate(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// collectRefs finds every "reference" string in a decoded JSON value.
func collectRefs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				*out = append(*out, s)
				continue
			}
			collectRefs(e, out)
		}
	case []any:
		for _, e := range x {
			collectRefs(e, out)
		}
	}
}

func TestReferencesResolveAndIDs(t *testing.T) {
	for _, kind := range kinds {
		pop := mustGenerate(t, testConfig(kind))
		for side, res := range map[string][]Resource{"ehr": pop.EHR, "other": pop.Other} {
			have := map[string]bool{}
			for _, r := range res {
				if !idRE.MatchString(r.ID) {
					t.Errorf("%s %s/%s: bad id", side, r.Type, r.ID)
				}
				key := r.Type + "/" + r.ID
				if have[key] {
					t.Errorf("%s: duplicate %s", side, key)
				}
				have[key] = true
			}
			nrefs := 0
			for _, r := range res {
				var v any
				if err := json.Unmarshal(r.JSON, &v); err != nil {
					t.Fatal(err)
				}
				var refs []string
				collectRefs(v, &refs)
				for _, ref := range refs {
					nrefs++
					if !have[ref] {
						t.Errorf("%s/%s %s/%s: reference %s does not resolve on its side", kind, side, r.Type, r.ID, ref)
					}
				}
			}
			if nrefs < len(res) {
				t.Errorf("%s/%s: only %d references in %d resources", kind, side, nrefs, len(res))
			}
		}
	}
}

// TestValidR4 runs every resource of a default-size world, for each kind of
// Other organisation, through google/fhir's validating R4 parser.
func TestValidR4(t *testing.T) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	// The validator does catch what we could get wrong.
	for _, bad := range []string{
		`{"resourceType":"Patient","id":"p1","gender":"robot"}`,
		`{"resourceType":"Observation","id":"o1","code":{"text":"x"}}`,
		`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"MedicationRequest/m1"}}`,
		`{"resourceType":"Patient","id":"not_a valid id"}`,
		`{"resourceType":"Encounter","id":"e1","status":"finished"}`,
	} {
		if _, err := um.UnmarshalR4([]byte(bad)); err == nil {
			t.Errorf("validator accepted %s", bad)
		}
	}
	for _, kind := range kinds {
		pop := mustGenerate(t, testConfig(kind))
		for side, res := range map[string][]Resource{"ehr": pop.EHR, "other": pop.Other} {
			types := map[string]int{}
			for _, r := range res {
				types[r.Type]++
				if _, err := um.UnmarshalR4(r.JSON); err != nil {
					t.Errorf("%s/%s %s/%s: %v\n%s", kind, side, r.Type, r.ID, err, r.JSON)
				}
			}
			t.Logf("%s/%s: %d resources %v", kind, side, len(res), types)
		}
	}
}

// TestValidR4Sample validates a sample of a larger world, where rare branches
// show up more often.
func TestValidR4Sample(t *testing.T) {
	if testing.Short() {
		t.Skip("large world")
	}
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range kinds {
		cfg := testConfig(kind)
		cfg.EHR.Patients = 2000
		cfg.Seed = 7
		pop := mustGenerate(t, cfg)
		for _, res := range [][]Resource{pop.EHR, pop.Other} {
			for i := 0; i < len(res); i += 13 {
				if _, err := um.UnmarshalR4(res[i].JSON); err != nil {
					t.Errorf("%s %s/%s: %v\n%s", kind, res[i].Type, res[i].ID, err, res[i].JSON)
				}
			}
		}
	}
}

func TestEncoderMatchesEncodingJSON(t *testing.T) {
	pop := mustGenerate(t, testConfig(KindImaging))
	for _, r := range append(slices.Clone(pop.EHR), pop.Other...) {
		var v any
		if err := json.Unmarshal(r.JSON, &v); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if got := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, r.JSON) {
			t.Fatalf("%s/%s: encoding/json gives\n%s\nwe wrote\n%s", r.Type, r.ID, got, r.JSON)
		}
	}
	odd := obj{{"s", "a<b>&\"\\\n\t\x01\u2028é\xff"}, {"f", arr{0.1, 1e21, 1e-7, 120.0, -3.25, 0.0}}, {"n", nil}, {"b", false}, {"i", -4}}
	mapOdd := map[string]any{}
	for _, m := range odd {
		mapOdd[m.k] = m.v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(mapOdd); err != nil {
		t.Fatal(err)
	}
	if got, want := string(appendJSON(nil, odd)), string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))); got != want {
		t.Errorf("appendJSON\n%s\nencoding/json\n%s", got, want)
	}
}

func TestNPICheckDigit(t *testing.T) {
	// 1234567893 is the example NPI from the CMS check-digit specification.
	valid := func(s string) bool {
		digits := "80840" + s
		sum := 0
		for i := len(digits) - 1; i >= 0; i-- {
			d := int(digits[i] - '0')
			if (len(digits)-1-i)%2 == 1 {
				d *= 2
				if d > 9 {
					d -= 9
				}
			}
			sum += d
		}
		return sum%10 == 0
	}
	if !valid("1234567893") {
		t.Fatal("check is wrong")
	}
	f := newFaker(1)
	for range 100 {
		if n := npi(f); len(n) != 10 || !valid(n) {
			t.Errorf("npi %s is not valid", n)
		}
	}
}

// sizedConfig is the imaging world with patients EHR patients and, with
// other-only patients making up the difference, as many Other patients.
func sizedConfig(patients int) Config {
	cfg := testConfig(KindImaging)
	cfg.EHR.Patients = patients
	c := ClassCounts(patients, cfg.Overlap)
	cfg.Overlap.OtherOnly = max(0, patients-c[ClassShared]-c[ClassOtherIDOnly]-2*c[ClassAmbiguous])
	return cfg
}

// benchmarkGenerate generates patients EHR patients and, with other-only
// patients making up the difference, as many Other patients.
func benchmarkGenerate(b *testing.B, patients int) {
	cfg := sizedConfig(patients)
	b.ReportAllocs()
	var res, people int
	for b.Loop() {
		pop, err := Generate(cfg)
		if err != nil {
			b.Fatal(err)
		}
		res = len(pop.EHR) + len(pop.Other)
		people = pop.Counts["ehr/Patient"] + pop.Counts["other/Patient"]
	}
	b.ReportMetric(float64(people)*float64(b.N)/b.Elapsed().Seconds(), "patients/s")
	b.ReportMetric(float64(res), "resources")
}

// BenchmarkGenerate100k: 100 000 patients on each side (imaging Other).
// Goal: one op in at most 10 s on 2 cores.
func BenchmarkGenerate100k(b *testing.B) { benchmarkGenerate(b, 100_000) }

// BenchmarkGenerateDefault is the default world's size.
func BenchmarkGenerateDefault(b *testing.B) { benchmarkGenerate(b, 150) }

func ExampleGenerate() {
	cfg := testConfig(KindLab)
	cfg.EHR.Patients = 10
	pop, err := Generate(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pop.Classes)
	// Output: map[absent:3 ambiguous:1 other_id_only:1 shared:5]
}
