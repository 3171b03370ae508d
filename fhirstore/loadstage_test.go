package fhirstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/fhirstore/synth"
)

// indexRowsByResource lists every index row with the type and id of the
// resource version it belongs to instead of its vid, sorted, so that
// stores whose vids differ can be compared.
func indexRowsByResource(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT 'token ' || i.type || '|' || param || '|' || value || '|' || system || ' ' || r.id || '/' || r.version FROM token_idx i JOIN res r USING (vid)`,
		`SELECT 'string ' || i.type || '|' || param || '|' || norm || '|' || raw || ' ' || r.id || '/' || r.version FROM string_idx i JOIN res r USING (vid)`,
		`SELECT 'date ' || i.type || '|' || param || '|' || lo || '|' || hi || ' ' || r.id || '/' || r.version FROM date_idx i JOIN res r USING (vid)`,
		`SELECT 'ref ' || i.type || '|' || param || '|' || ttype || '|' || tid || '|' || base || ' ' || r.id || '/' || r.version FROM ref_idx i JOIN res r USING (vid)`,
	} {
		out = append(out, column(t, s, q)...)
	}
	slices.Sort(out)
	return out
}

// orphanIndexRows counts index rows whose version is not in res.
func orphanIndexRows(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	for _, tbl := range []string{"token_idx", "string_idx", "date_idx", "ref_idx"} {
		var c int
		if err := s.db.Read.QueryRow(`SELECT count(*) FROM ` + tbl + ` WHERE vid NOT IN (SELECT vid FROM res)`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// refuseBoom makes the store refuse to write a resource whose id is
// "boom", with the error "refused": a write that fails half-way.
func refuseBoom(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.db.Write.Exec(`CREATE TRIGGER refuse_boom BEFORE INSERT ON res WHEN NEW.id = 'boom' BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
}

// tempTables lists the writer connection's temporary tables, where an
// initial load stages its index rows.
func tempTables(t *testing.T, s *Store) []string {
	t.Helper()
	return columnOn(t, s.db.Write, `SELECT name FROM sqlite_temp_master WHERE type = 'table' ORDER BY name`)
}

