package scenarios

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/yamlfile"
)

var updateWorldGolden = flag.Bool("update-world", false, "rewrite testdata/world/*.golden")

func TestDefaultWorld(t *testing.T) {
	w := DefaultWorld()
	if w.Seed != 20250601 || !w.ReferenceDate.Equal(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("seed %d, reference date %v", w.Seed, w.ReferenceDate)
	}
	if w.EHR.Patients != 150 || w.Other.Patients != 75+18+2*12+15 || w.Overlap.OtherOnly.Count != 15 {
		t.Errorf("ehr %d, other %d, other_only %+v", w.EHR.Patients, w.Other.Patients, w.Overlap.OtherOnly)
	}
	if w.Lifetimes != (WorldLifetimes{Code: time.Minute, LaunchToken: 5 * time.Minute, AccessToken: time.Hour, RefreshToken: 24 * time.Hour, BackendToken: 5 * time.Minute}) {
		t.Errorf("lifetimes %+v", w.Lifetimes)
	}
	if len(w.Apps) != 2 || w.Apps[0].Type != AppPublic || w.Apps[1].Type != AppConfidentialSymmetric || w.Apps[0].RegisterAt != RegisterAtBoth {
		t.Errorf("apps %+v", w.Apps)
	}
	// Every class is present, with at least a handful of patients, and the
	// default world generates quickly and links every user.
	pop, err := synth.Generate(w.SynthConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range synth.Classes {
		if pop.Classes[c] < 5 {
			t.Errorf("class %s has %d patients", c, pop.Classes[c])
		}
	}
	if len(pop.Users) != 6 || pop.Users[0].Username != "dr.smith" || pop.Users[0].Password != "smart" {
		t.Errorf("users %+v", pop.Users)
	}
	if got := pop.Counts["other/Patient"]; got != w.Other.Patients {
		t.Errorf("other patients generated %d, world says %d", got, w.Other.Patients)
	}
	// DefaultWorld returns a fresh copy each time.
	w.Apps[0].ClientID = "changed"
	if DefaultWorld().Apps[0].ClientID != "sim-sample-app" {
		t.Errorf("DefaultWorld shares state between calls")
	}
}

func TestParseWorldOverrides(t *testing.T) {
	src := `seed: 7
ehr: {patients: 40}
other: {kind: lab, name: Valley Lab}
overlap: {shared: 0.25, ambiguous: 0.25}
users:
  clinicians: [{username: nurse.kim, password: pw}]
lifetimes: {access_token: 15m}
`
	w, err := ParseWorld("w.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultWorld()
	if w.Seed != 7 || w.EHR.Patients != 40 || w.EHR.Name != d.EHR.Name || w.Other.Kind != synth.KindLab || w.Other.MRNSystem != d.Other.MRNSystem {
		t.Errorf("world %+v", w)
	}
	// Fractions the file leaves out are 0 once it gives any; other_only keeps its default.
	if w.Overlap.Shared != 0.25 || w.Overlap.Ambiguous != 0.25 || w.Overlap.OtherIDOnly != 0 || w.Overlap.Absent != 0 || w.Overlap.OtherOnly.Count != 15 {
		t.Errorf("overlap %+v", w.Overlap)
	}
	if w.Other.Patients != 10+2*10+15 {
		t.Errorf("other patients %d", w.Other.Patients)
	}
	// The default portal user of the now empty other_id_only class is left out.
	if len(w.Users.Clinicians) != 1 || len(w.Users.Patients) != 3 || w.Users.Patients[1].Username != "patient.ambiguous" || w.Lifetimes.AccessToken != 15*time.Minute || w.Lifetimes.Code != time.Minute {
		t.Errorf("users %+v lifetimes %+v", w.Users, w.Lifetimes)
	}
	if w.Fingerprint() == d.Fingerprint() {
		t.Errorf("different worlds, same fingerprint")
	}
}

func TestParseWorldOtherCounts(t *testing.T) {
	for _, tc := range []struct {
		name, src        string
		other, otherOnly int
	}{
		{"fraction", "overlap: {other_only: 0.1}\n", 75 + 18 + 24 + 15, 15},
		{"fraction 1.0 is all", "overlap: {other_only: 1.0}\n", 75 + 18 + 24 + 150, 150},
		{"count", "overlap: {other_only: 1}\n", 75 + 18 + 24 + 1, 1},
		{"other.patients instead", "other: {patients: 200}\n", 200, 200 - 117},
		{"both agreeing", "other: {patients: 120}\noverlap: {other_only: 3}\n", 120, 3},
	} {
		w, err := ParseWorld("w.yaml", []byte(tc.src))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if w.Other.Patients != tc.other || w.Overlap.OtherOnly != (CountOrFraction{Count: tc.otherOnly}) {
			t.Errorf("%s: other %d, other_only %+v; want %d, %d", tc.name, w.Other.Patients, w.Overlap.OtherOnly, tc.other, tc.otherOnly)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a, b := DefaultWorld(), DefaultWorld()
	if a.Fingerprint() != b.Fingerprint() || len(a.Fingerprint()) != 64 {
		t.Errorf("fingerprints %s %s", a.Fingerprint(), b.Fingerprint())
	}
	// Comments and key order do not matter; values do.
	w1, err1 := ParseWorld("a.yaml", []byte("seed: 9\nehr: {patients: 30}\n"))
	w2, err2 := ParseWorld("b.yaml", []byte("# same\nehr:\n  patients: 30\nseed: 9\n"))
	w3, err3 := ParseWorld("c.yaml", []byte("seed: 9\nehr: {patients: 31}\n"))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if w1.Fingerprint() != w2.Fingerprint() || w1.Fingerprint() == w3.Fingerprint() {
		t.Errorf("fingerprints %s %s %s", w1.Fingerprint(), w2.Fingerprint(), w3.Fingerprint())
	}
}

func TestExpandURL(t *testing.T) {
	o := Origins{Console: "http://127.0.0.1:9000/", EHR: "http://127.0.0.1:9001", Other: "http://127.0.0.1:9002"}
	for in, want := range map[string]string{
		"{console}/sample-app/callback": "http://127.0.0.1:9000/sample-app/callback",
		"{ehr}/fhir":                    "http://127.0.0.1:9001/fhir",
		"{other}":                       "http://127.0.0.1:9002",
		"https://app.example.org/cb":    "https://app.example.org/cb",
		"x{console}":                    "x{console}",
	} {
		if got := ExpandURL(in, o); got != want {
			t.Errorf("ExpandURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWorldFiles parses every testdata/world/*.yaml. A file with a .golden
// next to it must fail with exactly those problems; one without must parse.
func TestWorldFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "world", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no world files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			_, err := LoadWorld(file)
			var got string
			if err != nil {
				var ps yamlfile.Problems
				if !errors.As(err, &ps) {
					t.Fatalf("error is %T, want yamlfile.Problems: %v", err, err)
				}
				got = ps.Error() + "\n"
			}
			if *updateWorldGolden && got != "" {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, readErr := os.ReadFile(golden)
			if os.IsNotExist(readErr) {
				if err != nil {
					t.Fatalf("want no problems, got:\n%s", got)
				}
				return
			}
			if readErr != nil {
				t.Fatal(readErr)
			}
			if got != string(want) {
				t.Errorf("problems:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestLoadWorldErrors(t *testing.T) {
	if _, err := LoadWorld(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("no error for a missing file")
	} else if errors.As(err, new(yamlfile.Problems)) {
		t.Errorf("a missing file is not a content problem: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), 500_000), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWorld(big)
	var ps yamlfile.Problems
	if !errors.As(err, &ps) || !strings.Contains(ps.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}

// TestEveryProblemAtOnce checks that one bad file reports all its problems,
// each at the right place.
func TestEveryProblemAtOnce(t *testing.T) {
	src := `sead: 1
ehr:
  patients: -5
  mrn_system: not a uri
overlap:
  shared: 1.5
  ambiguous: 0.2
match:
  identifier_systems: [https://unknown.example.org/id]
users:
  clinicians:
    - {username: a, password: x}
    - {username: a, password: y}
apps:
  - {client_id: x, name: X, type: public, redirect_uris: ["not a url"], scope: openid}
  - {client_id: x, name: Y, type: confidential-asymmetric, redirect_uris: ["https://y.example.org/cb"], scope: openid}
lifetimes: {code: 1h, access_token: soon}
`
	_, err := ParseWorld("bad.yaml", []byte(src))
	var ps yamlfile.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	var where []string
	for _, p := range ps {
		where = append(where, fmt.Sprintf("%d:%d", p.Line, p.Column))
	}
	for _, want := range []string{"1:1", "3:13", "4:15", "6:11", "9:24", "13:18", "15:59", "16:5", "16:17", "17:19", "17:37"} {
		if !slices.Contains(where, want) {
			t.Errorf("no problem at %s; got:\n%s", want, ps.Error())
		}
	}
	if !slices.IsSortedFunc(ps, func(a, b yamlfile.Problem) int { return a.Line*1000 + a.Column - b.Line*1000 - b.Column }) {
		t.Errorf("problems not in file order:\n%s", ps.Error())
	}
}

// FuzzLoadWorld: no input panics, and the result is always a World or
// Problems, never both and never neither.
func FuzzLoadWorld(f *testing.F) {
	f.Add(defaultWorldYAML)
	f.Add([]byte("ehr: {patients: 3}\noverlap: {shared: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := ParseWorld("f.yaml", data)
		if err != nil {
			var ps yamlfile.Problems
			if w != nil || !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("world %v, err %v (%T)", w != nil, err, err)
			}
			return
		}
		if w == nil {
			t.Fatal("no world and no error")
		}
		_ = w.Fingerprint()
		cfg := w.SynthConfig()
		if cfg.EHR.Patients <= 30 && cfg.Overlap.OtherOnly <= 30 {
			if _, err := synth.Generate(cfg); err != nil && len(cfg.PortalUsers) == 0 {
				t.Fatalf("a valid world without portal users failed to generate: %v", err)
			}
		}
	})
}
