package scenarios

// Expectations: what a step's outcome and its trace events are checked
// against (see Expect), as report failures naming the expectation as the
// scenario file does, with the wanted and the actual value.

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/smart-sim/sim/internal/report"
	"github.com/smart-sim/sim/internal/trace"
)

func itoa(n int) string { return strconv.Itoa(n) }

// secretFields are token response fields whose values a report never shows.
var secretFields = map[string]bool{"access_token": true, "refresh_token": true, "id_token": true, "launch_token": true}

// check evaluates a step's expectations.
func (fl *flowRun) check(st *Step, out *stepOut, events []trace.Event) []report.Failure {
	e := &st.Expect
	var fails []report.Failure
	fail := func(exp, want, got string) {
		fails = append(fails, report.Failure{Expectation: exp, Want: want, Got: got})
	}
	isRead := st.Kind() == StepRead
	gotErr := out.errCode
	if isRead && gotErr == "" && out.status >= 400 {
		gotErr = readError(out)
	}
	describeErr := func() string {
		if gotErr == "" {
			return "no error"
		}
		s := gotErr
		if out.errDesc != "" {
			s += " (" + out.errDesc + ")"
		}
		return s
	}
	success := true
	switch {
	case e.Error != "":
		if gotErr != e.Error {
			got := describeErr()
			if gotErr == "" && !isRead {
				got = "no error (the step succeeded)"
			}
			fail("error", e.Error, got)
		}
		success = false
	case isRead:
		if e.Status == 0 && (out.status < 200 || out.status > 299) {
			fail("status", "a success (2xx)", statusText(out.status, gotErr))
		}
		success = out.status/100 == 2
	case out.errCode != "":
		fail("error", "no error", describeErr())
		success = false
	}
	if e.Status != 0 && out.status != e.Status {
		fail("status", itoa(e.Status), statusText(out.status, gotErr))
	}
	if success && !isRead {
		granted := out.granted()
		scopeText := strings.Join(granted, " ")
		if scopeText == "" {
			scopeText = "(none)"
		}
		for _, s := range e.Granted {
			if !slices.Contains(granted, s) {
				fail("granted", s+" granted", "granted scope: "+scopeText)
			}
		}
		for _, s := range e.Refused {
			if slices.Contains(granted, s) {
				fail("refused", s+" refused", s+" granted (granted scope: "+scopeText+")")
			}
		}
		for _, k := range e.Present {
			if v, ok := out.token[k]; !ok || v == nil {
				fail("present", k+" in the token response", "no "+k)
			}
		}
		for _, k := range e.Absent {
			if v, ok := out.token[k]; ok && v != nil {
				got := k + " present"
				if !secretFields[k] {
					got += ": " + scalarText(v)
				}
				fail("absent", "no "+k, got)
			}
		}
		for _, k := range sortedKeys(e.Fields) {
			want, err := fl.wantText(e.Fields[k])
			if err != nil {
				fail("fields."+k, "a value", err.Error())
				continue
			}
			v, ok := out.token[k]
			got := "absent"
			if ok && v != nil {
				got = scalarText(v)
			}
			if !ok || v == nil || !sameScalar(v, e.Fields[k], want) {
				if secretFields[k] && ok {
					got = "another value"
				}
				fail("fields."+k, want, got)
			}
		}
	}
	if e.Count != nil && success && out.count != *e.Count {
		fail("count", itoa(*e.Count), itoa(out.count))
	} else if e.Count != nil && !success {
		fail("count", itoa(*e.Count), "nothing read ("+statusText(out.status, gotErr)+")")
	}
	if e.SamePerson != nil {
		patient := ""
		if success {
			patient, _ = out.token["patient"].(string)
		}
		same := fl.samePerson(out.server, patient)
		if same != *e.SamePerson {
			got := "false: no patient in context"
			switch {
			case same:
				got = "true: " + out.server + " patient " + patient + " is a record of EHR patient " + fl.cell.Patient.EHRID
			case patient != "":
				got = "false: " + out.server + " patient " + patient + " is not a record of EHR patient " + fl.cell.Patient.EHRID
			}
			fail("same_person", strconv.FormatBool(*e.SamePerson), got)
		}
	}
	for i, m := range e.TraceHas {
		if !slices.ContainsFunc(events, m.matches) {
			fail(fmt.Sprintf("trace_has[%d]", i), "an event "+m.String(), "no such event in this step")
		}
	}
	for i, m := range e.TraceLacks {
		if j := slices.IndexFunc(events, m.matches); j >= 0 {
			fail(fmt.Sprintf("trace_lacks[%d]", i), "no event "+m.String(), eventText(events[j]))
		}
	}
	return fails
}

