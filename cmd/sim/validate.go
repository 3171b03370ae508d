package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/smart-sim/sim/scenarios"
)

func runValidate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return invalid("no files given (usage: sim validate FILE...)")
	}
	bad := 0
	for _, path := range fs.Args() {
		kind, err := validateFile(path)
		if err != nil {
			bad++
			fmt.Fprintln(stdout, err.Error())
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s)\n", path, kind)
	}
	if bad > 0 {
		return &exitError{code: exitInvalid, err: errors.New(plural(bad, "file has problems", "files have problems"))}
	}
	return nil
}

// validateFile checks a scenario file (it has flows) or a world file.
func validateFile(path string) (kind string, err error) {
	if isScenario(path) {
		_, err = scenarios.LoadScenario(path)
		return "scenario", err
	}
	_, err = scenarios.LoadWorld(path)
	return "world", err
}

// isScenario tells a scenario file from a world file by its top-level
// flows key. Anything unreadable is left to the loaders to report.
func isScenario(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > 4<<20 {
		return false
	}
	var top map[string]yaml.Node
	if yaml.Unmarshal(data, &top) != nil {
		return false
	}
	_, ok := top["flows"]
	return ok
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
