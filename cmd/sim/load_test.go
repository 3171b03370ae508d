package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestLoadCommand runs `sim load` on its own in-process world and reads
// its JSON report.
func TestLoadCommand(t *testing.T) {
	code, out, errOut := runCLI(t, t.Context(), "load", "--flows", "40", "--concurrency", "4", "--format", "json")
	if code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, errOut)
	}
	var rep struct {
		Direction string             `json:"direction"`
		Flows     int                `json:"flows"`
		Failed    int                `json:"failed"`
		FlowsPerS float64            `json:"flows_per_s"`
		Latency   map[string]float64 `json:"latency_ms"`
		Errors    map[string]int     `json:"errors"`
		Endpoints []struct {
			Endpoint string `json:"endpoint"`
			Count    int    `json:"count"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Direction != "a" || rep.Flows != 40 || rep.Failed != 0 || len(rep.Errors) != 0 || rep.FlowsPerS <= 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, k := range []string{"p50", "p95", "p99", "max"} {
		if rep.Latency[k] <= 0 {
			t.Errorf("latency %s = %v", k, rep.Latency[k])
		}
	}
	if len(rep.Endpoints) < 8 {
		t.Errorf("only %d endpoints timed", len(rep.Endpoints))
	}
	if strings.Contains(errOut, "flows/s") {
		t.Errorf("progress bar drawn although stderr is not a terminal: %q", errOut)
	}
}

func TestLoadCommandText(t *testing.T) {
	code, out, errOut := runCLI(t, t.Context(), "load", "--direction", "ehr", "--flows", "5", "--progress", "always")
	if code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, errOut)
	}
	for _, want := range []string{"direction ehr", "5 in", "p99", "POST ehr /auth/token"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "5/5 flows") {
		t.Errorf("--progress always drew no bar: %q", errOut)
	}
	// The endpoint table's columns line up, the longest endpoint
	// (GET ehr /fhir/.well-known/smart-configuration) included.
	_, table, _ := strings.Cut(out, "time per endpoint")
	lines := strings.Split(strings.TrimSpace(table), "\n")[1:]
	countEnd := strings.Index(lines[0], "count") + len("count")
	for _, line := range lines[1:] {
		if len(line) <= countEnd || line[countEnd] != ' ' || line[countEnd-1] < '0' || line[countEnd-1] > '9' {
			t.Errorf("row out of line with the header's count column:\n%s\n%s", lines[0], line)
		}
	}
	if !strings.Contains(out, "smart-configuration") {
		t.Errorf("no discovery endpoint timed:\n%s", out)
	}
}

func TestLoadCommandRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"load", "--direction", "nowhere"},
		{"load", "--concurrency", "0"},
		{"load", "--flows", "3", "--duration", "1s"},
		{"load", "--format", "xml"},
		{"load", "extra"},
		{"load", "--rate", "-5"},
		{"load", "--rate", "NaN"},
		{"load", "--rate", "Inf"},
		{"load", "--rate", "fast"},
	} {
		if code, _, errOut := runCLI(t, t.Context(), args...); code != exitInvalid {
			t.Errorf("%v: exit %d, want %d; stderr: %s", args, code, exitInvalid, errOut)
		}
	}
}

// TestLoadCommandDirectionsCD drives directions C (an own world, which sim
// load governs by the EHR AS for it) and D (through the broker).
func TestLoadCommandDirectionsCD(t *testing.T) {
	for _, d := range []string{"c", "d"} {
		t.Run(d, func(t *testing.T) {
			code, out, errOut := runCLI(t, t.Context(), "load", "--direction", d, "--flows", "6", "--concurrency", "2", "--format", "json")
			if code != exitOK {
				t.Fatalf("exit %d; stderr: %s", code, errOut)
			}
			var rep struct {
				Direction string `json:"direction"`
				Flows     int    `json:"flows"`
				Failed    int    `json:"failed"`
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("report is not JSON: %v\n%s", err, out)
			}
			if rep.Direction != d || rep.Flows != 6 || rep.Failed != 0 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// TestLoadCommandRefusesCAgainstOtherAS: a target whose Other server
// OtherAS governs cannot run direction C; sim load says so and runs nothing.
func TestLoadCommandRefusesCAgainstOtherAS(t *testing.T) {
	ready := startTarget(t)
	code, out, errOut := runCLI(t, t.Context(), "load", "--direction", "c", "--target", ready, "--flows", "1")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d; stdout: %s stderr: %s", code, exitInvalid, out, errOut)
	}
	if !strings.Contains(errOut, "governed_by") {
		t.Errorf("stderr does not say why: %q", errOut)
	}
}
