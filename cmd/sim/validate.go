package main

import (
	"context"
	"errors"
	"fmt"
	"io"

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
		if _, err := scenarios.LoadWorld(path); err != nil {
			bad++
			fmt.Fprintln(stdout, err.Error())
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	if bad > 0 {
		return &exitError{code: exitInvalid, err: errors.New(plural(bad, "file has problems", "files have problems"))}
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
