package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func runCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestServeWritesReadyFileAndStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var out, errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--port", "0", "--ready-file", ready, "--log-level", "warn"}, &out, &errOut)
	}()

	var r map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && json.Unmarshal(b, &r) == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no ready file; stderr: %s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range []string{"ehr_fhir", "other_fhir", "console", "api"} {
		s, _ := r[k].(string)
		if !strings.HasPrefix(s, "http://127.0.0.1:") {
			t.Errorf("ready.%s = %v, want a loopback URL", k, r[k])
		}
	}
	resp, err := http.Get(r["api"].(string) + "/world")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET world: %v %v", err, resp)
	}
	resp.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d after cancel; stderr: %s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
	for _, want := range []string{"EHR FHIR", "dr.smith", "control API"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
}

func TestValidateReportsEveryProblemWithPosition(t *testing.T) {
	code, out, _ := runCLI(t, t.Context(), "validate", "testdata/bad_world.yaml")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d; out:\n%s", code, exitInvalid, out)
	}
	pos := regexp.MustCompile(`^testdata/bad_world\.yaml:\d+:\d+: .+`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !pos.MatchString(l) {
			t.Errorf("line %q is not file:line:column: message", l)
		}
	}
	for _, want := range []string{`:2:1: `, `sead`, `:4:13: `, `:6:11: `, `:9:24: `} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if len(lines) < 4 {
		t.Errorf("%d problems reported, want every one (4):\n%s", len(lines), out)
	}

	code, out, _ = runCLI(t, t.Context(), "validate", "../../scenarios/default_world.yaml")
	if code != 0 {
		t.Fatalf("default world: exit %d:\n%s", code, out)
	}
}

func TestGenIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if code, out, errOut := runCLI(t, t.Context(), "gen", "--out", dir); code != 0 {
			t.Fatalf("gen: exit %d\n%s%s", code, out, errOut)
		}
	}
	files, _ := filepath.Glob(filepath.Join(a, "*", "*.ndjson"))
	if len(files) < 8 {
		t.Fatalf("gen wrote %d files, want both directories by resource type", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(a, f)
		x, _ := os.ReadFile(f)
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", rel)
		}
	}
	_, out, _ := runCLI(t, t.Context(), "gen", "--out", t.TempDir())
	for _, c := range []string{"shared", "other_id_only", "ambiguous", "absent"} {
		if !strings.Contains(out, c) {
			t.Errorf("gen output lacks the %s class count:\n%s", c, out)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"serve", "--port", "-1"}, {"serve", "--bogus"}, {"gen"}, {"validate"}} {
		if code, _, _ := runCLI(t, t.Context(), args...); code != exitInvalid {
			t.Errorf("sim %v: exit %d, want %d", args, code, exitInvalid)
		}
	}
}

func TestValidateTellsScenariosFromWorlds(t *testing.T) {
	code, out, _ := runCLI(t, t.Context(), "validate", "../../scenarios/happy_path.yaml", "../../scenarios/default_world.yaml")
	if code != 0 || !strings.Contains(out, "happy_path.yaml: ok (scenario)") || !strings.Contains(out, "default_world.yaml: ok (world)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("flows:\n  - name: x\n    steps:\n      - ehr_lunch: {}\n"), 0o600)
	code, out, _ = runCLI(t, t.Context(), "validate", bad)
	if code != exitInvalid || !strings.Contains(out, bad+":4:") {
		t.Fatalf("bad scenario: exit %d:\n%s", code, out)
	}
}

// TestKeepTempFilesIn: with a data directory, SQLite's temporary files go
// there (its absolute path), unless $SQLITE_TMPDIR already says where.
func TestKeepTempFilesIn(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("SQLITE_TMPDIR", "")
	if err := keepTempFilesIn(""); err != nil || os.Getenv("SQLITE_TMPDIR") != "" {
		t.Errorf("without a data directory: SQLITE_TMPDIR=%q (%v)", os.Getenv("SQLITE_TMPDIR"), err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := keepTempFilesIn("data"); err != nil || os.Getenv("SQLITE_TMPDIR") != filepath.Join(wd, "data") {
		t.Errorf("--data data: SQLITE_TMPDIR=%q (%v), want %q", os.Getenv("SQLITE_TMPDIR"), err, filepath.Join(wd, "data"))
	}
	t.Setenv("SQLITE_TMPDIR", "/somewhere/chosen")
	if err := keepTempFilesIn("data"); err != nil || os.Getenv("SQLITE_TMPDIR") != "/somewhere/chosen" {
		t.Errorf("a chosen SQLITE_TMPDIR: now %q (%v)", os.Getenv("SQLITE_TMPDIR"), err)
	}
}
