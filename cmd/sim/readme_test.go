package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEExamplesWork runs the scenario the README shows, and validates
// the world file it shows, so the newcomer's path stays true.
func TestREADMEExamplesWork(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := func(after string) string {
		t.Helper()
		_, rest, ok := strings.Cut(string(readme), after)
		if !ok {
			t.Fatalf("README has no %q", after)
		}
		_, rest, ok = strings.Cut(rest, "```yaml\n")
		if !ok {
			t.Fatalf("README has no yaml block after %q", after)
		}
		body, _, _ := strings.Cut(rest, "```")
		return body
	}
	dir := t.TempDir()
	scenario := filepath.Join(dir, "scenario.yaml")
	os.WriteFile(scenario, []byte(block("## Scenarios")), 0o600)
	if code, out, errOut := runCLI(t, t.Context(), "run", scenario); code != 0 {
		t.Fatalf("the README's scenario: exit %d\n%s%s", code, out, errOut)
	}
	world := filepath.Join(dir, "world.yaml")
	os.WriteFile(world, []byte(block("## The world file")), 0o600)
	if code, out, _ := runCLI(t, t.Context(), "validate", world); code != 0 {
		t.Fatalf("the README's world file: exit %d\n%s", code, out)
	}
}
