package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smart-sim/sim/scenarios"
)

// startTarget starts the default world as a `sim serve` would and writes
// its ready-file.
func startTarget(t *testing.T) string {
	t.Helper()
	r, err := scenarios.Start(t.Context(), scenarios.DefaultWorld(), scenarios.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	b, err := json.Marshal(r.Ready())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ready.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunAgainstTarget(t *testing.T) {
	ready := startTarget(t)
	dir := t.TempDir()

	t.Run("bundled scenario passes: exit 0", func(t *testing.T) {
		code, out, errOut := runCLI(t, t.Context(), "run", "--target", ready, "../../scenarios/happy_path.yaml", "../../scenarios/patient_absent.yaml")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if !strings.Contains(out, "✓ shared patient, both servers") || !strings.Contains(out, "2 flows: 2 passed, 0 failed") {
			t.Fatalf("report:\n%s", out)
		}
	})

	t.Run("failed expectation: exit 1, JUnit, traces", func(t *testing.T) {
		junit := filepath.Join(dir, "junit.xml")
		traces := filepath.Join(dir, "traces")
		code, out, errOut := runCLI(t, t.Context(), "run", "--target", ready, "--junit", junit, "--trace", traces, "testdata/run/failing.yaml")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
		}
		want := "step 2 (other, other_launch): granted: want patient/*.rs granted, got granted scope: launch openid fhirUser user/*.rs"
		if !strings.Contains(out, "✗ absent patient expected to match") || !strings.Contains(out, want) {
			t.Fatalf("report lacks the failure:\n%s", out)
		}
		var doc struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Suites   []struct {
				Cases []struct {
					Name    string    `xml:"name,attr"`
					Failure *struct{} `xml:"failure"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		b, err := os.ReadFile(junit)
		if err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("JUnit is not XML: %v", err)
		}
		if doc.Tests != 2 || doc.Failures != 1 || len(doc.Suites) != 1 || doc.Suites[0].Cases[1].Failure == nil {
			t.Fatalf("JUnit: %+v", doc)
		}
		svgs, _ := filepath.Glob(filepath.Join(traces, "*.svg"))
		mmds, _ := filepath.Glob(filepath.Join(traces, "*.mmd"))
		if len(svgs) != 2 || len(mmds) != 2 {
			t.Fatalf("trace files: %v %v", svgs, mmds)
		}
		if filepath.Base(svgs[1]) != "002-absent-patient-expected-to-match.svg" {
			t.Fatalf("trace file name %s", svgs[1])
		}
		for _, f := range svgs {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var root struct {
				XMLName xml.Name
			}
			if err := xml.Unmarshal(b, &root); err != nil || root.XMLName.Local != "svg" {
				t.Fatalf("%s is not an SVG document: %v", f, err)
			}
			if !bytes.Contains(b, []byte("/auth/authorize")) {
				t.Fatalf("%s does not show the authorization", f)
			}
		}
	})

	t.Run("JSON report", func(t *testing.T) {
		code, out, _ := runCLI(t, t.Context(), "run", "--target", ready, "--report", "json", "testdata/run/failing.yaml")
		var doc struct {
			Passed  bool
			Summary struct{ Flows, Passed, Failed int }
		}
		if code != 1 || json.Unmarshal([]byte(out), &doc) != nil || doc.Passed || doc.Summary.Failed != 1 || doc.Summary.Passed != 1 {
			t.Fatalf("exit %d, report %s", code, out)
		}
	})

	t.Run("scenario with another world: exit 2", func(t *testing.T) {
		code, _, errOut := runCLI(t, t.Context(), "run", "--target", ready, "testdata/run/own_world.yaml")
		if code != 2 || !strings.Contains(errOut, "the target serves another world") {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
	})
}

func TestRunInvalidInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad scenario", []string{"run", "testdata/run/bad.yaml"}, "testdata/run/bad.yaml:5:9: unknown key \"ehr_lanch\""},
		{"missing file", []string{"run", "testdata/run/nothing.yaml"}, "testdata/run/nothing.yaml: cannot read the scenario file"},
		{"no files", []string{"run"}, "no scenario files given"},
		{"bad report format", []string{"run", "--report", "xml", "testdata/run/failing.yaml"}, "--report"},
		{"bad ready-file", []string{"run", "--target", "testdata/run/bad.yaml", "testdata/run/failing.yaml"}, "is not a ready-file"},
		{"unknown flag", []string{"run", "--nope"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, t.Context(), tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
		})
	}
}

// TestRunOwnWorld: without --target each scenario gets its own world.
func TestRunOwnWorld(t *testing.T) {
	code, out, errOut := runCLI(t, t.Context(), "run", "../../scenarios/standalone_other.yaml")
	if code != 0 || !strings.Contains(out, "✓ standalone launch at Other") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

func TestSchema(t *testing.T) {
	code, out, _ := runCLI(t, t.Context(), "schema")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc["$id"] != scenarios.SchemaID {
		t.Fatalf("exit %d, schema %.200s", code, out)
	}
	if code, _, _ := runCLI(t, t.Context(), "schema", "extra"); code != 2 {
		t.Fatalf("schema with an argument: exit %d, want 2", code)
	}
}

func TestRunPassesOverWorldFiles(t *testing.T) {
	code, out, errOut := runCLI(t, t.Context(), "run", "../../scenarios/default_world.yaml", "../../scenarios/patient_absent.yaml")
	if code != 0 || !strings.Contains(errOut, "default_world.yaml: a world file, not a scenario: skipped") || !strings.Contains(out, "1 passed") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
