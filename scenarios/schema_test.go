package scenarios

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSchemaIsValidJSON(t *testing.T) {
	b := Schema()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" || doc["$id"] != SchemaID || doc["type"] != "object" {
		t.Errorf("schema header: %v %v %v", doc["$schema"], doc["$id"], doc["type"])
	}
	defs, _ := doc["$defs"].(map[string]any)
	for _, name := range []string{"Flow", "Step", "Expect", "Fault", "PatientSel", "EHRLaunch", "OtherLaunch", "TraceMatch", "World", "WorldApp"} {
		if defs[name] == nil {
			t.Errorf("no $defs/%s", name)
		}
	}
	// Every $ref resolves.
	for _, m := range regexp.MustCompile(`"\$ref": "#/\$defs/([A-Za-z]+)"`).FindAllSubmatch(b, -1) {
		if defs[string(m[1])] == nil {
			t.Errorf("dangling $ref to %s", m[1])
		}
	}
	if !bytes.Equal(buildSchema(), b) {
		t.Error("schema is not deterministic")
	}
	golden := filepath.Join("testdata", "scenario", "schema.json.golden")
	if *updateScenarioGolden {
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if want, err := os.ReadFile(golden); err != nil || !bytes.Equal(want, b) {
		t.Errorf("schema differs from %s (go test -run TestSchema -update-scenario rewrites it): %v", golden, err)
	}
}

// TestSchemaCoversEveryStepKind ties the schema to the loader's vocabulary.
func TestSchemaCoversEveryStepKind(t *testing.T) {
	s := loadSchema(t)
	step := s.def("Step")
	props := step["properties"].(map[string]any)
	for _, k := range StepKinds {
		if props[string(k)] == nil {
			t.Errorf("step kind %s missing from the schema", k)
		}
	}
	fault := s.def("Fault")["properties"].(map[string]any)
	for _, k := range []string{"down", "slow", "fail"} {
		enum := fault[k].(map[string]any)["enum"].([]any)
		if fmt.Sprint(enum) != fmt.Sprint(faultComponents) {
			t.Errorf("fault %s enum %v, the loader accepts %v", k, enum, faultComponents)
		}
	}
	exp := s.def("Expect")["properties"].(map[string]any)
	enum := exp["error"].(map[string]any)["enum"].([]any)
	if fmt.Sprint(enum) != fmt.Sprint(expectErrors) {
		t.Errorf("expect.error enum %v, the loader accepts %v", enum, expectErrors)
	}
}

func TestBundledScenariosMatchSchema(t *testing.T) {
	s := loadSchema(t)
	files := bundledScenarios(t)
	good, _ := filepath.Glob(filepath.Join("testdata", "scenario", "good", "*.yaml"))
	for _, f := range append(files, good...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if errs := s.check(doc.Content[0], s.root, "$"); len(errs) > 0 {
			t.Errorf("%s does not match the schema:\n%s", f, strings.Join(errs, "\n"))
		}
	}
}

// TestSchemaRejects shows the structural check can fail: the schema
// refuses what the loader refuses for shape reasons.
func TestSchemaRejects(t *testing.T) {
	s := loadSchema(t)
	for _, src := range []string{
		"colour: blue\nflows: []",
		"name: x",
		"flows: [{name: f, steps: [{ehr_lunch: {}}]}]",
		"flows: [{name: f, steps: [{ehr_launch: {}, read: {server: ehr, path: x}}]}]",
		"flows: [{name: f, steps: [{read: {server: elsewhere, path: x}}]}]",
		"flows: [{name: f, steps: [{read: {server: ehr, path: x}, expect: {count: two}}]}]",
		"flows: [{name: f, faults: [{slow: ehr_as, delay: soon}], steps: [{ehr_launch: {}}]}]",
		"flows: [{name: f, steps: [{ehr_launch: {}, expect: {fields: {a: {b: 1}}}}]}]",
		"world: {ehr: {beds: 3}}\nflows: [{name: f, steps: [{ehr_launch: {}}]}]",
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatal(err)
		}
		if errs := s.check(doc.Content[0], s.root, "$"); len(errs) == 0 {
			t.Errorf("schema accepts %q", src)
		}
	}
}

// testSchema is a small structural JSON Schema checker for YAML nodes: the
// keywords the generated schema uses ($ref, type, properties,
// additionalProperties, required, enum, items, oneOf-of-required, pattern).
type testSchema struct {
	root map[string]any
	defs map[string]any
}

func loadSchema(t *testing.T) *testSchema {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(Schema(), &root); err != nil {
		t.Fatal(err)
	}
	return &testSchema{root: root, defs: root["$defs"].(map[string]any)}
}

func (s *testSchema) def(name string) map[string]any { return s.defs[name].(map[string]any) }

func (s *testSchema) check(n *yaml.Node, sch map[string]any, path string) []string {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if ref, ok := sch["$ref"].(string); ok {
		return s.check(n, s.def(strings.TrimPrefix(ref, "#/$defs/")), path)
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	if !typeMatches(n, sch["type"]) {
		fail("found %v (tag %s), schema type %v", n.Kind, n.ShortTag(), sch["type"])
		return errs
	}
	if enum, ok := sch["enum"].([]any); ok && !slices.Contains(enum, any(n.Value)) {
		fail("%q is not one of %v", n.Value, enum)
	}
	if pat, ok := sch["pattern"].(string); ok && !regexp.MustCompile(pat).MatchString(n.Value) {
		fail("%q does not match %s", n.Value, pat)
	}
	switch n.Kind {
	case yaml.MappingNode:
		props, _ := sch["properties"].(map[string]any)
		keys := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			keys[k] = true
			if p, ok := props[k].(map[string]any); ok {
				errs = append(errs, s.check(n.Content[i+1], p, path+"."+k)...)
				continue
			}
			switch ap := sch["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("unknown key %q", k)
				}
			case map[string]any:
				errs = append(errs, s.check(n.Content[i+1], ap, path+"."+k)...)
			}
		}
		if req, ok := sch["required"].([]any); ok {
			for _, r := range req {
				if !keys[r.(string)] {
					fail("missing required key %q", r)
				}
			}
		}
		if one, ok := sch["oneOf"].([]any); ok {
			matched := 0
			for _, alt := range one {
				req := alt.(map[string]any)["required"].([]any)
				if keys[req[0].(string)] {
					matched++
				}
			}
			if matched != 1 {
				fail("%d of the oneOf alternatives match, want exactly 1", matched)
			}
		}
	case yaml.SequenceNode:
		if items, ok := sch["items"].(map[string]any); ok {
			for i, item := range n.Content {
				errs = append(errs, s.check(item, items, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return errs
}

func typeMatches(n *yaml.Node, typ any) bool {
	switch typ := typ.(type) {
	case nil:
		return true
	case []any:
		for _, t := range typ {
			if typeMatches(n, t) {
				return true
			}
		}
		return false
	case string:
		tag := n.ShortTag()
		if tag == "!!null" {
			return true // null keeps the default everywhere
		}
		switch typ {
		case "object":
			return n.Kind == yaml.MappingNode
		case "array":
			return n.Kind == yaml.SequenceNode
		case "string":
			return n.Kind == yaml.ScalarNode && (tag == "!!str" || tag == "!!timestamp")
		case "integer":
			return tag == "!!int"
		case "number":
			return tag == "!!int" || tag == "!!float"
		case "boolean":
			return tag == "!!bool"
		}
	}
	return false
}
