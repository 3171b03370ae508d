package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits bound the work Decode does on hostile input.
type Limits struct {
	// MaxBytes is the largest document accepted.
	MaxBytes int
	// MaxDepth is the deepest nesting of mappings and lists walked.
	MaxDepth int
	// MaxAliasNodes is how many nodes may be visited through aliases in
	// total; it stops documents that expand exponentially.
	MaxAliasNodes int
	// MaxProblems stops collecting after this many problems.
	MaxProblems int
	// MaxNodes is how many nodes are decoded in total (aliases included).
	MaxNodes int
}

// DefaultLimits are generous for hand-written configuration and small enough
// that a hostile file costs milliseconds.
var DefaultLimits = Limits{MaxBytes: 4 << 20, MaxDepth: 64, MaxAliasNodes: 10000, MaxProblems: 100, MaxNodes: 100000}

// Options tune DecodeWith.
type Options struct {
	// Root names the document in messages ("unknown key "x" in world");
	// empty means the snake_case name of the destination type.
	Root string
	// Limits; zero fields take DefaultLimits' values.
	Limits Limits
}

// NodeDecoder is implemented by types that decode themselves from a node.
// The node is never an alias (aliases are resolved first) and never null. A
// returned error's text becomes a Problem at the node; it should say what was
// found and what was expected (Describe helps).
type NodeDecoder interface {
	DecodeYAMLNode(n *yaml.Node) error
}

// Decode decodes the single YAML document in data into v (a non-nil
// pointer) with DefaultLimits. The error is Problems when the input is bad,
// and a plain error when v is not a pointer.
func Decode(file string, data []byte, v any) (Positions, error) {
	return DecodeWith(file, data, v, Options{})
}

// DecodeWith is Decode with options.
func DecodeWith(file string, data []byte, v any, opts Options) (pos Positions, err error) {
	lim := opts.Limits
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultLimits.MaxBytes
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultLimits.MaxDepth
	}
	if lim.MaxAliasNodes <= 0 {
		lim.MaxAliasNodes = DefaultLimits.MaxAliasNodes
	}
	if lim.MaxProblems <= 0 {
		lim.MaxProblems = DefaultLimits.MaxProblems
	}
	if lim.MaxNodes <= 0 {
		lim.MaxNodes = DefaultLimits.MaxNodes
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return Positions{}, fmt.Errorf("yamlfile: decode needs a non-nil pointer, got %T", v)
	}
	root := opts.Root
	if root == "" {
		root = snakeCase(rv.Elem().Type().Name())
	}
	d := &decoder{file: file, root: root, lim: lim, pos: map[string]Pos{}}
	pos = Positions{file: file, m: d.pos}

	if len(data) > lim.MaxBytes {
		d.add(Pos{1, 1}, fmt.Sprintf("file is %d bytes, larger than the %d bytes allowed", len(data), lim.MaxBytes))
		return pos, d.problems
	}
	if !utf8.Valid(data) {
		d.add(Pos{1, 1}, "file is not valid UTF-8 text")
		return pos, d.problems
	}
	doc, ok := d.parse(data)
	if !ok {
		return pos, d.problems
	}
	if doc != nil {
		d.value(doc, rv.Elem(), "", 0)
	}
	return pos, d.problems.Err()
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// parse reads exactly one document. A nil node with ok means an empty file.
func (d *decoder) parse(data []byte) (n *yaml.Node, ok bool) {
	defer func() {
		// The parser is not ours; never let it take the process down.
		if r := recover(); r != nil {
			d.add(Pos{1, 1}, "the YAML parser could not read this file")
			n, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		d.addParseError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.add(nodePos(&extra), "a second YAML document: put everything in one document (remove the '---')")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		d.addParseError(err)
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, true
		}
		return doc.Content[0], true
	}
	return &doc, true
}

func (d *decoder) addParseError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		if l, convErr := strconv.Atoi(m[1]); convErr == nil && l > 0 {
			line = l
		}
		msg = strings.TrimSpace(strings.Replace(msg, m[0]+":", "", 1))
	}
	d.add(Pos{line, 1}, "invalid YAML: "+msg)
}

type decoder struct {
	file       string
	root       string
	lim        Limits
	pos        map[string]Pos
	problems   Problems
	aliasNodes int // nodes visited inside alias expansions
	nodes      int // nodes visited in total
	inAlias    int
	stopped    bool
}

