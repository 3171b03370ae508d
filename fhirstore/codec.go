package fhirstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxNestingDepth bounds hostile input: no R4 resource we serve nests this deep.
const maxNestingDepth = 64

// Codec parses, validates and serialises R4 JSON with google/fhir's
// jsonformat. One Codec is built once and shared: both the validating
// unmarshaller and the compact marshaller are safe for concurrent use.
type Codec struct {
	u *jsonformat.Unmarshaller
	m *jsonformat.Marshaller
}

// NewCodec builds the validating unmarshaller and the compact marshaller and
// warms them once (the first parse initialises the library's tables).
func NewCodec() (*Codec, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("build unmarshaller: %w", err)
	}
	u.MaxNestingDepth = maxNestingDepth
	m, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("build marshaller: %w", err)
	}
	c := &Codec{u: u, m: m}
	if _, err := c.Canonical([]byte(`{"resourceType":"Patient","id":"warm","gender":"unknown"}`)); err != nil {
		return nil, fmt.Errorf("warm codec: %w", err)
	}
	return c, nil
}

// Resource is a parsed, validated resource ready to be stamped and stored.
type Resource struct {
	Type string
	ID   string // the id in the body, "" when absent
	cr   proto.Message
	res  protoreflect.Message
}

// Parse decodes and validates one resource. A malformed body is a 400
// OperationOutcome (*OutcomeError); a well-formed body that breaks R4 rules
// (required elements, reference targets, formats) is a 422 naming the
// elements in expression.
func (c *Codec) Parse(body []byte) (*Resource, error) {
	if path, problem, ok := unacceptedJSON(body); ok {
		return nil, &OutcomeError{Status: http.StatusBadRequest, Issues: []Issue{{
			Severity: "error", Code: "structure",
			Diagnostics: problem,
			Expression:  []string{path},
		}}}
	}
	msg, outcome, err := c.u.UnmarshalWithOutcome(body)
	if err != nil {
		return nil, parseError(err)
	}
	if outcome != nil && outcome.R4Outcome != nil && len(outcome.R4Outcome.GetIssue()) > 0 {
		oe := &OutcomeError{Status: http.StatusUnprocessableEntity}
		if b, err := c.m.MarshalResource(outcome.R4Outcome); err == nil {
			var oo struct {
				Issue []Issue `json:"issue"`
			}
			if json.Unmarshal(b, &oo) == nil {
				oe.Issues = oo.Issue
			}
		}
		if len(oe.Issues) == 0 {
			oe.Issues = []Issue{{Severity: "error", Code: "invariant", Diagnostics: "resource failed validation"}}
		}
		errorsOnly := oe.Issues[:0]
		for _, is := range oe.Issues {
			if is.Severity == "error" || is.Severity == "fatal" {
				errorsOnly = append(errorsOnly, is)
			}
		}
		if len(errorsOnly) > 0 {
			oe.Issues = errorsOnly
			return nil, oe
		}
	}
	cr, ok := msg.(proto.Message)
	if !ok || cr == nil {
		return nil, badRequest("structure", "body is not a FHIR resource")
	}
	res := containedResource(cr)
	if res == nil {
		return nil, badRequest("structure", "body is not a FHIR resource")
	}
	r := &Resource{Type: string(res.Descriptor().Name()), cr: cr, res: res}
	if idf := res.Descriptor().Fields().ByName("id"); idf != nil && res.Has(idf) {
		r.ID = idValue(res.Get(idf).Message())
	}
	return r, nil
}

// Canonical parses and validates body and returns jsonformat's compact
// serialisation of it, unchanged otherwise.
func (c *Codec) Canonical(body []byte) ([]byte, error) {
	r, err := c.Parse(body)
	if err != nil {
		return nil, err
	}
	return c.m.Marshal(r.cr)
}

// stamp sets id, meta.versionId and meta.lastUpdated (millisecond
// precision, UTC) and returns the canonical JSON.
func (c *Codec) stamp(r *Resource, id string, version int, at time.Time) ([]byte, error) {
	fields := r.res.Descriptor().Fields()
	r.res.Set(fields.ByName("id"), protoreflect.ValueOfMessage((&d4pb.Id{Value: id}).ProtoReflect()))
	meta := r.res.Mutable(fields.ByName("meta")).Message()
	mf := meta.Descriptor().Fields()
	meta.Set(mf.ByName("version_id"), protoreflect.ValueOfMessage((&d4pb.Id{Value: strconv.Itoa(version)}).ProtoReflect()))
	meta.Set(mf.ByName("last_updated"), protoreflect.ValueOfMessage((&d4pb.Instant{
		ValueUs:   at.UTC().Truncate(time.Millisecond).UnixMicro(),
		Timezone:  "Z",
		Precision: d4pb.Instant_MILLISECOND,
	}).ProtoReflect()))
	r.ID = id
	b, err := c.m.Marshal(r.cr)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", r.Type, err)
	}
	return b, nil
}

