package report

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// Text writes the readable summary: per scenario, one line per flow (or
// matrix cell) with ✓ or ✗, and under each ✗ what was wrong: the step, the
// expectation, the wanted and the actual value. A last line counts the
// flows.
func Text(w io.Writer, results []Result, opts Options) error {
	bw := bufio.NewWriter(w)
	for i, r := range results {
		if i > 0 {
			bw.WriteString("\n")
		}
		head := line(r.Scenario)
		if r.File != "" {
			head += " (" + line(r.File) + ")"
		}
		bw.WriteString(head + "\n")
		if len(r.Flows) == 0 {
			bw.WriteString("  (no flows)\n")
		}
		for _, f := range r.Flows {
			mark := "✓"
			if !f.Passed {
				mark = "✗"
			}
			fmt.Fprintf(bw, "  %s %s", mark, line(f.FlowName()))
			if !opts.NoTimings {
				fmt.Fprintf(bw, " (%s)", ms(f.Duration))
			}
			bw.WriteString("\n")
			if f.Passed {
				continue
			}
			for _, s := range f.Steps {
				for _, fl := range s.Failures {
					fmt.Fprintf(bw, "      %s: %s: want %s, got %s\n", stepName(s), line(fl.Expectation), line(fl.Want), line(fl.Got))
				}
			}
			if f.Error != "" {
				fmt.Fprintf(bw, "      could not run: %s\n", line(f.Error))
			}
		}
	}
	passed, failed := Counts(results)
	fmt.Fprintf(bw, "\n%s: %d passed, %d failed\n", plural(passed+failed, "flow"), passed, failed)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// stepName is "step 2 (other, other_launch)".
func stepName(s StepResult) string {
	var b strings.Builder
	b.WriteString("step ")
	b.WriteString(strconv.Itoa(s.Index))
	name := line(s.Name)
	switch {
	case name != "" && s.Kind != "" && name != s.Kind:
		b.WriteString(" (" + name + ", " + line(s.Kind) + ")")
	case name != "":
		b.WriteString(" (" + name + ")")
	case s.Kind != "":
		b.WriteString(" (" + line(s.Kind) + ")")
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// line makes text from a scenario file or a server safe for one terminal
// line: control characters (escape sequences, newlines) become spaces and
// very long values are clipped.
func line(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	const max = 500
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

// jsonReport is the JSON document's shape.
type jsonReport struct {
	Passed    bool           `json:"passed"`
	Summary   jsonSummary    `json:"summary"`
	Scenarios []jsonScenario `json:"scenarios"`
}

type jsonSummary struct {
	Flows  int `json:"flows"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
}

type jsonScenario struct {
	Scenario string     `json:"scenario"`
	File     string     `json:"file,omitempty"`
	Passed   bool       `json:"passed"`
	Flows    []jsonFlow `json:"flows"`
}

type jsonFlow struct {
	Name       string     `json:"name"`
	Cell       string     `json:"cell,omitempty"`
	Passed     bool       `json:"passed"`
	Error      string     `json:"error,omitempty"`
	DurationMS *int64     `json:"duration_ms,omitempty"`
	Steps      []jsonStep `json:"steps"`
	Trace      []string   `json:"trace,omitempty"`
}

type jsonStep struct {
	Index      int       `json:"index"`
	Name       string    `json:"name"`
	Kind       string    `json:"kind,omitempty"`
	Passed     bool      `json:"passed"`
	DurationMS *int64    `json:"duration_ms,omitempty"`
	Failures   []Failure `json:"failures,omitempty"`
}

// JSON writes the results as one indented JSON document:
//
//	{"passed": false, "summary": {"flows": 2, "passed": 1, "failed": 1},
//	 "scenarios": [{"scenario", "file", "passed", "flows": [{"name", "cell",
//	   "passed", "error", "duration_ms", "steps": [{"index", "name", "kind",
//	   "passed", "duration_ms", "failures": [{"expectation", "want", "got"}]}],
//	   "trace"}]}]}
func JSON(w io.Writer, results []Result, opts Options) error {
	passed, failed := Counts(results)
	doc := jsonReport{
		Passed:    failed == 0,
		Summary:   jsonSummary{Flows: passed + failed, Passed: passed, Failed: failed},
		Scenarios: make([]jsonScenario, 0, len(results)),
	}
	dur := func(d int64) *int64 {
		if opts.NoTimings {
			return nil
		}
		return &d
	}
	for _, r := range results {
		s := jsonScenario{Scenario: r.Scenario, File: r.File, Passed: Passed([]Result{r}), Flows: make([]jsonFlow, 0, len(r.Flows))}
		for _, f := range r.Flows {
			jf := jsonFlow{Name: f.Name, Cell: f.Cell, Passed: f.Passed, Error: f.Error,
				DurationMS: dur(ms(f.Duration).Milliseconds()), Steps: make([]jsonStep, 0, len(f.Steps)), Trace: f.Trace}
			for _, st := range f.Steps {
				jf.Steps = append(jf.Steps, jsonStep{Index: st.Index, Name: st.Name, Kind: st.Kind, Passed: st.Passed,
					DurationMS: dur(ms(st.Duration).Milliseconds()), Failures: st.Failures})
			}
			s.Flows = append(s.Flows, jf)
		}
		doc.Scenarios = append(doc.Scenarios, s)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// JUnit XML, in the shape CI systems read (Jenkins, GitLab, GitHub
// actions): testsuites > testsuite (one per scenario) > testcase (one per
// flow or matrix cell) with a <failure> for unmet expectations or an
// <error> for a flow that could not run.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	File     string      `xml:"file,attr,omitempty"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// JUnit writes the results as JUnit XML: one testsuite per scenario, one
// testcase per flow or matrix cell (named "flow [cell]"). A failed
// expectation is a <failure>; a flow that could not run is an <error>.
func JUnit(w io.Writer, results []Result, opts Options) error {
	secs := func(d float64) string {
		if opts.NoTimings {
			d = 0
		}
		return strconv.FormatFloat(d, 'f', 3, 64)
	}
	doc := junitSuites{Name: "sim"}
	var total float64
	for _, r := range results {
		suite := junitSuite{Name: line(r.Scenario), File: line(r.File)}
		var suiteTime float64
		for _, f := range r.Flows {
			c := junitCase{Name: line(f.FlowName()), Classname: suite.Name, Time: secs(seconds(f.Duration)), File: suite.File}
			suiteTime += seconds(f.Duration)
			var lines []string
			first := ""
			for _, s := range f.Steps {
				for _, fl := range s.Failures {
					l := fmt.Sprintf("%s: %s: want %s, got %s", stepName(s), line(fl.Expectation), line(fl.Want), line(fl.Got))
					if first == "" {
						first = l
					}
					lines = append(lines, l)
				}
			}
			switch {
			case f.Error != "":
				text := strings.Join(append(lines, "could not run: "+line(f.Error)), "\n")
				c.Error = &junitProblem{Message: line(f.Error), Type: "run", Text: text}
				suite.Errors++
			case !f.Passed:
				if first == "" {
					first = "the flow did not pass"
				}
				c.Failure = &junitProblem{Message: first, Type: "expectation", Text: strings.Join(lines, "\n")}
				suite.Failures++
			}
			if len(f.Trace) > 0 {
				c.SystemOut = "trace: " + strings.Join(f.Trace, " ")
			}
			suite.Cases = append(suite.Cases, c)
		}
		suite.Tests = len(r.Flows)
		suite.Time = secs(suiteTime)
		total += suiteTime
		doc.Tests += suite.Tests
		doc.Failures += suite.Failures
		doc.Errors += suite.Errors
		doc.Suites = append(doc.Suites, suite)
	}
	doc.Time = secs(total)
	out, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	out = append(out, '\n')
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	return nil
}
