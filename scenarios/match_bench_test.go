package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smart-sim/sim/fhirstore"
	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/otheras"
)

// matchQuery is one EHR patient OtherAS would look for: its identifiers
// in the world's match systems and the Other record a correct match finds
// ("" for a patient Other does not hold).
type matchQuery struct {
	IDs  []synth.Identifier `json:"ids"`
	Want string             `json:"want"`
}

// matchBench is an Other directory of a given size and patients to match.
type matchBench struct {
	dir            otherDirectory
	shared, absent []matchQuery
}

// benchMatchStore opens an Other FHIR store generated from the default
// world at patients EHR patients (other-only patients make the Other side
// as large), with the queries for shared and absent patients. The store and
// queries are built once and cached in the temp directory across runs.
func benchMatchStore(b *testing.B, patients int) *matchBench {
	b.Helper()
	w := DefaultWorld()
	w.EHR.Patients = patients
	cfg := w.SynthConfig()
	c := synth.ClassCounts(patients, cfg.Overlap)
	cfg.Overlap.OtherOnly = max(0, patients-c[synth.ClassShared]-c[synth.ClassOtherIDOnly]-2*c[synth.ClassAmbiguous])
	name := fmt.Sprintf("sim-match-bench-%d-%s-%s", patients, synth.Version, w.Fingerprint()[:12])
	path := filepath.Join(os.TempDir(), name+".db")
	qpath := filepath.Join(os.TempDir(), name+".queries.json")
	ctx := context.Background()
	if _, err := os.Stat(path + ".done"); err != nil {
		for _, p := range []string{path, path + "-wal", path + "-shm", qpath} {
			os.Remove(p)
		}
		// The Other side streams into the store as it is generated (memory
		// stays bounded at 1 M patients); the EHR side is not kept.
		t0 := time.Now()
		s, err := fhirstore.Open(ctx, fhirstore.Options{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		l, err := s.NewLoader(ctx, fhirstore.LoadOptions{Canonical: true})
		if err != nil {
			b.Fatal(err)
		}
		loaded := 0
		sum, err := synth.Stream(cfg, func(side string, batch []synth.Resource) error {
			if side != synth.SideOther {
				return nil
			}
			for _, r := range batch {
				if err := l.Add(ctx, r.JSON); err != nil {
					return err
				}
			}
			loaded += len(batch)
			return nil
		})
		if cerr := l.Close(ctx); err == nil {
			err = cerr
		}
		s.Close()
		if err != nil {
			b.Fatal(err)
		}
		qs := map[string][]matchQuery{}
		for _, t := range sum.Truth {
			q := matchQuery{Want: t.OtherID}
			for _, id := range t.Identifiers {
				if slices.Contains(w.Match.IdentifierSystems, id.System) {
					q.IDs = append(q.IDs, id)
				}
			}
			if (t.Class == synth.ClassShared || t.Class == synth.ClassAbsent) && len(qs[t.Class]) < 5000 {
				qs[t.Class] = append(qs[t.Class], q)
			}
		}
		qb, err := json.Marshal(qs)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(qpath, qb, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("%d Other resources (%d patients): generated and loaded in %v", loaded, sum.Counts["other/Patient"], time.Since(t0))
		if err := os.WriteFile(path+".done", nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	qb, err := os.ReadFile(qpath)
	if err != nil {
		b.Fatal(err)
	}
	var qs map[string][]matchQuery
	if err := json.Unmarshal(qb, &qs); err != nil {
		b.Fatal(err)
	}
	s, err := fhirstore.Open(ctx, fhirstore.Options{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return &matchBench{dir: otherDirectory{store: s}, shared: qs[synth.ClassShared], absent: qs[synth.ClassAbsent]}
}

// lookup is one identifier lookup of OtherAS's match.
type lookup func(ctx context.Context, system, value string) ([]otheras.PatientRecord, error)

// match is OtherAS's identifier match for one patient: a lookup per
// identifier in the match systems, until one finds records.
func (m *matchBench) match(ctx context.Context, find lookup, q matchQuery) (string, error) {
	for _, id := range q.IDs {
		recs, err := find(ctx, id.System, id.Value)
		if err != nil {
			return "", err
		}
		if len(recs) > 0 {
			return recs[0].ID, nil
		}
	}
	return "", nil
}

// findDirect is otherDirectory.FindByIdentifier on the store's one-query
// identifier lookup (fhirstore.Store.FindByIdentifier) instead of a general
// search.
func (m *matchBench) findDirect(ctx context.Context, system, value string) ([]otheras.PatientRecord, error) {
	entries, err := m.dir.store.FindByIdentifier(ctx, "Patient", system, value, 10)
	if err != nil {
		return nil, err
	}
	return m.dir.records(&fhirstore.SearchResult{Entries: entries})
}

// benchmarkMatch times OtherAS's patient match (otheras.Directory's
// FindByIdentifier over the Other store, as wired by Start: "search") and
// the same match over the store's one-query identifier lookup ("direct"),
// for patients Other holds and patients it does not, and reports p50 and
// p99 per match.
func benchmarkMatch(b *testing.B, patients int) {
	m := benchMatchStore(b, patients)
	for _, c := range []struct {
		name string
		find lookup
		qs   []matchQuery
	}{
		{"search/shared", m.dir.FindByIdentifier, m.shared}, {"search/absent", m.dir.FindByIdentifier, m.absent},
		{"direct/shared", m.findDirect, m.shared}, {"direct/absent", m.findDirect, m.absent},
	} {
		b.Run(c.name, func(b *testing.B) {
			if len(c.qs) == 0 {
				b.Skip("no patient of this class")
			}
			ctx := context.Background()
			lat := make([]time.Duration, 0, 1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				q := c.qs[i%len(c.qs)]
				i++
				t0 := time.Now()
				got, err := m.match(ctx, c.find, q)
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if got != q.Want {
					b.Fatalf("match %v: found %q, want %q", q.IDs, got, q.Want)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func BenchmarkPatientMatch10k(b *testing.B)  { benchmarkMatch(b, 10_000) }
func BenchmarkPatientMatch100k(b *testing.B) { benchmarkMatch(b, 100_000) }

// BenchmarkPatientMatch1M builds a store of 1 M Other patients (minutes,
// gigabytes, once): only with SIM_BENCH_LARGE=1.
func BenchmarkPatientMatch1M(b *testing.B) {
	if os.Getenv("SIM_BENCH_LARGE") == "" {
		b.Skip("set SIM_BENCH_LARGE=1 to match against 1 M patients")
	}
	benchmarkMatch(b, synth.MaxPatients)
}