// TestInitialLoadIndexesAsOtherLoads: an initial load, which stages its
// index rows and moves them at Close, ends with exactly the index rows a
// load into a non-empty store writes directly, for a generated world of
// two batches and more, each in a transaction of its own (rows repeated
// within a resource included), and leaves no staging table behind. During
// the load the rows are staged, not in the index tables.
func TestInitialLoadIndexesAsOtherLoads(t *testing.T) {
	ctx := context.Background()
	pop, err := synth.Generate(synth.Config{
		Seed: 11, ReferenceDate: time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC),
		EHR:          synth.SideConfig{Name: "EHR", Kind: synth.KindHospital, Patients: 1900, MRNSystem: "urn:ehr"},
		Other:        synth.SideConfig{Name: "Lab", Kind: synth.KindLab, MRNSystem: "urn:lab"},
		SharedSystem: "urn:shared",
		Overlap:      synth.Overlap{Shared: 0.5},
		Clinicians:   []synth.Clinician{{Username: "dr", Password: "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var res []json.RawMessage
	for _, r := range pop.EHR {
		res = append(res, r.JSON)
	}
	res = append(res, json.RawMessage(`{"resourceType":"Patient","id":"twice-over","identifier":[{"system":"urn:a","value":"1"},{"system":"urn:a","value":"1"}],"name":[{"family":"Ode"},{"family":"Ode"}]}`))
	if len(res) < 2*loadBatch {
		t.Fatalf("%d resources: fewer than two batches", len(res))
	}

	initial := openTestStore(t, "")
	l, err := initial.NewLoader(ctx, LoadOptions{Canonical: true})
	if err != nil {
		t.Fatal(err)
	}
	l.txChunks = 1
	for _, r := range res[:2*loadBatch-1] { // one batch committed, one queued
		if err := l.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// The staging tables are the writer connection's, free between the
	// load's transactions.
	var inTable, staged int
	if err := initial.db.Write.QueryRow(`SELECT (SELECT count(*) FROM token_idx), (SELECT count(*) FROM temp.load_token_idx)`).Scan(&inTable, &staged); err != nil || inTable != 0 || staged == 0 {
		t.Errorf("during an initial load: %d token rows in token_idx, %d staged (%v); want them all staged", inTable, staged, err)
	}
	for _, r := range res[2*loadBatch-1:] {
		if err := l.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	direct := openTestStore(t, "")
	if err := direct.Load(ctx, rawList(`{"resourceType":"Practitioner","id":"first","name":[{"family":"Q"}]}`), false); err != nil {
		t.Fatal(err)
	}
	if err := direct.Load(ctx, res, false); err != nil {
		t.Fatal(err)
	}
	got, want := indexRowsByResource(t, initial), indexRowsByResource(t, direct)
	want = slices.DeleteFunc(want, func(r string) bool { return strings.HasSuffix(r, " first/1") })
	if len(got) < 5*len(res) || !slices.Equal(got, want) {
		t.Errorf("initial load: %d index rows, direct load: %d, or they differ", len(got), len(want))
	}
	if n := orphanIndexRows(t, initial); n != 0 {
		t.Errorf("%d index rows of no version", n)
	}
	if tt := tempTables(t, initial); len(tt) != 0 {
		t.Errorf("temporary tables left: %v", tt)
	}
	checkNormalPragmas(t, initial)
}

// TestInitialLoadFailedBatchStagesNothing: a batch that fails half-way
// through its writes is rolled back with the rows it staged; the batch
// before it is searchable after Close.
func TestInitialLoadFailedBatchStagesNothing(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "")
	refuseBoom(t, s)
	org := func(id string, n int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"resourceType":"Organization","id":%q,"identifier":[{"system":"urn:org","value":"%d"}],"name":"Org %d","endpoint":[{"reference":"Endpoint/e%d"}]}`, id, n, n, n))
	}
	var res []json.RawMessage
	for i := range loadBatch + 100 {
		res = append(res, org(fmt.Sprint("o", i), i))
	}
	res = append(res, org("boom", -1))
	err := s.Load(ctx, res, false)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("load: %v, want the trigger's refusal", err)
	}
	if got, err := s.FindByIdentifier(ctx, "Organization", "urn:org", "42", 10); err != nil || len(got) != 1 {
		t.Errorf("written batch: %+v %v", got, err)
	}
	for _, n := range []string{fmt.Sprint(loadBatch), fmt.Sprint(loadBatch + 99)} {
		if got, err := s.FindByIdentifier(ctx, "Organization", "urn:org", n, 10); err != nil || len(got) != 0 {
			t.Errorf("failed batch, identifier %s: %+v %v", n, got, err)
		}
	}
	if n := orphanIndexRows(t, s); n != 0 {
		t.Errorf("%d index rows of no version", n)
	}
	for _, tbl := range []string{"token_idx", "string_idx", "ref_idx"} {
		var rows int
		if err := s.db.Read.QueryRow(`SELECT count(*) FROM ` + tbl).Scan(&rows); err != nil || rows != loadBatch {
			t.Errorf("%s: %d rows (%v), want one for each resource of the written batch", tbl, rows, err)
		}
	}
	if tt := tempTables(t, s); len(tt) != 0 {
		t.Errorf("temporary tables left: %v", tt)
	}
}

// TestInitialLoadMoveFailure: a staging table that cannot be moved fails
// Close, naming its table, and the others are moved all the same; one
// whose connection lost it is reported so.
func TestInitialLoadMoveFailure(t *testing.T) {
	ctx := context.Background()
	org := func(i int) []byte {
		return fmt.Appendf(nil, `{"resourceType":"Organization","id":"o%d","identifier":[{"system":"urn:org","value":"%d"}],"name":"Org %d","endpoint":[{"reference":"Endpoint/e%d"}]}`, i, i, i, i)
	}
	for _, tc := range []struct {
		name, sabotage, want string
		moved                []string
	}{
		{"refused", `CREATE TRIGGER refuse_tokens BEFORE INSERT ON token_idx BEGIN SELECT RAISE(ABORT, 'no tokens'); END`,
			"move index rows into token_idx: constraint failed: no tokens", []string{"string_idx", "ref_idx"}},
		{"lost", `DROP TABLE temp.load_string_idx`,
			"move index rows into string_idx: its staging table is gone", []string{"token_idx", "ref_idx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, "")
			l, err := s.NewLoader(ctx, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			l.txChunks = 1
			for i := range loadBatch { // written and committed at the last
				if err := l.Add(ctx, org(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.written(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.db.Write.Exec(tc.sabotage); err != nil {
				t.Fatal(err)
			}
			err = l.Close(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Close: %v, want %q", err, tc.want)
			}
			for _, tbl := range tc.moved {
				if got := column(t, s, `SELECT count(*) FROM `+tbl); got[0] != fmt.Sprint(loadBatch) {
					t.Errorf("%s: %s rows moved, want %d", tbl, got[0], loadBatch)
				}
			}
			if tt := tempTables(t, s); len(tt) != 0 {
				t.Errorf("temporary tables left: %v", tt)
			}
			checkNormalPragmas(t, s)
		})
	}
}

// TestIndexTablesMatchSchema: each index table's columns, as the writes
// give them, are the table's, and its key is the table's primary key (an
// initial load moves staged rows in that order, so that it builds each
// tree from left to right).
func TestIndexTablesMatchSchema(t *testing.T) {
	s := openTestStore(t, "")
	split := func(list string) []string {
		if list == "" {
			return nil
		}
		return strings.Split(list, ", ")
	}
	for _, it := range indexTables {
		cols := column(t, s, `SELECT name FROM pragma_table_info('`+it.name+`') ORDER BY cid`)
		if got := split(it.cols); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(cols))) {
			t.Errorf("%s: written columns %v, table columns %v", it.name, got, cols)
		}
		pk := column(t, s, `SELECT name FROM pragma_index_xinfo((SELECT name FROM pragma_index_list('`+it.name+`') WHERE origin = 'pk')) WHERE key = 1 ORDER BY seqno`)
		if got := split(it.key); !slices.Equal(got, pk) {
			t.Errorf("%s: key %v, primary key %v", it.name, got, pk)
		}
	}
}

// TestRestoringPragmasDropsStaging: a load that ends without moving its
// staged rows leaves nothing in the temporary database.
func TestRestoringPragmasDropsStaging(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "")
	l, err := s.NewLoader(ctx, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tt := tempTables(t, s); len(tt) != len(stagedTables) {
		t.Fatalf("staging tables during an initial load: %v", tt)
	}
	if err := l.restorePragmas(ctx); err != nil {
		t.Fatal(err)
	}
	if tt := tempTables(t, s); len(tt) != 0 {
		t.Errorf("temporary tables left: %v", tt)
	}
}
