package fhirstore

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"time"
	"unicode"
)

type paramKind int

const (
	kindToken paramKind = iota + 1
	kindString
	kindDate
	kindRef
)

func (k paramKind) String() string {
	switch k {
	case kindToken:
		return "token"
	case kindString:
		return "string"
	case kindDate:
		return "date"
	case kindRef:
		return "reference"
	}
	return "special"
}

// paramSpec is one search parameter of one resource type: the JSON element
// paths (dot separated; arrays are walked) it indexes.
type paramSpec struct {
	name    string
	kind    paramKind
	paths   []string
	targets []string // reference target types
	doc     string
}

func tok(name string, paths ...string) paramSpec {
	return paramSpec{name: name, kind: kindToken, paths: paths}
}
func str(name string, paths ...string) paramSpec {
	return paramSpec{name: name, kind: kindString, paths: paths}
}
func date(name string, paths ...string) paramSpec {
	return paramSpec{name: name, kind: kindDate, paths: paths}
}
func ref(name string, targets []string, paths ...string) paramSpec {
	return paramSpec{name: name, kind: kindRef, paths: paths, targets: targets}
}

var (
	patientOnly = []string{"Patient"}
	subjects    = []string{"Patient", "Group"}
)

// clinical builds the parameters shared by the patient-compartment types.
func clinical(subjectPath string, datePaths []string, codePath string, extra ...paramSpec) []paramSpec {
	ps := []paramSpec{
		ref("patient", patientOnly, subjectPath),
		tok("identifier", "identifier"),
		date("date", datePaths...),
	}
	if subjectPath == "subject" {
		ps = append(ps, ref("subject", subjects, "subject"))
	}
	if codePath != "" {
		ps = append(ps, tok("code", codePath))
	}
	return append(ps, extra...)
}

// resourceTypes lists every type the server supports and its search
// parameters. The CapabilityStatement is generated from this table.
var resourceTypes = map[string][]paramSpec{
	"Patient": {
		tok("identifier", "identifier"), str("name", "name"), str("family", "name.family"),
		str("given", "name.given"), date("birthdate", "birthDate"), tok("gender", "gender"),
	},
	"Practitioner": {
		tok("identifier", "identifier"), str("name", "name"), str("family", "name.family"), str("given", "name.given"),
	},
	"Organization": {
		tok("identifier", "identifier"), str("name", "name", "alias"), tok("type", "type"),
		ref("endpoint", []string{"Endpoint"}, "endpoint"),
	},
	"Endpoint": {
		tok("identifier", "identifier"), str("name", "name"), tok("status", "status"),
		ref("organization", []string{"Organization"}, "managingOrganization"),
	},
	"Encounter": clinical("subject", []string{"period"}, "",
		tok("status", "status"), tok("class", "class"), tok("type", "type")),
	"Condition": clinical("subject", []string{"onsetDateTime", "onsetPeriod", "recordedDate"}, "code",
		tok("category", "category"), tok("clinical-status", "clinicalStatus")),
	"Observation": clinical("subject", []string{"effectiveDateTime", "effectivePeriod", "effectiveInstant"}, "code",
		tok("category", "category"), tok("status", "status")),
	"MedicationRequest": clinical("subject", []string{"authoredOn"}, "medicationCodeableConcept",
		tok("category", "category"), tok("status", "status")),
	"AllergyIntolerance": clinical("patient", []string{"recordedDate"}, "code",
		tok("category", "category"), tok("clinical-status", "clinicalStatus")),
	"Procedure": clinical("subject", []string{"performedDateTime", "performedPeriod"}, "code",
		tok("category", "category"), tok("status", "status")),
	"Immunization": clinical("patient", []string{"occurrenceDateTime"}, "vaccineCode",
		tok("vaccine-code", "vaccineCode"), tok("status", "status")),
	"DiagnosticReport": clinical("subject", []string{"effectiveDateTime", "effectivePeriod"}, "code",
		tok("category", "category"), tok("status", "status")),
	"ImagingStudy": clinical("subject", []string{"started"}, "procedureCode",
		tok("modality", "series.modality"), tok("status", "status")),
}

// compartmentParam names the parameter through which a type belongs to a
// patient's compartment ("" for types outside it; Patient is special).
func compartmentParam(resourceType string) string {
	if resourceType == "Patient" {
		return ""
	}
	for _, p := range resourceTypes[resourceType] {
		if p.name == "patient" {
			return "patient"
		}
	}
	return ""
}

func lookupParam(resourceType, name string) (paramSpec, bool) {
	for _, p := range resourceTypes[resourceType] {
		if p.name == name {
			return p, true
		}
	}
	return paramSpec{}, false
}

