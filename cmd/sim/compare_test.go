package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateCompare = flag.Bool("update-compare", false, "rewrite testdata/compare/*.golden")

// Wall times differ on every run: they are masked in the golden files.
var (
	durations = regexp.MustCompile(`[0-9][0-9.]*(ns|µs|ms|m|s)+`)
	jsonTimes = regexp.MustCompile(`("wall_time_ns": )[0-9]+`)
)

func maskTimes(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.Contains(l, "wall time") {
			lines[i] = durations.ReplaceAllString(l, "<time>")
		}
	}
	return jsonTimes.ReplaceAllString(strings.Join(lines, "\n"), "${1}<time>")
}

func TestCompareGolden(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"text", "markdown", "json"} {
		t.Run(format, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"compare", "--world", filepath.Join("testdata", "compare", "world.yaml"), "--format", format}
			if format == "text" {
				args = append(args, "--trace", dir)
			}
			if code := run(t.Context(), args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			got := maskTimes(out.String())
			if format == "json" {
				var v []map[string]any
				if err := json.Unmarshal(out.Bytes(), &v); err != nil || len(v) != 4 {
					t.Fatalf("json output is not an array of four directions: %v", err)
				}
			}
			golden := filepath.Join("testdata", "compare", format+".golden")
			if *updateCompare {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (go test -run TestCompareGolden -update-compare rewrites it):\n%s", golden, got)
			}
		})
	}
	for _, d := range []string{"a", "b", "c", "d"} {
		b, err := os.ReadFile(filepath.Join(dir, "direction-"+d+".svg"))
		if err != nil || !bytes.HasPrefix(b, []byte("<svg")) || !strings.Contains(string(b), "EHR AS") {
			t.Errorf("diagram of direction %s: %v", d, err)
		}
	}
}

func TestCompareBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"compare", "--format", "yaml"},
		{"compare", "--class", "nobody"},
		{"compare", "extra"},
		{"compare", "--world", filepath.Join("testdata", "bad_world.yaml")},
	} {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), args, &out, &errOut); code != exitInvalid {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitInvalid, errOut.String())
		}
	}
}
