package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Exit codes shared by every subcommand (contract.md).
const (
	exitOK      = 0
	exitFailed  = 1 // an expectation failed, or the command could not do its job
	exitInvalid = 2 // invalid input: flags, world or scenario files
)

// exitError carries the exit code a failure maps to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func invalid(format string, args ...any) error {
	return &exitError{code: exitInvalid, err: fmt.Errorf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "serve the world: two FHIR servers, their authorization servers, the console", runServe},
		{"gen", "write both patient directories of a world as NDJSON", runGen},
		{"run", "run scenario files against a world; report, JUnit, trace diagrams", runRun},
		{"load", "drive complete flows at a world; flows/s, latency, errors, time per endpoint", runLoad},
		{"compare", "run directions A-D for one patient; table of redirects, calls, scopes, readers", runCompare},
		{"validate", "check world files; print every problem as file:line:column", runValidate},
		{"schema", "print the JSON Schema of scenario files", runSchema},
		{"version", "print the version", runVersion},
	}
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitInvalid
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		if err == nil {
			return exitOK
		}
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "sim "+c.name+": "+strings.TrimSpace(err.Error()))
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return exitFailed
	}
	fmt.Fprintf(stderr, "sim: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitInvalid
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sim <command> [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "run 'sim <command> -h' for the flags of a command")
}

// newFlagSet returns a flag set whose parse errors become exit code 2.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sim "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: exitInvalid, err: err}
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, invalid("--log-level: %v", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

var version = "dev"

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, "sim", version)
	return nil
}
