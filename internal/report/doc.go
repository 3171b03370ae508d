// Package report writes the results of a scenario run: a readable summary
// (✓/✗ per flow or matrix cell; for ✗ the step, the expectation, the wanted
// and the actual value), the same as JSON (`sim run --report json`), and
// JUnit XML (`sim run --junit FILE`, one testcase per flow or matrix cell).
//
// The writers are deterministic: they keep the order of the results they
// are given and print durations rounded to the millisecond (or not at all,
// with Options.NoTimings, for golden files).
package report
