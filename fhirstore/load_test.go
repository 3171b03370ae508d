package fhirstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/fhirstore/synth"
)

// schema lists the store's indexes and their SQL.
func schema(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.db.Read.Query(`SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'index' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, q string
		if err := rows.Scan(&name, &q); err != nil {
			t.Fatal(err)
		}
		out = append(out, name+": "+q)
	}
	return out
}

// checkNormalPragmas: the writer is back to the settings outside a load.
func checkNormalPragmas(t *testing.T, s *Store) {
	t.Helper()
	for _, p := range []struct {
		name string
		want int
	}{{"synchronous", 1}, {"cache_size", -normalCacheKiB}, {"temp_store", 2}} {
		var v int
		if err := s.db.Write.QueryRow(`PRAGMA ` + p.name).Scan(&v); err != nil || v != p.want {
			t.Errorf("pragma %s = %d (%v), want %d", p.name, v, err, p.want)
		}
	}
}

// TestInitialLoadRebuildsIndexes: an initial load ends with exactly the
// migrations' indexes (the deferred list matches them) and restores the
// normal pragmas; a load into a non-empty store defers nothing.
func TestInitialLoadRebuildsIndexes(t *testing.T) {
	ctx := context.Background()
	fresh := openTestStore(t, "")
	want := schema(t, fresh)
	for _, ix := range deferredIndexes {
		if !slices.ContainsFunc(want, func(s string) bool {
			return strings.HasPrefix(s, ix.name+": ") && strings.HasSuffix(s, ix.create[len("CREATE INDEX "+ix.name):])
		}) {
			t.Errorf("deferred index %s is not the migration's: %v", ix.name, want)
		}
	}
	s := openTestStore(t, "")
	l, err := s.NewLoader(ctx, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.initial {
		t.Fatal("a new store's load is not initial")
	}
	if got := schema(t, s); len(got) != len(want)-len(deferredIndexes) {
		t.Errorf("during the load: %v", got)
	}
	for i := range 12 {
		if err := l.Add(ctx, fmt.Appendf(nil, `{"resourceType":"Patient","id":"p%d","identifier":[{"system":"urn:mrn","value":"%d"}]}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := schema(t, s); !slices.Equal(got, want) {
		t.Errorf("indexes after the load:\n%v\nwant\n%v", got, want)
	}
	checkNormalPragmas(t, s)
	l, err = s.NewLoader(ctx, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.initial {
		t.Error("a load into a non-empty store is initial")
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindByIdentifier(ctx, "Patient", "urn:mrn", "7", 10)
	if err != nil || len(got) != 1 || got[0].ID != "p7" {
		t.Errorf("find after load: %+v %v", got, err)
	}
}

// TestInitialLoadRepeatedID: an id loaded twice, in one batch or across
// batches of an initial load, becomes version 2, as in any other load.
func TestInitialLoadRepeatedID(t *testing.T) {
	ctx := context.Background()
	for _, initial := range []bool{true, false} {
		s := openTestStore(t, "")
		if !initial {
			if err := s.Load(ctx, rawList(`{"resourceType":"Practitioner","id":"x"}`), false); err != nil {
				t.Fatal(err)
			}
		}
		var res []json.RawMessage
		res = append(res, json.RawMessage(`{"resourceType":"Patient","id":"twice","gender":"male","identifier":[{"system":"urn:a","value":"1"}]}`))
		for i := range loadBatch + 10 {
			res = append(res, json.RawMessage(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, i)))
		}
		res = append(res, json.RawMessage(`{"resourceType":"Patient","id":"twice","gender":"female","identifier":[{"system":"urn:a","value":"2"}]}`))
		res = append(res, json.RawMessage(`{"resourceType":"Patient","id":"p3","gender":"other"}`))
		if err := s.Load(ctx, res, false); err != nil {
			t.Fatalf("initial %v: %v", initial, err)
		}
		for id, want := range map[string]string{"twice": `"gender":"female"`, "p3": `"gender":"other"`} {
			v, err := s.ReadVersion(ctx, "Patient", id, 0)
			if err != nil || v.Version != 2 || !strings.Contains(string(v.Body), want) || !strings.Contains(string(v.Body), `"versionId":"2"`) {
				t.Errorf("initial %v: %s: %+v %v", initial, id, v, err)
			}
		}
		for value, want := range map[string]int{"1": 0, "2": 1} {
			got, err := s.FindByIdentifier(ctx, "Patient", "urn:a", value, 10)
			if err != nil || len(got) != want {
				t.Errorf("initial %v: identifier %s: %d found (%v), want %d", initial, value, len(got), err, want)
			}
		}
		r, err := s.Search(ctx, "Patient", url.Values{"_summary": {"count"}})
		if err != nil || r.Total != loadBatch+11 {
			t.Errorf("initial %v: %d patients (%v)", initial, r.Total, err)
		}
	}
}

// TestLoadErrors: a bad body fails the load with its position; what was
// committed before stays readable and indexed.
func TestLoadErrors(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "")
	var res []json.RawMessage
	for i := range loadBatch {
		res = append(res, json.RawMessage(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","identifier":[{"system":"urn:mrn","value":"%d"}]}`, i, i)))
	}
	res = append(res, json.RawMessage(`{"resourceType":"Patient","id":"ok"}`), json.RawMessage(`{"resourceType":"Nope","id":"x"}`))
	err := s.Load(ctx, res, false)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("resource %d", loadBatch+1)) {
		t.Fatalf("error %v", err)
	}
	if got, err := s.FindByIdentifier(ctx, "Patient", "urn:mrn", "42", 10); err != nil || len(got) != 1 {
		t.Errorf("committed batch: %+v %v", got, err)
	}
	if _, err := s.Read(ctx, "Patient", "ok"); err == nil {
		t.Error("the failed batch was written in part")
	}
	if got := schema(t, s); len(got) != len(schema(t, openTestStore(t, ""))) {
		t.Errorf("indexes after a failed load: %v", got)
	}
}

// TestLoadWriteErrorComesAtTheNextBatch: a batch is written while the
// next is added, so a batch that fails to be written fails the Add that
// completes the batch after it, and every call after; the batches before
// it stay, and the batch after it is not written.
func TestLoadWriteErrorComesAtTheNextBatch(t *testing.T) {
	for _, initial := range []bool{true, false} {
		t.Run(fmt.Sprintf("initial=%v", initial), func(t *testing.T) {
			ctx := context.Background()
			s := openTestStore(t, "")
			if !initial {
				if err := s.Load(ctx, rawList(`{"resourceType":"Patient","id":"first"}`), false); err != nil {
					t.Fatal(err)
				}
			}
			refuseBoom(t, s)
			l, err := s.NewLoader(ctx, LoadOptions{Canonical: true})
			if err != nil {
				t.Fatal(err)
			}
			patient := func(i int) []byte {
				id := "p" + strconv.Itoa(i)
				if i == loadBatch+10 { // in the second batch
					id = "boom"
				}
				return fmt.Appendf(nil, `{"identifier":[{"system":"urn:mrn","value":"%d"}],"id":%q,"resourceType":"Patient"}`, i, id)
			}
			failedAt := -1
			for i := range 4 * loadBatch {
				if err := l.Add(ctx, patient(i)); err != nil {
					if !strings.Contains(err.Error(), "refused") {
						t.Fatalf("Add %d: %v, want the trigger's refusal", i, err)
					}
					if failedAt < 0 {
						failedAt = i
					}
				} else if failedAt >= 0 {
					t.Fatalf("Add %d succeeded after Add %d failed", i, failedAt)
				}
			}
			if failedAt != 3*loadBatch-1 {
				t.Errorf("the first Add to fail was number %d, want %d (the one that completes the third batch)", failedAt, 3*loadBatch-1)
			}
			if err := l.Close(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("Close: %v, want the trigger's refusal", err)
			}
			for mrn, want := range map[int]int{0: 1, loadBatch - 1: 1, loadBatch: 0, 2 * loadBatch: 0} {
				if got, err := s.FindByIdentifier(ctx, "Patient", "urn:mrn", strconv.Itoa(mrn), 10); err != nil || len(got) != want {
					t.Errorf("mrn %d: %d found (%v), want %d", mrn, len(got), err, want)
				}
			}
			checkNormalPragmas(t, s)
		})
	}
}

// TestLoadStopsBetweenBatchesWhenCancelled: a load whose context is
// cancelled stops at its next batch with the context's error; the
// batches written before stay, whole, and the store stays searchable.
func TestLoadStopsBetweenBatchesWhenCancelled(t *testing.T) {
	for _, initial := range []bool{true, false} {
		t.Run(fmt.Sprintf("initial=%v", initial), func(t *testing.T) {
			s := openTestStore(t, "")
			if !initial {
				if err := s.Load(context.Background(), []json.RawMessage{json.RawMessage(`{"resourceType":"Patient","id":"first"}`)}, false); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l, err := s.NewLoader(ctx, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			patient := func(i int) []byte {
				return fmt.Appendf(nil, `{"resourceType":"Patient","id":"p%d","identifier":[{"system":"urn:mrn","value":"%d"}]}`, i, i)
			}
			for i := range loadBatch + 1 { // the first batch is written
				if err := l.Add(ctx, patient(i)); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			var addErr error
			for i := loadBatch + 1; i < 2*loadBatch && addErr == nil; i++ {
				addErr = l.Add(ctx, patient(i))
			}
			if !errors.Is(addErr, context.Canceled) {
				t.Fatalf("Add after cancel: %v, want context.Canceled", addErr)
			}
			if err := l.Close(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Close: %v, want context.Canceled", err)
			}
			bg := context.Background()
			for _, mrn := range []string{"0", strconv.Itoa(loadBatch - 1)} {
				if got, err := s.FindByIdentifier(bg, "Patient", "urn:mrn", mrn, 10); err != nil || len(got) != 1 {
					t.Errorf("written batch, mrn %s: %+v %v", mrn, got, err)
				}
			}
			if _, err := s.Read(bg, "Patient", "p"+strconv.Itoa(loadBatch)); err == nil {
				t.Error("a resource queued after the cancel was written")
			}
			if got, want := schema(t, s), schema(t, openTestStore(t, "")); !slices.Equal(got, want) {
				t.Errorf("indexes after a cancelled load:\n%v\nwant\n%v", got, want)
			}
			checkNormalPragmas(t, s)
		})
	}
}

// TestCanonicalLoadMatchesReencoding: for generated resources, splicing
// meta into the body stores the bytes decoding and re-encoding stores,
// with the same index rows.
func TestCanonicalLoadMatchesReencoding(t *testing.T) {
	ctx := context.Background()
	cfg := synth.Config{
		Seed: 7, ReferenceDate: time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC),
		EHR:          synth.SideConfig{Name: "EHR", Kind: synth.KindHospital, Patients: 60, MRNSystem: "urn:ehr"},
		Other:        synth.SideConfig{Name: "Lab", Kind: synth.KindLab, MRNSystem: "urn:lab"},
		SharedSystem: "urn:shared",
		Overlap:      synth.Overlap{Shared: 0.5, OtherIDOnly: 0.1, Ambiguous: 0.1, OtherOnly: 5, DemographicsDrift: 0.2},
		Clinicians:   []synth.Clinician{{Username: "dr", Password: "x"}},
	}
	pop, err := synth.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	open := func(name string) *Store {
		s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), name), Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open("a.db"), open("b.db")
	for _, side := range [][]synth.Resource{pop.EHR, pop.Other} {
		la, err := a.NewLoader(ctx, LoadOptions{Canonical: true})
		if err != nil {
			t.Fatal(err)
		}
		var raws []json.RawMessage
		for _, r := range side {
			if err := la.Add(ctx, r.JSON); err != nil {
				t.Fatal(err)
			}
			raws = append(raws, r.JSON)
		}
		if err := la.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Load(ctx, raws, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`SELECT type || '/' || id || ' ' || version || ' ' || body FROM res ORDER BY vid`,
		`SELECT type || param || value || system || vid FROM token_idx ORDER BY 1`,
		`SELECT type || param || norm || raw || vid FROM string_idx ORDER BY 1`,
		`SELECT type || param || lo || hi || vid FROM date_idx ORDER BY 1`,
		`SELECT type || param || ttype || tid || base || vid FROM ref_idx ORDER BY 1`,
	} {
		ra, rb := column(t, a, q), column(t, b, q)
		if len(ra) < 100 || !slices.Equal(ra, rb) {
			t.Errorf("%s: %d rows spliced, %d re-encoded, or they differ", q, len(ra), len(rb))
		}
	}
}

// column is the one column of q's rows, read through the store's readers.
func column(t *testing.T, s *Store, q string) []string {
	t.Helper()
	return columnOn(t, s.db.Read, q)
}

func columnOn(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSpliceMeta: meta lands at its sorted place, or the body is refused.
func TestSpliceMeta(t *testing.T) {
	m := `"meta":{"lastUpdated":"L","versionId":"3"}`
	for _, c := range []struct{ in, want string }{
		{`{}`, `{` + m + `}`},
		{`{"a":1}`, `{"a":1,` + m + `}`},
		{`{"id":"x","resourceType":"P"}`, `{"id":"x",` + m + `,"resourceType":"P"}`},
		{`{"z":{"a":[1,{"b":"}"}]}}`, `{` + m + `,"z":{"a":[1,{"b":"}"}]}}`},
		{`{"a":"q\"],{","n":null}`, `{"a":"q\"],{",` + m + `,"n":null}`},
		{`{"meta":{}}`, ``},
		{`{"a\u0041":1}`, ``},
		{`{"a":1,}`, ``},
		{`{"a":1 }`, ``},
		{`["a"]`, ``},
		{`{"a":"unterminated}`, ``},
		{`{"a"}`, ``},
	} {
		var got []byte
		at, ok := metaPlace([]byte(c.in))
		if ok {
			got = spliceMeta([]byte(c.in), at, 3, "L")
		}
		if string(got) != c.want || ok != (c.want != "") {
			t.Errorf("%s: %s %v, want %s", c.in, got, ok, c.want)
		}
		if ok {
			var v map[string]any
			if err := json.Unmarshal(got, &v); err != nil {
				t.Errorf("%s: spliced body is not JSON: %v", c.in, err)
			}
		}
	}
}
