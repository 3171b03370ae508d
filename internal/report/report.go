package report

import (
	"fmt"
	"strings"
	"time"
)

// Result is the outcome of running one scenario file.
type Result struct {
	// Scenario is the scenario's name; File the path it was loaded from.
	Scenario string `json:"scenario"`
	File     string `json:"file,omitempty"`
	// Flows holds one entry per flow, or per matrix cell of a flow that
	// runs once per patient or class, in the scenario's order.
	Flows []FlowResult `json:"flows"`
}

// FlowResult is one flow, or one matrix cell of a flow.
type FlowResult struct {
	// Name is the flow's name; Cell names the matrix cell ("class=absent",
	// "patient=e-17"), empty for a flow that is not a matrix.
	Name string `json:"name"`
	Cell string `json:"cell,omitempty"`
	// Passed: every step ran and met every expectation.
	Passed bool `json:"passed"`
	// Error is why the flow could not run to its end (a step could not be
	// executed, e.g. a page had no consent form), in words for a user;
	// empty when every step ran.
	Error string `json:"error,omitempty"`
	// Steps are the steps that ran, in order.
	Steps []StepResult `json:"steps"`
	// Duration is the flow's wall time.
	Duration time.Duration `json:"-"`
	// Trace names the diagram files written for this flow (--trace DIR),
	// relative to the trace directory; empty without --trace.
	Trace []string `json:"trace,omitempty"`
}

// StepResult is one step of a flow.
type StepResult struct {
	// Index is the step's 1-based position in the flow; Name its name and
	// Kind its kind (ehr_launch, read, ...).
	Index int    `json:"index"`
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	// Passed: the step ran and met every expectation.
	Passed bool `json:"passed"`
	// Failures are the expectations the step did not meet.
	Failures []Failure     `json:"failures,omitempty"`
	Duration time.Duration `json:"-"`
}

// Failure is one unmet expectation.
type Failure struct {
	// Expectation names it as the scenario file does: "granted",
	// "refused", "error", "status", "fields.patient", "count",
	// "same_person", "trace_has[0]", ...
	Expectation string `json:"expectation"`
	// Want and Got are the wanted and the actual value, as text.
	Want string `json:"want"`
	Got  string `json:"got"`
}

// FlowName is the flow's display name: "name" or "name [cell]".
func (f FlowResult) FlowName() string {
	if f.Cell == "" {
		return f.Name
	}
	return f.Name + " [" + f.Cell + "]"
}

// Passed reports whether every flow of every result passed.
func Passed(results []Result) bool {
	for _, r := range results {
		for _, f := range r.Flows {
			if !f.Passed {
				return false
			}
		}
	}
	return true
}

// Counts returns how many flows (cells) passed and how many failed.
func Counts(results []Result) (passed, failed int) {
	for _, r := range results {
		for _, f := range r.Flows {
			if f.Passed {
				passed++
			} else {
				failed++
			}
		}
	}
	return passed, failed
}

// Options tune the writers.
type Options struct {
	// NoTimings leaves durations out (Text, JSON) or writes them as 0
	// (JUnit), for golden files.
	NoTimings bool
}

// ms rounds d to the millisecond.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func seconds(d time.Duration) float64 { return ms(d).Seconds() }

// TraceFileBase is a file name (without extension) for the diagrams of the
// n-th run (1-based) of a scenario: "003-shared-patient-class-absent". It is
// safe on every file system: lower-case ASCII letters, digits and dashes,
// at most 80 bytes.
func TraceFileBase(n int, f FlowResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%03d", n)
	dash := true
	for _, r := range strings.ToLower(f.FlowName()) {
		if b.Len() >= 80 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash {
				b.WriteByte('-')
				dash = false
			}
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	return b.String()
}