func (d *decoder) add(p Pos, msg string) {
	if d.stopped {
		return
	}
	if len(d.problems) >= d.lim.MaxProblems {
		d.problems = append(d.problems, Problem{File: d.file, Line: p.Line, Column: p.Column,
			Msg: fmt.Sprintf("too many problems (more than %d); stopping here", d.lim.MaxProblems)})
		d.stopped = true
		return
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: p.Line, Column: p.Column, Msg: msg})
}

func (d *decoder) addf(n *yaml.Node, format string, args ...any) {
	d.add(nodePos(n), fmt.Sprintf(format, args...))
}

func nodePos(n *yaml.Node) Pos {
	l, c := n.Line, n.Column
	if l < 1 {
		l = 1
	}
	if c < 1 {
		c = 1
	}
	return Pos{l, c}
}

func (d *decoder) where(path string) string {
	if path == "" {
		return d.root
	}
	return path
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	timeType        = reflect.TypeFor[time.Time]()
	nodeDecoderType = reflect.TypeFor[NodeDecoder]()
)

// resolve follows aliases, counting the nodes they expand to. It returns nil
// when the alias budget is spent.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if n.Alias == nil || hops > 100 {
			d.addf(n, "alias *%s refers to nothing usable", n.Value)
			return nil
		}
		n = n.Alias
	}
	return n
}

// value decodes n into v (settable) and records its position under path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int) {
	if d.stopped {
		return
	}
	isAlias := n.Kind == yaml.AliasNode
	if isAlias {
		d.inAlias++
		defer func() { d.inAlias-- }()
	}
	if d.inAlias > 0 {
		d.aliasNodes++
		if d.aliasNodes > d.lim.MaxAliasNodes {
			d.addf(n, "aliases expand to more than %d nodes; write the values out instead", d.lim.MaxAliasNodes)
			d.stopped = true
			return
		}
	}
	d.nodes++
	if d.nodes > d.lim.MaxNodes {
		d.addf(n, "more than %d values; this is not a configuration file sim can use", d.lim.MaxNodes)
		d.stopped = true
		return
	}
	if depth > d.lim.MaxDepth {
		d.addf(n, "nesting deeper than %d levels", d.lim.MaxDepth)
		d.stopped = true
		return
	}
	d.pos[path] = nodePos(n)
	n = d.resolve(n)
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null keeps the default
	}

	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		if err := v.Addr().Interface().(NodeDecoder).DecodeYAMLNode(n); err != nil {
			d.addf(n, "%s: %s", d.where(path), err.Error())
		}
		return
	}
	switch v.Type() {
	case durationType:
		s, ok := d.scalarString(n, path, "a duration such as 90s, 5m or 1h")
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil || n.ShortTag() != "!!str" {
			d.addf(n, "%s: found %s, expected a duration such as 90s, 5m or 1h", d.where(path), Describe(n))
			return
		}
		v.SetInt(int64(dur))
		return
	case timeType:
		s, ok := d.scalarString(n, path, "a date (YYYY-MM-DD) or an RFC 3339 timestamp")
		if !ok {
			return
		}
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			t, err = time.Parse(time.RFC3339, s)
		}
		if err != nil {
			d.addf(n, "%s: found %s, expected a date (YYYY-MM-DD) or an RFC 3339 timestamp", d.where(path), Describe(n))
			return
		}
		v.Set(reflect.ValueOf(t))
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path, depth) // same node: no depth step
	case reflect.Struct:
		d.structValue(n, v, path, depth)
	case reflect.Map:
		d.mapValue(n, v, path, depth)
	case reflect.Slice:
		d.sliceValue(n, v, path, depth)
	case reflect.String:
		if s, ok := d.scalarString(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.mismatch(n, path, "a boolean (true or false)")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.mismatch(n, path, "an integer")
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil || v.OverflowUint(u) {
			d.mismatch(n, path, "a non-negative integer")
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil ||
			math.IsNaN(f) || math.IsInf(f, 0) || v.OverflowFloat(f) {
			d.mismatch(n, path, "a number")
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		if v.NumMethod() != 0 {
			d.addf(n, "%s: this field cannot be set from YAML", d.where(path))
			return
		}
		if g, ok := d.generic(n, path, depth); ok {
			if g == nil {
				v.SetZero()
			} else {
				v.Set(reflect.ValueOf(g))
			}
		}
	default:
		d.addf(n, "%s: this field cannot be set from YAML", d.where(path))
	}
}

func (d *decoder) mismatch(n *yaml.Node, path, expected string) {
	d.addf(n, "%s: found %s, expected %s", d.where(path), Describe(n), expected)
}

func (d *decoder) scalarString(n *yaml.Node, path, expected string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.mismatch(n, path, expected)
		return "", false
	}
	return n.Value, true
}

