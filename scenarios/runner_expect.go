package scenarios

// Expectations: what a step's outcome and its trace events are checked
// against (see Expect), as report failures naming the expectation as the
// scenario file does, with the wanted and the actual value.

import (
	"fmt"
	"maps"
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
		fl.checkToken("", out.token, tokenChecks{granted: e.Granted, refused: e.Refused, present: e.Present, absent: e.Absent,
			fields: e.Fields, fhirContext: e.FHIRContext}, fail)
		for _, srv := range slices.Sorted(maps.Keys(e.AdditionalTokens)) {
			if te := e.AdditionalTokens[srv]; te != nil {
				fl.checkAdditional("additional_tokens."+srv, srv, out, te, fail)
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
			fail("same_person", strconv.FormatBool(*e.SamePerson), fl.samePersonText(out.server, patient, same))
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

// tokenChecks are the expectations on one token response (or one entry
// of a broker's additional_tokens).
type tokenChecks struct {
	granted, refused, present, absent []string
	fields                            map[string]any
	fhirContext                       []FHIRContextMatch
}

// checkToken checks a token response; prefix names where it sits in the
// expectation ("" or "additional_tokens.other.").
func (fl *flowRun) checkToken(prefix string, token map[string]any, c tokenChecks, fail func(exp, want, got string)) {
	scopeText, _ := token["scope"].(string)
	granted := strings.Fields(scopeText)
	scopeText = strings.Join(granted, " ")
	if scopeText == "" {
		scopeText = "(none)"
	}
	for _, s := range c.granted {
		if !slices.Contains(granted, s) {
			fail(prefix+"granted", s+" granted", "granted scope: "+scopeText)
		}
	}
	for _, s := range c.refused {
		if slices.Contains(granted, s) {
			fail(prefix+"refused", s+" refused", s+" granted (granted scope: "+scopeText+")")
		}
	}
	for _, k := range c.present {
		if v, ok := token[k]; !ok || v == nil {
			fail(prefix+"present", k+" in the token response", "no "+k)
		}
	}
	for _, k := range c.absent {
		if v, ok := token[k]; ok && v != nil {
			got := k + " present"
			if !secretFields[k] {
				got += ": " + clipJSON(v)
			}
			fail(prefix+"absent", "no "+k, got)
		}
	}
	for _, k := range sortedKeys(c.fields) {
		want, err := fl.wantText(c.fields[k])
		if err != nil {
			fail(prefix+"fields."+k, "a value", err.Error())
			continue
		}
		v, ok := token[k]
		got := "absent"
		if ok && v != nil {
			got = clipJSON(v)
		}
		if !ok || v == nil || !sameScalar(v, c.fields[k], want) {
			if secretFields[k] && ok {
				got = "another value"
			}
			fail(prefix+"fields."+k, want, got)
		}
	}
	entries, _ := token["fhirContext"].([]any)
	for i, m := range c.fhirContext {
		want, err := fl.fhirContextWant(m)
		exp := fmt.Sprintf("%sfhir_context[%d]", prefix, i)
		if err != nil {
			fail(exp, "an entry", err.Error())
			continue
		}
		if !slices.ContainsFunc(entries, func(x any) bool { return fhirContextMatches(x, want) }) {
			got := "no fhirContext"
			if _, ok := token["fhirContext"]; ok {
				got = "fhirContext: " + clipJSON(token["fhirContext"])
			}
			fail(exp, "an entry "+want.String(), got)
		}
	}
}

// checkAdditional checks what a broker launch got for one other server.
func (fl *flowRun) checkAdditional(exp, server string, out *stepOut, te *TokenExpect, fail func(exp, want, got string)) {
	base := fl.rn.fhirBase(server)
	entry, hasToken := additionalEntry(out.token, "additional_tokens", base)
	errEntry, hasErr := additionalEntry(out.token, "additional_token_errors", base)
	errText := "no entry for " + base + " in additional_tokens or additional_token_errors"
	if hasErr {
		code, _ := errEntry["error"].(string)
		errText = code
		if d, _ := errEntry["error_description"].(string); d != "" {
			errText += " (" + d + ")"
		}
	}
	if te.Error != "" {
		switch {
		case hasToken:
			s, _ := entry["scope"].(string)
			fail(exp+".error", te.Error, "a token (granted scope: "+s+")")
		case !hasErr || errEntry["error"] != te.Error:
			fail(exp+".error", te.Error, errText)
		}
		return
	}
	if !hasToken {
		fail(exp, "a token for "+base, errText)
		return
	}
	fl.checkToken(exp+".", entry, tokenChecks{granted: te.Granted, refused: te.Refused, present: te.Present, absent: te.Absent,
		fields: te.Fields, fhirContext: te.FHIRContext}, fail)
	if te.SamePerson != nil {
		patient, _ := entry["patient"].(string)
		if same := fl.samePerson(server, patient); same != *te.SamePerson {
			fail(exp+".same_person", strconv.FormatBool(*te.SamePerson), fl.samePersonText(server, patient, same))
		}
	}
}

// fhirContextWant expands the templates of a fhir_context expectation.
func (fl *flowRun) fhirContextWant(m FHIRContextMatch) (FHIRContextMatch, error) {
	for _, f := range []*string{&m.Type, &m.Reference, &m.Role, &m.Identifier} {
		v, err := Expand(*f, fl.lookup)
		if err != nil {
			return m, fmt.Errorf("could not fill %q: %v", *f, err)
		}
		*f = v
	}
	return m, nil
}

// fhirContextMatches reports whether a fhirContext entry has every key
// want gives (identifier: its identifier.value).
func fhirContextMatches(x any, want FHIRContextMatch) bool {
	e, ok := x.(map[string]any)
	if !ok {
		return false
	}
	str := func(k string) string { s, _ := e[k].(string); return s }
	id, _ := e["identifier"].(map[string]any)
	idValue, _ := id["value"].(string)
	return (want.Type == "" || str("type") == want.Type) &&
		(want.Reference == "" || str("reference") == want.Reference) &&
		(want.Role == "" || str("role") == want.Role) &&
		(want.Identifier == "" || idValue == want.Identifier)
}

// String writes the match as the scenario file does.
func (m FHIRContextMatch) String() string {
	var parts []string
	for _, f := range []struct{ k, v string }{{"type", m.Type}, {"reference", m.Reference}, {"role", m.Role}, {"identifier", m.Identifier}} {
		if f.v != "" {
			parts = append(parts, f.k+": "+f.v)
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// clipJSON is a response value for a report: scalars as text, the rest
// as JSON, at most 400 bytes.
func clipJSON(v any) string {
	s := scalarText(v)
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
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

// samePersonText describes a same_person outcome.
func (fl *flowRun) samePersonText(server, patient string, same bool) string {
	switch {
	case same:
		return "true: " + server + " patient " + patient + " is a record of EHR patient " + fl.cell.Patient.EHRID
	case patient != "":
		return "false: " + server + " patient " + patient + " is not a record of EHR patient " + fl.cell.Patient.EHRID
	}
	return "false: no patient in context"
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