func containedResource(cr proto.Message) protoreflect.Message {
	m := cr.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("oneof_resource")
	if od == nil {
		return nil
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil
	}
	return m.Mutable(fd).Message()
}

func idValue(m protoreflect.Message) string {
	f := m.Descriptor().Fields().ByName("value")
	if f == nil {
		return ""
	}
	return m.Get(f).String()
}

// parseError turns a jsonformat parse error into a 400 outcome. The
// library's messages read `error at "Patient.gender": code type mismatch`;
// the quoted path becomes the issue's expression. Its Error() text carries
// only the high-level detail, never the offending value.
func parseError(err error) *OutcomeError {
	oe := &OutcomeError{Status: http.StatusBadRequest}
	for _, line := range strings.Split(err.Error(), "\n") {
		is := Issue{Severity: "error", Code: "structure", Diagnostics: line}
		if rest, ok := strings.CutPrefix(line, "error at "); ok {
			if p, err := strconv.QuotedPrefix(rest); err == nil {
				if uq, err := strconv.Unquote(p); err == nil {
					is.Expression = []string{uq}
				}
			}
		}
		if strings.Contains(line, "invalid JSON") {
			is.Diagnostics = "body is not valid JSON"
		}
		oe.Issues = append(oe.Issues, is)
		if len(oe.Issues) >= 20 {
			break
		}
	}
	return oe
}

// unacceptedJSON reports the first thing in a JSON document that FHIR
// forbids and jsonformat v0.7.4 accepts, with its path (FHIRPath-like, e.g.
// Patient.name[0].family) and the problem:
//   - an empty string;
//   - an element name that does not start with a lower-case letter after
//     an optional "_" (a primitive's extensions). FHIR JSON names are
//     case-sensitive and every R4 element's starts lower-case, but
//     jsonformat lower-cases the first letter before looking a name up: it
//     takes "Gender" for gender, and a miscased "Contained" entry reaches
//     the marshaller as a resource of no type (a 500).
//
// Malformed JSON is left to jsonformat.
func unacceptedJSON(body []byte) (path, problem string, found bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return "", "", false
	}
	root := "Resource"
	if m, ok := doc.(map[string]any); ok {
		if rt, ok := m["resourceType"].(string); ok && rt != "" {
			root = rt
		}
	}
	return findUnaccepted(doc, root, 0)
}

const emptyStringProblem = "empty strings are not allowed in FHIR JSON"

// findUnaccepted is unacceptedJSON's walk over a decoded value at path.
func findUnaccepted(v any, path string, depth int) (at, problem string, found bool) {
	// The walk counts a level per element name and per array index, so at
	// most two per level jsonformat counts (per name): whatever lies below
	// this depth is refused by jsonformat's own nesting limit.
	if depth > maxNestingDepth*2 {
		return "", "", false
	}
	switch x := v.(type) {
	case string:
		if x == "" {
			return path, emptyStringProblem, true
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "" { // an empty name is an empty string, at its object
				return path, emptyStringProblem, true
			}
			if !elementName(k) {
				return path + "." + k, fmt.Sprintf("unknown element %q: FHIR JSON names are case-sensitive and start with a lower-case letter", k), true
			}
			if at, problem, found := findUnaccepted(x[k], path+"."+k, depth+1); found {
				return at, problem, true
			}
		}
	case []any:
		for i, e := range x {
			if at, problem, found := findUnaccepted(e, path+"["+strconv.Itoa(i)+"]", depth+1); found {
				return at, problem, true
			}
		}
	}
	return "", "", false
}

// elementName tells whether k may name an R4 element in JSON: a lower-case
// ASCII letter first, after the "_" of a primitive's extensions.
func elementName(k string) bool {
	name := strings.TrimPrefix(k, "_")
	return name != "" && name[0] >= 'a' && name[0] <= 'z'
}