// mappingPairs checks n is a mapping and returns its key/value pairs,
// reporting non-string keys, merge keys and duplicates (dropping them).
func (d *decoder) mappingPairs(n *yaml.Node, path string) ([][2]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(n, path, "a mapping")
		return nil, false
	}
	seen := make(map[string]int, len(n.Content)/2)
	pairs := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			d.addf(k, "in %s: an alias used as a key; keys must be plain strings", d.where(path))
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.addf(k, "in %s: found %s as a key, expected a string key", d.where(path), Describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.addf(k, "in %s: merge keys (<<) are not supported; write the keys out", d.where(path))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.addf(k, "duplicate key %q in %s (first given on line %d)", k.Value, d.where(path), first)
			continue
		}
		seen[k.Value] = k.Line
		pairs = append(pairs, [2]*yaml.Node{k, val})
	}
	return pairs, true
}

type fieldInfo struct {
	name  string
	index []int
}

func structFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, fieldInfo{name: name, index: f.Index})
	}
	return out
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string, depth int) {
	pairs, ok := d.mappingPairs(n, path)
	if !ok {
		return
	}
	fields := structFields(v.Type())
	for _, kv := range pairs {
		k, val := kv[0], kv[1]
		var fi *fieldInfo
		for i := range fields {
			if fields[i].name == k.Value {
				fi = &fields[i]
				break
			}
		}
		if fi == nil {
			names := make([]string, len(fields))
			for i, f := range fields {
				names[i] = f.name
			}
			d.addf(k, "unknown key %q in %s (expected one of: %s)", clip(k.Value), d.where(path), strings.Join(names, ", "))
			continue
		}
		d.value(val, v.FieldByIndex(fi.index), JoinPath(path, fi.name), depth+1)
	}
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string, depth int) {
	if v.Type().Key().Kind() != reflect.String {
		d.addf(n, "%s: this field cannot be set from YAML", d.where(path))
		return
	}
	pairs, ok := d.mappingPairs(n, path)
	if !ok {
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(pairs))
	for _, kv := range pairs {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(kv[1], elem, JoinPath(path, kv[0].Value), depth+1)
		m.SetMapIndex(reflect.ValueOf(kv[0].Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

func (d *decoder) sliceValue(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.SequenceNode {
		d.mismatch(n, path, "a list")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), IndexPath(path, i), depth+1)
	}
	v.Set(s)
}

// generic decodes n into plain Go values for an `any` destination.
func (d *decoder) generic(n *yaml.Node, path string, depth int) (any, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b, true
			}
		case "!!int":
			var i int64
			if n.Decode(&i) == nil {
				return i, true
			}
			var f float64
			if n.Decode(&f) == nil && !math.IsInf(f, 0) {
				return f, true
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f, true
			}
			d.mismatch(n, path, "a finite number")
			return nil, false
		}
		return n.Value, true
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, item := range n.Content {
			d.value(item, reflect.ValueOf(&out[i]).Elem(), IndexPath(path, i), depth+1)
		}
		return out, true
	case yaml.MappingNode:
		pairs, ok := d.mappingPairs(n, path)
		if !ok {
			return nil, false
		}
		out := make(map[string]any, len(pairs))
		for _, kv := range pairs {
			var e any
			d.value(kv[1], reflect.ValueOf(&e).Elem(), JoinPath(path, kv[0].Value), depth+1)
			out[kv[0].Value] = e
		}
		return out, true
	}
	d.mismatch(n, path, "a value")
	return nil, false
}

// Describe says what a node is, for "found ..., expected ..." messages:
// `string "abc"`, `integer 12`, `a list`, `a mapping`, ...
func Describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := clip(n.Value)
	switch n.ShortTag() {
	case "!!str":
		return "string " + strconv.Quote(v)
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	case "!!null":
		return "null"
	case "!!timestamp":
		return "timestamp " + v
	}
	return "value " + strconv.Quote(v)
}

func clip(s string) string {
	const limit = 40
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit]) + "…"
}

func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "document"
	}
	return b.String()
}