func sortedTypes() []string {
	ts := make([]string, 0, len(resourceTypes))
	for t := range resourceTypes {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// indexRows are the side-table rows of one resource version.
type indexRows struct {
	tokens  []tokenRow
	strings []stringRow
	dates   []dateRow
	refs    []refRow
}

type tokenRow struct{ param, system, value string }
type stringRow struct{ param, norm, raw string }
type dateRow struct {
	param  string
	lo, hi int64
}
type refRow struct{ param, ttype, tid, base string }

// extractIndex computes the index rows of a canonical resource document.
// selfBase is this server's base URL: absolute references to it are
// indexed as local ones.
func extractIndex(resourceType string, doc map[string]any, selfBase string) indexRows {
	var rows indexRows
	for _, p := range resourceTypes[resourceType] {
		for _, path := range p.paths {
			for _, v := range walk(doc, strings.Split(path, ".")) {
				switch p.kind {
				case kindToken:
					addTokens(&rows, p.name, v)
				case kindString:
					addStrings(&rows, p.name, v)
				case kindDate:
					if lo, hi, ok := dateRange(v); ok {
						rows.dates = append(rows.dates, dateRow{p.name, lo, hi})
					}
				case kindRef:
					if m, ok := v.(map[string]any); ok {
						if s, ok := m["reference"].(string); ok {
							if tt, id, base, ok := splitReference(s, selfBase); ok {
								rows.refs = append(rows.refs, refRow{p.name, tt, id, base})
							}
						}
					}
				}
			}
		}
	}
	return rows
}

// walk follows path through objects, flattening arrays on the way.
func walk(v any, path []string) []any {
	if len(path) == 0 {
		if arr, ok := v.([]any); ok {
			return arr
		}
		return []any{v}
	}
	switch x := v.(type) {
	case map[string]any:
		next, ok := x[path[0]]
		if !ok {
			return nil
		}
		return walk(next, path[1:])
	case []any:
		var out []any
		for _, e := range x {
			out = append(out, walk(e, path)...)
		}
		return out
	}
	return nil
}

func addTokens(rows *indexRows, param string, v any) {
	switch x := v.(type) {
	case string:
		rows.tokens = append(rows.tokens, tokenRow{param, "", x})
	case bool:
		s := "false"
		if x {
			s = "true"
		}
		rows.tokens = append(rows.tokens, tokenRow{param, "", s})
	case map[string]any:
		if codings, ok := x["coding"].([]any); ok {
			for _, c := range codings {
				addTokens(rows, param, c)
			}
			return
		}
		sys, _ := x["system"].(string)
		if code, ok := x["code"].(string); ok {
			rows.tokens = append(rows.tokens, tokenRow{param, sys, code})
		} else if val, ok := x["value"].(string); ok {
			rows.tokens = append(rows.tokens, tokenRow{param, sys, val})
		}
	}
}

func addStrings(rows *indexRows, param string, v any) {
	switch x := v.(type) {
	case string:
		rows.strings = append(rows.strings, stringRow{param, normalize(x), x})
	case map[string]any: // HumanName
		for _, k := range []string{"text", "family", "given", "prefix", "suffix"} {
			for _, s := range walk(x, []string{k}) {
				if str, ok := s.(string); ok {
					rows.strings = append(rows.strings, stringRow{param, normalize(str), str})
				}
			}
		}
	}
}

// normalize folds case and removes accents for string search.
func normalize(s string) string {
	ascii := true
	for i := 0; i < len(s) && ascii; i++ {
		ascii = s[i] < 0x80
	}
	if ascii { // no marks, no folds: lower case is all there is to do
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if unicode.Is(unicode.Mn, r) { // combining marks (decomposed accents)
			continue
		}
		r = unicode.ToLower(r)
		if f, ok := foldTable[r]; ok {
			b.WriteString(f)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dateRange turns a date, dateTime, instant or Period into an inclusive
// millisecond range.
func dateRange(v any) (int64, int64, bool) {
	switch x := v.(type) {
	case string:
		return parseDateRange(x)
	case map[string]any:
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		found := false
		if s, ok := x["start"].(string); ok {
			if l, _, ok := parseDateRange(s); ok {
				lo, found = l, true
			}
		}
		if s, ok := x["end"].(string); ok {
			if _, h, ok := parseDateRange(s); ok {
				hi, found = h, true
			}
		}
		return lo, hi, found
	}
	return 0, 0, false
}

// parseDateRange parses a FHIR date/dateTime/instant (any precision) into
// the inclusive millisecond range it denotes. Values without a zone are UTC.
func parseDateRange(s string) (int64, int64, bool) {
	layouts := []struct {
		layout string
		step   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01-02T15:04Z07:00", func(t time.Time) time.Time { return t.Add(time.Minute) }},
		{"2006-01-02T15:04", func(t time.Time) time.Time { return t.Add(time.Minute) }},
		{"2006-01-02T15:04:05Z07:00", nil},
		{"2006-01-02T15:04:05", nil},
	}
	if len(s) > 64 {
		return 0, 0, false
	}
	// The common shapes first: a date, or a UTC dateTime to the second.
	// No earlier layout can parse these lengths, so the result is the
	// loop's; a failed time.Parse allocates its error.
	switch {
	case len(s) == 10:
		layouts = layouts[2:3]
	case len(s) == 20 && s[19] == 'Z':
		layouts = layouts[5:6]
	}
	for _, l := range layouts {
		t, err := time.Parse(l.layout, s)
		if err != nil {
			continue
		}
		if t.Year() < 1 || t.Year() > 9999 {
			return 0, 0, false
		}
		var end time.Time
		if l.step != nil {
			end = l.step(t)
		} else {
			// Seconds precision, or finer when fractional digits are given.
			end = t.Add(time.Second)
			if i := strings.IndexByte(s, '.'); i >= 0 {
				t = t.Truncate(time.Millisecond)
				end = t.Add(time.Millisecond)
			}
		}
		return t.UnixMilli(), end.UnixMilli() - 1, true
	}
	return 0, 0, false
}

// splitReference splits a literal reference into type, id and base ("" for
// a relative reference or one to selfBase).
func splitReference(s, selfBase string) (string, string, string, bool) {
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	base := ""
	if strings.Contains(s, "://") {
		if selfBase != "" && strings.HasPrefix(s, selfBase+"/") {
			s = s[len(selfBase)+1:]
		} else {
			i := strings.LastIndexByte(s, '/')
			if i < 0 {
				return "", "", "", false
			}
			j := strings.LastIndexByte(s[:i], '/')
			if j < 0 {
				return "", "", "", false
			}
			base = s[:j]
			s = s[j+1:]
		}
	}
	tt, id, ok := strings.Cut(s, "/")
	if !ok || tt == "" || id == "" || strings.Contains(id, "/") {
		return "", "", "", false
	}
	return tt, id, base, true
}

// decodeDoc decodes canonical JSON keeping numbers as written.
func decodeDoc(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// foldTable maps lower-case Latin letters with diacritics to their base
// letters (precomposed forms; decomposed marks are dropped above).
var foldTable = map[rune]string{
	'ß': "ss",
	'à': "a",
	'á': "a",
	'â': "a",
	'ã': "a",
	'ä': "a",
	'å': "a",
	'æ': "ae",
	'ç': "c",
	'è': "e",
	'é': "e",
	'ê': "e",
	'ë': "e",
	'ì': "i",
	'í': "i",
	'î': "i",
	'ï': "i",
	'ð': "d",
	'ñ': "n",
	'ò': "o",
	'ó': "o",
	'ô': "o",
	'õ': "o",
	'ö': "o",
	'ø': "o",
	'ù': "u",
	'ú': "u",
	'û': "u",
	'ü': "u",
	'ý': "y",
	'þ': "th",
	'ÿ': "y",
	'ā': "a",
	'ă': "a",
	'ą': "a",
	'ć': "c",
	'ĉ': "c",
	'ċ': "c",
	'č': "c",
	'ď': "d",
	'đ': "d",
	'ē': "e",
	'ĕ': "e",
	'ė': "e",
	'ę': "e",
	'ě': "e",
	'ĝ': "g",
	'ğ': "g",
	'ġ': "g",
	'ģ': "g",
	'ĥ': "h",
	'ĩ': "i",
	'ī': "i",
	'ĭ': "i",
	'į': "i",
	'ĵ': "j",
	'ķ': "k",
	'ĺ': "l",
	'ļ': "l",
	'ľ': "l",
	'ł': "l",
	'ń': "n",
	'ņ': "n",
	'ň': "n",
	'ō': "o",
	'ŏ': "o",
	'ő': "o",
	'œ': "oe",
	'ŕ': "r",
	'ŗ': "r",
	'ř': "r",
	'ś': "s",
	'ŝ': "s",
	'ş': "s",
	'š': "s",
	'ţ': "t",
	'ť': "t",
	'ũ': "u",
	'ū': "u",
	'ŭ': "u",
	'ů': "u",
	'ű': "u",
	'ų': "u",
	'ŵ': "w",
	'ŷ': "y",
	'ź': "z",
	'ż': "z",
	'ž': "z",
	'ơ': "o",
	'ư': "u",
	'ǎ': "a",
	'ǐ': "i",
	'ǒ': "o",
	'ǔ': "u",
	'ǖ': "u",
	'ǘ': "u",
	'ǚ': "u",
	'ǜ': "u",
	'ǟ': "a",
	'ǡ': "a",
	'ǧ': "g",
	'ǩ': "k",
	'ǫ': "o",
	'ǭ': "o",
	'ǰ': "j",
	'ǵ': "g",
	'ǹ': "n",
	'ǻ': "a",
	'ȁ': "a",
	'ȃ': "a",
	'ȅ': "e",
	'ȇ': "e",
	'ȉ': "i",
	'ȋ': "i",
	'ȍ': "o",
	'ȏ': "o",
	'ȑ': "r",
	'ȓ': "r",
	'ȕ': "u",
	'ȗ': "u",
	'ș': "s",
	'ț': "t",
	'ȟ': "h",
	'ȧ': "a",
	'ȩ': "e",
	'ȫ': "o",
	'ȭ': "o",
	'ȯ': "o",
	'ȱ': "o",
	'ȳ': "y",
}
