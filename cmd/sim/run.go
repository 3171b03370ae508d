package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/smart-sim/sim/internal/report"
	"github.com/smart-sim/sim/internal/seqdiag"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/internal/yamlfile"
	"github.com/smart-sim/sim/scenarios"
)

// runRun is `sim run [--target READY.json] [--junit FILE] [--report json]
// [--trace DIR] SCENARIO.yaml...`: it runs each scenario (in its own world,
// or against a running `sim serve`), prints the report, and exits 0 when
// every flow passed, 1 when an expectation failed, 2 on invalid input.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	target := fs.String("target", "", "run against the `sim serve` described by this ready-file (default: start each scenario's own world)")
	junit := fs.String("junit", "", "also write a JUnit XML report to this `file`")
	format := fs.String("report", "text", "report format on stdout: text or json")
	traceDir := fs.String("trace", "", "write each flow's sequence diagram (NNN-name.svg and .mmd) into this `dir`")
	logLevel := fs.String("log-level", "none", "server log level of an own world (none, debug, info, warn, error); injected faults make servers log errors")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sim run [--target READY.json] [--junit FILE] [--report json] [--trace DIR] SCENARIO.yaml...")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return invalid("no scenario files given (usage: sim run [flags] SCENARIO.yaml...)")
	}
	if *format != "text" && *format != "json" {
		return invalid("--report: found %q, expected text or json", *format)
	}
	opt := scenarios.RunOptions{}
	if *logLevel != "none" {
		logger, err := newLogger(stderr, *logLevel)
		if err != nil {
			return err
		}
		opt.Logger = logger
	}
	if *target != "" {
		ready, err := readReady(*target)
		if err != nil {
			return err
		}
		opt.Target = &ready
	}

	// Every file is checked before anything runs.
	var scs []*scenarios.Scenario
	bad := 0
	for _, path := range fs.Args() {
		// `sim run scenarios/*.yaml` also matches world files: they are
		// not scenarios, and are passed over with a word.
		if _, err := scenarios.LoadWorld(path); err == nil && !isScenario(path) {
			fmt.Fprintf(stderr, "%s: a world file, not a scenario: skipped\n", path)
			continue
		}
		sc, err := scenarios.LoadScenario(path)
		if err != nil {
			bad++
			var ps yamlfile.Problems
			if errors.As(err, &ps) {
				fmt.Fprintln(stderr, err.Error())
			} else {
				fmt.Fprintf(stderr, "%s: cannot read the scenario file\n", path)
			}
			continue
		}
		scs = append(scs, sc)
	}
	if bad > 0 {
		return &exitError{code: exitInvalid, err: errors.New(plural(bad, "scenario file has problems", "scenario files have problems"))}
	}

	var traceErr error
	if *traceDir != "" {
		if err := os.MkdirAll(*traceDir, 0o755); err != nil {
			return fmt.Errorf("create the trace directory: %w", err)
		}
		n := 0
		opt.OnFlow = func(_ int, fr *report.FlowResult, tf trace.Flow) {
			n++
			if err := writeTrace(*traceDir, n, fr, tf); err != nil && traceErr == nil {
				traceErr = err
			}
		}
	}
	var results []report.Result
	for _, sc := range scs {
		res, err := scenarios.Run(ctx, sc, opt)
		if err != nil {
			if errors.Is(err, scenarios.ErrWorldMismatch) {
				return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", sc.File, err)}
			}
			return fmt.Errorf("%s: %w", sc.File, err)
		}
		results = append(results, res)
	}
	if traceErr != nil {
		return traceErr
	}
	var out bytes.Buffer
	var err error
	if *format == "json" {
		err = report.JSON(&out, results, report.Options{})
	} else {
		err = report.Text(&out, results, report.Options{})
	}
	if err != nil {
		return err
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if *junit != "" {
		var b bytes.Buffer
		if err := report.JUnit(&b, results, report.Options{}); err != nil {
			return err
		}
		if err := os.WriteFile(*junit, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write the JUnit report: %w", err)
		}
	}
	if !report.Passed(results) {
		_, failed := report.Counts(results)
		return &exitError{code: exitFailed, err: errors.New(plural(failed, "flow failed", "flows failed"))}
	}
	return nil
}

// readReady reads a `sim serve --ready-file`.
func readReady(path string) (scenarios.Ready, error) {
	var r scenarios.Ready
	b, err := os.ReadFile(path)
	if err != nil {
		return r, invalid("--target: cannot read %s", path)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, invalid("--target: %s is not a ready-file (a JSON object with ehr_fhir, other_fhir, console, api)", path)
	}
	if r.EHRFHIR == "" || r.OtherFHIR == "" || r.API == "" {
		return r, invalid("--target: %s lacks ehr_fhir, other_fhir or api", path)
	}
	return r, nil
}

// writeTrace writes one flow's diagrams: NNN-name.svg and NNN-name.mmd.
func writeTrace(dir string, n int, fr *report.FlowResult, tf trace.Flow) error {
	base := report.TraceFileBase(n, *fr)
	opts := seqdiag.Options{Title: fr.FlowName()}
	if err := os.WriteFile(filepath.Join(dir, base+".svg"), seqdiag.SVG(tf, opts), 0o644); err != nil {
		return fmt.Errorf("write trace diagram: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".mmd"), []byte(seqdiag.Mermaid(tf, opts)), 0o644); err != nil {
		return fmt.Errorf("write trace diagram: %w", err)
	}
	fr.Trace = []string{base + ".svg", base + ".mmd"}
	return nil
}
