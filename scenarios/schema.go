package scenarios

// The JSON Schema of scenario files (`sim schema`), generated from the Go
// types the loader decodes into: every key is a field's `yaml` tag, its
// description the field's `doc` tag, its allowed values the `enum` tag. So
// the schema cannot drift from what LoadScenario accepts.

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"time"
)

// SchemaID is the schema's $id.
const SchemaID = "https://smart-sim.github.io/sim/schema/scenario.schema.json"

var schemaOnce = sync.OnceValue(buildSchema)

// Schema returns the JSON Schema (draft 2020-12) for scenario files,
// indented, with a trailing newline. Editors use it to validate and
// complete scenario YAML (e.g. a `# yaml-language-server: $schema=...`
// comment). The bytes are the same on every call; callers must not modify
// them.
func Schema() []byte { return schemaOnce() }

// schemaRequired lists the keys each type requires.
var schemaRequired = map[reflect.Type][]string{
	reflect.TypeFor[Scenario](): {"flows"},
	reflect.TypeFor[Flow]():     {"steps"},
	reflect.TypeFor[Read]():     {"server", "path"},
	reflect.TypeFor[Backend]():  {"app", "scope"},
	reflect.TypeFor[WorldApp](): {"client_id", "name", "type", "redirect_uris", "scope"},
}

type schemaGen struct {
	defs map[string]any
}

func buildSchema() []byte {
	g := &schemaGen{defs: map[string]any{}}
	root := g.object(reflect.TypeFor[Scenario]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = SchemaID
	root["title"] = "sim scenario"
	root["description"] = "A sim scenario: a world (the default, a world file, or either with overrides), apps, and flows of steps with expectations and faults. `sim validate FILE` checks a file fully (references between steps, impossible expectations); this schema checks its shape."
	root["$defs"] = g.defs
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		// The schema is built from our own types and plain values only.
		panic("scenarios: cannot encode the scenario schema: " + err.Error())
	}
	return append(out, '\n')
}

var (
	durationT  = reflect.TypeFor[time.Duration]()
	timeT      = reflect.TypeFor[time.Time]()
	countFracT = reflect.TypeFor[CountOrFraction]()
	overridesT = reflect.TypeFor[WorldOverrides]()
)

// ref returns a $ref to t's definition, creating it on first use.
func (g *schemaGen) ref(t reflect.Type) map[string]any {
	name := t.Name()
	if _, ok := g.defs[name]; !ok {
		g.defs[name] = nil // reserve: types may refer to themselves
		g.defs[name] = g.object(t)
	}
	return map[string]any{"$ref": "#/$defs/" + name}
}

// object is the schema of a struct type.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		s := g.field(f.Type, f.Tag)
		if d := f.Tag.Get("doc"); d != "" {
			s["description"] = d
		}
		props[name] = s
	}
	obj := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if req := schemaRequired[t]; len(req) > 0 {
		obj["required"] = req
	}
	switch t {
	case reflect.TypeFor[Step]():
		obj["oneOf"] = oneKeyOf(stepKindNames())
		obj["description"] = "One step: exactly one of the step kinds, plus an optional name and expect."
	case reflect.TypeFor[Fault]():
		obj["oneOf"] = oneKeyOf([]string{"down", "slow", "fail", "clock_skew", "launch_token", "code"})
		obj["description"] = "One fault: exactly one of down, slow, fail, clock_skew, launch_token, code."
	}
	return obj
}

func stepKindNames() []string {
	out := make([]string, len(StepKinds))
	for i, k := range StepKinds {
		out[i] = string(k)
	}
	return out
}

// oneKeyOf says exactly one of keys is present.
func oneKeyOf(keys []string) []any {
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = map[string]any{"required": []string{k}}
	}
	return out
}

// field is the schema of a field's type.
func (g *schemaGen) field(t reflect.Type, tag reflect.StructTag) map[string]any {
	enum := tag.Get("enum")
	switch t {
	case durationT:
		return map[string]any{"type": "string", "pattern": `^-?([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$`}
	case timeT:
		return map[string]any{"type": "string", "anyOf": []any{map[string]any{"format": "date"}, map[string]any{"format": "date-time"}}}
	case countFracT:
		return map[string]any{"type": "number", "minimum": 0}
	case overridesT:
		return g.ref(reflect.TypeFor[World]())
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.field(t.Elem(), tag)
	case reflect.Struct:
		return g.ref(t)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.field(t.Elem(), tag)}
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface && tag.Get("schema") != "scalars" {
			return map[string]any{"type": "object"} // free-form (a JWK set)
		}
		return map[string]any{"type": "object", "additionalProperties": g.field(t.Elem(), tag)}
	case reflect.String:
		s := map[string]any{"type": "string"}
		if enum != "" {
			s["enum"] = strings.Split(enum, ",")
		}
		return s
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Interface:
		return map[string]any{"type": []string{"string", "number", "boolean"}}
	}
	return map[string]any{}
}
