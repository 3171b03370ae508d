package main

import (
	"context"
	"fmt"
	"io"

	"github.com/smart-sim/sim/scenarios"
)

// runSchema is `sim schema`: the JSON Schema of scenario files.
func runSchema(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("schema", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return invalid("sim schema takes no arguments")
	}
	if _, err := stdout.Write(scenarios.Schema()); err != nil {
		return fmt.Errorf("write the schema: %w", err)
	}
	return nil
}
