package scenarios

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/yamlfile"
)

var updateScenarioGolden = flag.Bool("update-scenario", false, "rewrite testdata/scenario/bad/*.golden")

// bundledScenarios are the scenario files shipped in this directory.
func bundledScenarios(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if f != DefaultWorldFile {
			out = append(out, f)
		}
	}
	if len(out) < 12 {
		t.Fatalf("%d bundled scenarios, want at least 12", len(out))
	}
	return out
}

func TestBundledScenariosValidate(t *testing.T) {
	for _, f := range bundledScenarios(t) {
		t.Run(f, func(t *testing.T) {
			s, err := LoadScenario(f)
			if err != nil {
				t.Fatalf("invalid:\n%v", err)
			}
			data, _ := os.ReadFile(f)
			if !bytes.HasPrefix(data, []byte("# Teaches: ")) {
				t.Errorf("%s does not start with a '# Teaches: ' comment saying what it teaches", f)
			}
			if s.Description == "" || s.World == nil || len(s.Flows) == 0 {
				t.Errorf("description %q, world %v, %d flows", s.Description, s.World != nil, len(s.Flows))
			}
			// The runner relies on every default being filled in.
			for _, fl := range s.Flows {
				for i, st := range fl.Steps {
					if st.Name == "" || st.Kind() == "" {
						t.Errorf("flow %q step %d: name %q kind %q", fl.Name, i, st.Name, st.Kind())
					}
					if ua := userAction(&st); ua != nil && (ua.Login == "" || ua.Password == "" || ua.Decision == "") {
						t.Errorf("flow %q step %s: user action not filled in: %+v", fl.Name, st.Name, *ua)
					}
					if st.Read != nil && st.Read.Token == "" {
						t.Errorf("flow %q step %s: read without a token", fl.Name, st.Name)
					}
				}
			}
		})
	}
}

