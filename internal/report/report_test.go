package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func sample() []Result {
	return []Result{
		{
			Scenario: "patient-absent",
			File:     "scenarios/patient_absent.yaml",
			Flows: []FlowResult{
				{Name: "absent patient: patient scopes refused", Passed: true, Duration: 412345 * time.Microsecond,
					Trace: []string{"001-absent.svg", "001-absent.mmd"},
					Steps: []StepResult{
						{Index: 1, Name: "ehr", Kind: "ehr_launch", Passed: true, Duration: 200 * time.Millisecond},
						{Index: 2, Name: "other", Kind: "other_launch", Passed: true, Duration: 150 * time.Millisecond},
					}},
				{Name: "matrix", Cell: "class=shared", Passed: true, Duration: 300 * time.Millisecond,
					Steps: []StepResult{{Index: 1, Name: "ehr", Kind: "ehr_launch", Passed: true}}},
				{Name: "matrix", Cell: "class=ambiguous", Passed: false, Duration: 310 * time.Millisecond,
					Steps: []StepResult{
						{Index: 1, Name: "ehr", Kind: "ehr_launch", Passed: true},
						{Index: 2, Name: "other", Kind: "other_launch", Passed: false, Failures: []Failure{
							{Expectation: "granted", Want: "[patient/*.rs user/*.rs]", Got: "[user/*.rs]"},
							{Expectation: "same_person", Want: "true", Got: "no patient in context"},
						}},
					}},
			},
		},
		{
			Scenario: "ehr-as-down",
			File:     "scenarios/ehr_as_down.yaml",
			Flows: []FlowResult{
				{Name: "EHR AS down during the second launch", Passed: false, Duration: 1500 * time.Millisecond,
					Error: "the consent page had no approve button",
					Steps: []StepResult{{Index: 1, Name: "launch", Kind: "ehr_launch", Passed: true}}},
			},
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s", name, got)
	}
}

func TestGolden(t *testing.T) {
	writers := []struct {
		name string
		fn   func(*bytes.Buffer, []Result, Options) error
	}{
		{"text", func(b *bytes.Buffer, r []Result, o Options) error { return Text(b, r, o) }},
		{"json", func(b *bytes.Buffer, r []Result, o Options) error { return JSON(b, r, o) }},
		{"junit.xml", func(b *bytes.Buffer, r []Result, o Options) error { return JUnit(b, r, o) }},
	}
	for _, w := range writers {
		for _, o := range []struct {
			suffix string
			opts   Options
		}{{"", Options{}}, {".notimings", Options{NoTimings: true}}} {
			t.Run(w.name+o.suffix, func(t *testing.T) {
				var b bytes.Buffer
				if err := w.fn(&b, sample(), o.opts); err != nil {
					t.Fatal(err)
				}
				golden(t, w.name+o.suffix, b.Bytes())
				var again bytes.Buffer
				_ = w.fn(&again, sample(), o.opts)
				if !bytes.Equal(again.Bytes(), b.Bytes()) {
					t.Error("output is not deterministic")
				}
			})
		}
	}
}

func TestPassed(t *testing.T) {
	r := sample()
	if Passed(r) {
		t.Error("Passed with failed flows")
	}
	if p, f := Counts(r); p != 2 || f != 2 {
		t.Errorf("counts %d passed %d failed", p, f)
	}
	if !Passed(r[:1][:0]) || !Passed([]Result{{Scenario: "x", Flows: r[0].Flows[:2]}}) {
		t.Error("not Passed with only passing flows")
	}
}

// parsedJUnit is the part of a JUnit document the test reads back.
type parsedJUnit struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Tests int    `xml:"tests,attr"`
		Cases []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseJUnit(t *testing.T, b []byte) parsedJUnit {
	t.Helper()
	var doc parsedJUnit
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JUnit output is not valid XML: %v\n%s", err, b)
	}
	return doc
}

func TestJUnitStructure(t *testing.T) {
	var b bytes.Buffer
	if err := JUnit(&b, sample(), Options{}); err != nil {
		t.Fatal(err)
	}
	doc := parseJUnit(t, b.Bytes())
	if doc.Tests != 4 || doc.Failures != 1 || doc.Errors != 1 || len(doc.Suites) != 2 {
		t.Fatalf("tests %d failures %d errors %d suites %d", doc.Tests, doc.Failures, doc.Errors, len(doc.Suites))
	}
	c := doc.Suites[0].Cases[2]
	if c.Name != "matrix [class=ambiguous]" || c.Failure == nil ||
		c.Failure.Message != "step 2 (other, other_launch): granted: want [patient/*.rs user/*.rs], got [user/*.rs]" ||
		!strings.Contains(c.Failure.Text, "same_person: want true, got no patient in context") {
		t.Errorf("failed cell: %+v", c)
	}
	if e := doc.Suites[1].Cases[0].Error; e == nil || e.Message != "the consent page had no approve button" {
		t.Errorf("flow that could not run: %+v", doc.Suites[1].Cases[0])
	}
}

func TestHostileText(t *testing.T) {
	evil := "a\x1b[31mred\x1b[0m\nsecond line <x> & \"q\" ]]> \x00 \xff"
	r := []Result{{Scenario: evil, File: evil, Flows: []FlowResult{{Name: evil, Cell: evil, Error: evil,
		Steps: []StepResult{{Index: 1, Name: evil, Kind: evil, Failures: []Failure{{Expectation: evil, Want: evil, Got: evil}}}}}}}}
	var text bytes.Buffer
	if err := Text(&text, r, Options{}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(text.String(), "\x1b\x00") {
		t.Errorf("control characters reach the terminal: %q", text.String())
	}
	if n := strings.Count(text.String(), "\n"); n != 6 {
		t.Errorf("%d lines, want 6 (a newline in a value started a line):\n%s", n, text.String())
	}
	var js bytes.Buffer
	if err := JSON(&js, r, Options{}); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Errorf("JSON output does not parse: %v", err)
	}
	var ju bytes.Buffer
	if err := JUnit(&ju, r, Options{}); err != nil {
		t.Fatal(err)
	}
	doc := parseJUnit(t, ju.Bytes())
	if doc.Errors != 1 || len(doc.Suites) != 1 || len(doc.Suites[0].Cases) != 1 {
		t.Errorf("structure changed by hostile names: %+v", doc)
	}
}

func TestEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := JUnit(&b, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if doc := parseJUnit(t, b.Bytes()); doc.Tests != 0 {
		t.Errorf("tests %d", doc.Tests)
	}
	b.Reset()
	if err := JSON(&b, nil, Options{}); err != nil || !strings.Contains(b.String(), `"scenarios": []`) {
		t.Errorf("JSON of no results: %v %s", err, b.String())
	}
}

func TestTraceFileBase(t *testing.T) {
	for _, tc := range []struct {
		n    int
		f    FlowResult
		want string
	}{
		{1, FlowResult{Name: "Shared patient, both servers"}, "001-shared-patient-both-servers"},
		{12, FlowResult{Name: "every class", Cell: "class=other_id_only"}, "012-every-class-class-other-id-only"},
		{3, FlowResult{Name: "../../etc/passwd"}, "003-etc-passwd"},
		{4, FlowResult{Name: "✓✗"}, "004"},
		{5, FlowResult{Name: strings.Repeat("a", 200)}, "005-" + strings.Repeat("a", 76)},
	} {
		if got := TraceFileBase(tc.n, tc.f); got != tc.want {
			t.Errorf("TraceFileBase(%d, %q) = %q, want %q", tc.n, tc.f.FlowName(), got, tc.want)
		}
	}
}