func statusText(status int, errCode string) string {
	switch {
	case status == 0 && errCode != "":
		return "no response (" + errCode + ")"
	case status == 0:
		return "no response"
	case errCode != "":
		return itoa(status) + " (" + errCode + ")"
	}
	return itoa(status)
}

// readError is the error of a failed FHIR read: RFC 6750 names it in
// WWW-Authenticate; the status says the rest.
func readError(out *stepOut) string {
	switch out.status {
	case 401:
		return "invalid_token"
	case 403:
		return "insufficient_scope"
	case 400:
		return "invalid_request"
	}
	if out.status >= 500 {
		return "server_error"
	}
	return ""
}

// wantText is an expected field value as text (strings expanded).
func (fl *flowRun) wantText(v any) (string, error) {
	if s, ok := v.(string); ok {
		out, err := Expand(s, fl.lookup)
		if err != nil {
			return "", fmt.Errorf("could not fill %q: %v", s, err)
		}
		return out, nil
	}
	return scalarText(normalizeNumber(v)), nil
}

func normalizeNumber(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return v
}

// sameScalar compares a token response value with an expected one.
func sameScalar(got, want any, wantText string) bool {
	switch w := normalizeNumber(want).(type) {
	case float64:
		g, ok := got.(float64)
		return ok && math.Abs(g-w) < 1e-9
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	}
	g, ok := got.(string)
	return ok && g == wantText
}

// matches reports whether an event matches every given field.
func (m TraceMatch) matches(e trace.Event) bool {
	if m.From != "" {
		if p, _ := TraceParty(m.From); p != e.From {
			return false
		}
	}
	if m.To != "" {
		if p, _ := TraceParty(m.To); p != e.To {
			return false
		}
	}
	if m.Method != "" && !strings.EqualFold(m.Method, e.Method) {
		return false
	}
	if m.Path != "" {
		u, err := url.Parse(e.URL)
		if err != nil || e.URL == "" || !strings.Contains(u.Path, m.Path) {
			return false
		}
	}
	if m.Label != "" && !strings.Contains(e.Label, m.Label) {
		return false
	}
	if m.Decision != "" && !strings.Contains(e.Decision, m.Decision) {
		return false
	}
	if m.Status != 0 && e.Status != m.Status {
		return false
	}
	if m.Error != nil && *m.Error != e.Error {
		return false
	}
	return true
}

// String writes the match as the scenario file does.
func (m TraceMatch) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+": "+v)
		}
	}
	add("from", m.From)
	add("to", m.To)
	add("method", m.Method)
	add("path", m.Path)
	add("label", m.Label)
	add("decision", m.Decision)
	if m.Status != 0 {
		add("status", itoa(m.Status))
	}
	if m.Error != nil {
		add("error", strconv.FormatBool(*m.Error))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// eventText describes a recorded event in one line.
func eventText(e trace.Event) string {
	s := string(e.From) + " → " + string(e.To) + ": "
	if e.Kind == trace.KindDecision {
		return s + e.Decision
	}
	s += e.Label
	if e.Status != 0 {
		s += " " + itoa(e.Status)
	} else if e.Error {
		s += " (no response)"
	}
	return s
}