// TestBadScenarios checks the problems reported for every
// testdata/scenario/bad/*.yaml against its .golden file.
func TestBadScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenario", "bad", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			start := time.Now()
			_, err := LoadScenario(file)
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
			var ps yamlfile.Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("want problems, got %v", err)
			}
			for _, p := range ps {
				if p.Line < 1 || p.Column < 1 || p.File == "" {
					t.Errorf("problem without a position: %+v", p)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *updateScenarioGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestBadScenarios -update-scenario writes it)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestGoodScenarios(t *testing.T) {
	good, _ := filepath.Glob(filepath.Join("testdata", "scenario", "good", "*.yaml"))
	for _, f := range good {
		if _, err := LoadScenario(f); err != nil {
			t.Errorf("%s:\n%v", f, err)
		}
	}
	s, err := LoadScenario(filepath.Join("testdata", "scenario", "good", "world_file_overrides.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w := s.World
	// seed from the overrides, patients from the file, overlap replaced as
	// a whole, everything else from the default world.
	if w.Seed != 7 || w.EHR.Patients != 10 || w.Overlap.Shared != 0.5 || w.Overlap.Ambiguous != 0.5 || w.Overlap.Absent != 0 {
		t.Errorf("world: seed %d patients %d overlap %+v", w.Seed, w.EHR.Patients, w.Overlap)
	}
	if w.EHR.Name != DefaultWorld().EHR.Name {
		t.Errorf("ehr name %q not from the default world", w.EHR.Name)
	}
	if n := len(w.Apps); n != 3 || w.Apps[2].ClientID != "backend-app" || w.Apps[2].RegisterAt != RegisterAtEHR {
		t.Errorf("apps: %+v", w.Apps)
	}
	if got := s.Flows[0].Steps[1].Read.Token; got != "backend" {
		t.Errorf("read token %q", got)
	}
	if p := s.Flows[1].Patient; p.Each != synth.ClassAmbiguous || p.Limit != DefaultEachLimit {
		t.Errorf("matrix patient %+v", p)
	}
	other := s.Flows[1].Steps[1].OtherLaunch
	if other.LaunchToken != "{{ehr.launch_token}}" || other.App != "sim-sample-app" ||
		other.Scope != "launch openid fhirUser offline_access patient/*.rs user/*.rs" {
		t.Errorf("other_launch defaults: %+v", other)
	}
	if u := other.User; u.Login != "dr.smith" || u.Password != "smart" || u.Decision != DecisionApprove {
		t.Errorf("user defaults: %+v", u)
	}

	s, err = LoadScenario(filepath.Join("testdata", "scenario", "good", "inline_world.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.World.EHR.Patients != 4 || !s.World.Strict || s.World.Seed != DefaultWorld().Seed || s.Name != "inline" {
		t.Errorf("inline world: %+v", s.World)
	}
	if s.Flows[0].Steps[0].Name != "ehr" || s.Flows[0].Steps[1].Name != "other" {
		t.Errorf("default step names: %q %q", s.Flows[0].Steps[0].Name, s.Flows[0].Steps[1].Name)
	}
}

// TestOverridePositions checks problems in `world:` point at the scenario's
// own lines and columns, including in flow style.
func TestOverridePositions(t *testing.T) {
	src := "name: x\nflows:\n  - name: f\n    steps: [{ehr_launch: {}}]\nworld: {seed: 1, ehr: {kind: clinic}}\n"
	_, err := ParseScenario("s.yaml", []byte(src))
	var ps yamlfile.Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	if p := ps[0]; p.Line != 5 || p.Column != 30 || !strings.Contains(p.Msg, `ehr.kind: found "clinic"`) {
		t.Errorf("problem %v, want it at 5:30 on kind's value", p)
	}
}

func TestCells(t *testing.T) {
	w := DefaultWorld()
	pop, err := synth.Generate(w.SynthConfig())
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadScenario("matrix_classes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cells, err := s.Flows[0].Cells(pop.Truth)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cells {
		names = append(names, c.Name+":"+c.Patient.Class)
	}
	if got := strings.Join(names, ","); got != "class=shared:shared,class=other_id_only:other_id_only,class=ambiguous:ambiguous,class=absent:absent" {
		t.Errorf("cells %s", got)
	}
	cells, err = s.Flows[1].Cells(pop.Truth)
	if err != nil || len(cells) != 10 {
		t.Fatalf("each absent, limit 10: %d cells, %v", len(cells), err)
	}
	for _, c := range cells {
		if c.Patient.Class != synth.ClassAbsent || c.Name != "patient="+c.Patient.EHRID {
			t.Errorf("cell %+v", c)
		}
	}
	one := Flow{Name: "one", Patient: PatientSel{ID: cells[3].Patient.EHRID}}
	if got, err := one.Cells(pop.Truth); err != nil || len(got) != 1 || got[0].Name != "" || got[0].Patient.EHRID != cells[3].Patient.EHRID {
		t.Errorf("by id: %+v %v", got, err)
	}
	if _, err := (&Flow{Patient: PatientSel{ID: "nobody"}}).Cells(pop.Truth); err == nil {
		t.Error("unknown id: no error")
	}
	if got, err := (&Flow{}).Cells(pop.Truth); err != nil || len(got) != 1 || got[0].HasPatient {
		t.Errorf("no patient: %+v %v", got, err)
	}
}

func TestTemplates(t *testing.T) {
	for _, tc := range []struct {
		in   string
		refs string
		err  string
	}{
		{"Patient/{{ehr.patient}}", "ehr.patient", ""},
		{"{{ ehr.patient }}/{{other.access_token}}", "ehr.patient other.access_token", ""},
		{"plain", "", ""},
		{"{{ehr.patient", "", `"{{" without a closing "}}"`},
		{"ehr.patient}}", "", `"}}" without an opening "{{"`},
		{"{{ehr}}", "", "{{ehr}} is not a reference"},
		{"{{a.b.c}}", "", "{{a.b.c}} is not a reference"},
	} {
		refs, err := References(tc.in)
		var got []string
		for _, r := range refs {
			got = append(got, r.Step+"."+r.Value)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.refs {
			t.Errorf("%q: refs %v, %v; want %s", tc.in, got, err, tc.refs)
		}
	}
	vals := map[Ref]string{{"ehr", "patient"}: "e-1", {"other", "patient"}: "o-9"}
	lookup := func(r Ref) (string, bool) { v, ok := vals[r]; return v, ok }
	if got, err := Expand("Patient/{{ehr.patient}}?x={{ other.patient }}", lookup); err != nil || got != "Patient/e-1?x=o-9" {
		t.Errorf("expand: %q %v", got, err)
	}
	if _, err := Expand("{{ehr.encounter}}", lookup); err == nil || !strings.Contains(err.Error(), "{{ehr.encounter}} has no value") {
		t.Errorf("missing value: %v", err)
	}
}

func TestHugeAndDeepInput(t *testing.T) {
	huge := bytes.Repeat([]byte("# padding\n"), (yamlfile.DefaultLimits.MaxBytes/10)+10)
	deep := []byte("flows: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n")
	wide := []byte("flows:\n" + strings.Repeat("  - {name: f, steps: [{ehr_launch: {}}]}\n", MaxFlows+1))
	for name, data := range map[string][]byte{"huge": huge, "deep": deep, "wide": wide} {
		start := time.Now()
		_, err := parseScenario(name+".yaml", data, noFiles)
		var ps yamlfile.Problems
		if !errors.As(err, &ps) {
			t.Errorf("%s: want problems, got %v", name, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}
}

func noFiles(string) ([]byte, error) { return nil, fs.ErrNotExist }

func FuzzLoadScenario(f *testing.F) {
	for _, file := range bundledScenarios(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	bad, _ := filepath.Glob(filepath.Join("testdata", "scenario", "bad", "*.yaml"))
	for _, file := range bad {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		type result struct {
			s   *Scenario
			err error
		}
		done := make(chan result, 1)
		go func() {
			s, err := parseScenario("fuzz.yaml", data, noFiles)
			done <- result{s, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer after 10s for %q", data)
		}
		s, err := r.s, r.err
		if err != nil {
			var ps yamlfile.Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			for _, p := range ps {
				if p.Line < 1 || p.Column < 1 {
					t.Fatalf("problem without a position: %+v", p)
				}
			}
			return
		}
		if s.World == nil || len(s.Flows) == 0 {
			t.Fatalf("valid scenario without world or flows")
		}
	})
}

func BenchmarkParseScenario(b *testing.B) {
	data, err := os.ReadFile("happy_path.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ParseScenario("happy_path.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDirectionStepDefaults: token_exchange and broker_launch get their
// defaults filled in, and short subject_token_type names become URNs.
func TestDirectionStepDefaults(t *testing.T) {
	s, err := ParseScenario("d.yaml", []byte(`
flows:
  - name: b
    steps:
      - ehr_launch: {app: sim-vendor-app, resource: [other]}
      - token_exchange: {}
      - name: by-access-token
        token_exchange: {subject_token: "{{ehr.access_token}}", scope: patient/*.rs}
      - name: by-id-token
        token_exchange: {subject_token: "{{ehr.id_token}}", subject_token_type: id_token, scope: user/*.rs}
      - read: {server: other, path: "Patient?_count=1"}
  - name: d
    steps:
      - broker_launch: {}
      - read: {server: other, path: "Patient/{{broker.other_patient}}"}
      - name: standalone
        broker_launch: {launch: standalone}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := s.Flows[0].Steps
	te := b[1].TokenExchange
	if b[1].Name != "token_exchange" || te.App != "sim-vendor-app" || te.SubjectToken != "{{ehr.launch_token}}" ||
		te.SubjectTokenType != TokenTypeIDToken || te.Scope != "patient/*.rs user/*.rs" {
		t.Errorf("token_exchange defaults: %s %+v", b[1].Name, te)
	}
	if got := b[2].TokenExchange.SubjectTokenType; got != TokenTypeAccessToken {
		t.Errorf("access token subject: type %q", got)
	}
	if got := b[3].TokenExchange.SubjectTokenType; got != TokenTypeIDToken {
		t.Errorf("short name id_token: type %q", got)
	}
	if got := b[4].Read.Token; got != "by-id-token" {
		t.Errorf("read at other: default token %q, want the latest exchange", got)
	}
	d := s.Flows[1].Steps
	bl := d[0].BrokerLaunch
	if d[0].Name != "broker" || bl.App != "sim-sample-app" || bl.Launch != BrokerLaunchEHR ||
		bl.Scope != "launch openid fhirUser patient/*.rs user/*.rs" || bl.User.Login != "dr.smith" || bl.User.Decision != DecisionApprove {
		t.Errorf("broker_launch defaults: %s %+v", d[0].Name, bl)
	}
	if got := d[1].Read.Token; got != "broker" {
		t.Errorf("read at other after a broker launch: token %q", got)
	}
	if got := d[2].BrokerLaunch.Scope; got != "launch/patient openid fhirUser patient/*.rs user/*.rs" {
		t.Errorf("standalone broker scope %q", got)
	}
	if s.Flows[1].Patient.Class != synth.ClassShared {
		t.Errorf("a broker flow needs a patient: %+v", s.Flows[1].Patient)
	}
}

func TestFHIRContextMatches(t *testing.T) {
	entry := map[string]any{"type": "Patient", "role": "urn:sim:launch-full-url",
		"identifier": map[string]any{"system": "urn:ietf:rfc:3986", "value": "http://o/fhir/Patient/9"}}
	for _, tc := range []struct {
		m    FHIRContextMatch
		want bool
	}{
		{FHIRContextMatch{Type: "Patient"}, true},
		{FHIRContextMatch{Type: "Patient", Role: "urn:sim:launch-full-url", Identifier: "http://o/fhir/Patient/9"}, true},
		{FHIRContextMatch{Type: "Encounter"}, false},
		{FHIRContextMatch{Identifier: "http://o/fhir/Patient/8"}, false},
		{FHIRContextMatch{Reference: "Patient/9"}, false},
	} {
		if got := fhirContextMatches(entry, tc.m); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.m, got, tc.want)
		}
	}
	if fhirContextMatches("Patient/9", FHIRContextMatch{Type: "Patient"}) {
		t.Error("a string entry matched")
	}
}
