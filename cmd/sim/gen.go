package main

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/scenarios"
)

func runGen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen", stderr)
	worldFile := fs.String("world", "", "world file (YAML); the built-in default world when empty")
	out := fs.String("out", "", "directory to write ehr/*.ndjson and other/*.ndjson into (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return invalid("--out DIR is required")
	}
	world, err := loadWorld(*worldFile)
	if err != nil {
		return err
	}
	// Streamed: memory stays bounded whatever the population.
	w, err := synth.NewNDJSONWriter(*out)
	if err != nil {
		return fmt.Errorf("write directories: %w", err)
	}
	pop, err := synth.Stream(world.SynthConfig(), w.Write)
	counts, cerr := w.Close()
	if err != nil {
		return fmt.Errorf("generate world: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("write directories: %w", cerr)
	}
	fmt.Fprintf(stdout, "wrote %s\n\nresources:\n", *out)
	printCounts(stdout, counts)
	classes := map[string]int{}
	for _, t := range pop.Truth {
		classes[t.Class]++
	}
	fmt.Fprintln(stdout, "\nEHR patients by overlap class:")
	printCounts(stdout, classes)
	return nil
}

func printCounts(w io.Writer, counts map[string]int) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-28s %d\n", k, counts[k])
	}
}

// loadWorld reads a world file, or returns the built-in default world.
// Problems in the file are invalid input (exit 2), one line each.
func loadWorld(path string) (*scenarios.World, error) {
	if path == "" {
		return scenarios.DefaultWorld(), nil
	}
	w, err := scenarios.LoadWorld(path)
	if err != nil {
		return nil, &exitError{code: exitInvalid, err: err}
	}
	return w, nil
}
