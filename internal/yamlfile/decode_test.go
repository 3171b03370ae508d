package yamlfile

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type item struct {
	Name string `yaml:"name"`
	Size int    `yaml:"size"`
}

// upper is a NodeDecoder that accepts only upper-case strings.
type upper string

func (u *upper) DecodeYAMLNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || strings.ToUpper(n.Value) != n.Value {
		return fmt.Errorf("found %s, expected an upper-case word", Describe(n))
	}
	*u = upper(n.Value)
	return nil
}

type testConfig struct {
	Name   string         `yaml:"name"`
	Count  int            `yaml:"count"`
	Small  int8           `yaml:"small"`
	Ratio  float64        `yaml:"ratio"`
	On     bool           `yaml:"on"`
	Wait   time.Duration  `yaml:"wait"`
	Day    time.Time      `yaml:"day"`
	Tags   []string       `yaml:"tags"`
	Inner  inner          `yaml:"inner"`
	Items  []item         `yaml:"items"`
	Extra  map[string]int `yaml:"extra"`
	Any    any            `yaml:"any"`
	Ptr    *item          `yaml:"ptr"`
	Custom upper          `yaml:"custom"`
	Hidden string         `yaml:"-"`
}

type inner struct {
	A int    `yaml:"a"`
	B string `yaml:"b"`
}

func TestDecodeValid(t *testing.T) {
	src := `name: demo
count: 7
small: -3
ratio: 0.25
on: true
wait: 90s
day: 2025-06-01
tags: [a, b]
inner:
  a: 1
  b: x
items:
  - name: one
    size: 1
  - {name: two, size: 2}
extra: {k: 3}
any: {list: [1, 2.5, "s", true, null], n: {m: x}}
ptr: {name: p}
custom: ABC
`
	cfg := testConfig{Name: "default", Hidden: "kept"}
	pos, err := Decode("c.yaml", []byte(src), &cfg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := testConfig{
		Name: "demo", Count: 7, Small: -3, Ratio: 0.25, On: true, Wait: 90 * time.Second,
		Day: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Tags: []string{"a", "b"},
		Inner: inner{A: 1, B: "x"}, Items: []item{{"one", 1}, {"two", 2}},
		Extra: map[string]int{"k": 3},
		Any:   map[string]any{"list": []any{int64(1), 2.5, "s", true, nil}, "n": map[string]any{"m": "x"}},
		Ptr:   &item{Name: "p"}, Custom: "ABC", Hidden: "kept",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("decoded\n%#v\nwant\n%#v", cfg, want)
	}
	for path, p := range map[string]Pos{
		"":               {1, 1},
		"name":           {1, 7},
		"inner.b":        {11, 6},
		"items[1].size":  {15, 23},
		"items[0]":       {13, 5},
		"extra.k":        {16, 12},
		"any.list[2]":    {17, 22},
		"ptr.name":       {18, 13},
		"tags[1]":        {8, 11},
		"custom":         {19, 9},
		"items[0].name":  {13, 11},
		"inner":          {10, 3},
		"any.n.m":        {17, 47},
		"wait":           {6, 7},
		"day":            {7, 6},
		"ratio":          {4, 8},
		"on":             {5, 5},
		"small":          {3, 8},
		"count":          {2, 8},
		"items":          {13, 3},
		"extra":          {16, 8},
		"any":            {17, 6},
		"ptr":            {18, 6},
		"tags":           {8, 7},
		"items[1]":       {15, 5},
		"items[1].name":  {15, 12},
		"items[0].size":  {14, 11},
		"inner.a":        {10, 6},
		"any.list":       {17, 13},
		"any.list[0]":    {17, 14},
		"any.n":          {17, 43},
		"any.list[1]":    {17, 17},
		"any.list[3]":    {17, 27},
		"any.list[4]":    {17, 33},
		"ptr.size(none)": {0, 0},
	} {
		got, ok := pos.Lookup(path)
		if p.Line == 0 {
			if ok {
				t.Errorf("Lookup(%q) = %v, want absent", path, got)
			}
			continue
		}
		if !ok || got != p {
			t.Errorf("Lookup(%q) = %v %v, want %v", path, got, ok, p)
		}
	}
	// A field the file did not give falls back to its nearest given ancestor.
	if got := pos.At("ptr.size"); got != (Pos{18, 6}) {
		t.Errorf("At(ptr.size) = %v, want 18:6", got)
	}
	if got := pos.At("nothing.here"); got != (Pos{1, 1}) {
		t.Errorf("At(nothing.here) = %v, want 1:1", got)
	}
	p := pos.Problemf("items[1].size", "size %d is too big", 2)
	if p.String() != "c.yaml:15:23: size 2 is too big" {
		t.Errorf("Problemf = %q", p.String())
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	cfg := testConfig{Name: "default", Count: 5, Tags: []string{"x", "y", "z"}, Inner: inner{A: 9, B: "keep"}}
	if _, err := Decode("c.yaml", []byte("count: ~\ntags: [q]\ninner: {a: 1}\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "default" || cfg.Count != 5 || !reflect.DeepEqual(cfg.Tags, []string{"q"}) || cfg.Inner != (inner{1, "keep"}) {
		t.Errorf("got %+v", cfg)
	}
	for _, empty := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		cfg := testConfig{Name: "default"}
		if _, err := Decode("c.yaml", []byte(empty), &cfg); err != nil || cfg.Name != "default" {
			t.Errorf("Decode(%q) = %v, name %q", empty, err, cfg.Name)
		}
	}
}

func TestDecodeProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key", "nmae: x\n", []string{
			`c.yaml:1:1: unknown key "nmae" in test_config (expected one of: name, count, small, ratio, on, wait, day, tags, inner, items, extra, any, ptr, custom)`}},
		{"nested unknown key", "inner:\n  c: 1\n", []string{`c.yaml:2:3: unknown key "c" in inner (expected one of: a, b)`}},
		{"unknown key in list item", "items:\n  - nam: x\n", []string{`c.yaml:2:5: unknown key "nam" in items[0] (expected one of: name, size)`}},
		{"string for int", "count: abc\n", []string{`c.yaml:1:8: count: found string "abc", expected an integer`}},
		{"quoted number for int", "count: \"12\"\n", []string{`c.yaml:1:8: count: found string "12", expected an integer`}},
		{"float for int", "count: 1.5\n", []string{`c.yaml:1:8: count: found number 1.5, expected an integer`}},
		{"overflow", "small: 300\n", []string{`c.yaml:1:8: small: found integer 300, expected an integer`}},
		{"string for number", "ratio: half\n", []string{`c.yaml:1:8: ratio: found string "half", expected a number`}},
		{"nan", "ratio: .nan\n", []string{`c.yaml:1:8: ratio: found number .nan, expected a number`}},
		{"int for bool", "on: 1\n", []string{`c.yaml:1:5: on: found integer 1, expected a boolean (true or false)`}},
		{"list for string", "name: [a]\n", []string{`c.yaml:1:7: name: found a list, expected a string`}},
		{"scalar for mapping", "inner: 3\n", []string{`c.yaml:1:8: inner: found integer 3, expected a mapping`}},
		{"scalar for list", "tags: a\n", []string{`c.yaml:1:7: tags: found string "a", expected a list`}},
		{"bad duration", "wait: 5 minutes\n", []string{`c.yaml:1:7: wait: found string "5 minutes", expected a duration such as 90s, 5m or 1h`}},
		{"int duration", "wait: 60\n", []string{`c.yaml:1:7: wait: found integer 60, expected a duration such as 90s, 5m or 1h`}},
		{"bad date", "day: 2025-13-01\n", []string{`c.yaml:1:6: day: found string "2025-13-01", expected a date (YYYY-MM-DD) or an RFC 3339 timestamp`}},
		{"custom", "custom: abc\n", []string{`c.yaml:1:9: custom: found string "abc", expected an upper-case word`}},
		{"duplicate key", "name: a\ncount: 1\nname: b\n", []string{`c.yaml:3:1: duplicate key "name" in test_config (first given on line 1)`}},
		{"duplicate map key", "extra:\n  a: 1\n  a: 2\n", []string{`c.yaml:3:3: duplicate key "a" in extra (first given on line 2)`}},
		{"merge key", "base: &b {a: 1}\n", []string{`c.yaml:1:1: unknown key "base" in test_config (expected one of: name, count, small, ratio, on, wait, day, tags, inner, items, extra, any, ptr, custom)`}},
		{"merge", "inner:\n  <<: {a: 1}\n", []string{`c.yaml:2:3: in inner: merge keys (<<) are not supported; write the keys out`}},
		{"non-string key", "extra:\n  [a]: 1\n", []string{`c.yaml:2:3: in extra: found a list as a key, expected a string key`}},
		{"root not a mapping", "- a\n", []string{`c.yaml:1:1: test_config: found a list, expected a mapping`}},
		{"hidden field is unknown", "Hidden: x\n", []string{`c.yaml:1:1: unknown key "Hidden" in test_config (expected one of: name, count, small, ratio, on, wait, day, tags, inner, items, extra, any, ptr, custom)`}},
		{"parse error", "name: a\n  b: c\n", []string{`c.yaml:2:1: invalid YAML: mapping values are not allowed in this context`}},
		{"two documents", "name: a\n---\nname: b\n", []string{`c.yaml:2:1: a second YAML document: put everything in one document (remove the '---')`}},
		{"not utf-8", "name: \xff\n", []string{`c.yaml:1:1: file is not valid UTF-8 text`}},
		{"every problem at once", "nmae: x\ncount: x\ninner: {a: y, z: 1}\nitems: [{size: q}]\n", []string{
			`c.yaml:1:1: unknown key "nmae" in test_config (expected one of: name, count, small, ratio, on, wait, day, tags, inner, items, extra, any, ptr, custom)`,
			`c.yaml:2:8: count: found string "x", expected an integer`,
			`c.yaml:3:12: inner.a: found string "y", expected an integer`,
			`c.yaml:3:15: unknown key "z" in inner (expected one of: a, b)`,
			`c.yaml:4:16: items[0].size: found string "q", expected an integer`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfg testConfig
			_, err := Decode("c.yaml", []byte(tc.src), &cfg)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v (%T), want Problems", err, err)
			}
			got := strings.Split(ps.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		var cfg testConfig
		_, err := DecodeWith("c.yaml", []byte("name: "+strings.Repeat("x", 100)), &cfg, Options{Limits: Limits{MaxBytes: 50}})
		if err == nil || !strings.Contains(err.Error(), "c.yaml:1:1: file is 106 bytes, larger than the 50 bytes allowed") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("depth", func(t *testing.T) {
		var cfg testConfig
		deep := "any: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n"
		_, err := Decode("c.yaml", []byte(deep), &cfg)
		if err == nil || !strings.Contains(err.Error(), "nesting deeper than 64 levels") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("alias bomb", func(t *testing.T) {
		// Each level doubles: 2^30 nodes if expanded.
		var b strings.Builder
		b.WriteString("any:\n  a0: &a0 [x, x]\n")
		for i := 1; i <= 30; i++ {
			fmt.Fprintf(&b, "  a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
		}
		var cfg testConfig
		start := time.Now()
		_, err := Decode("c.yaml", []byte(b.String()), &cfg)
		if err == nil || !strings.Contains(err.Error(), "aliases expand to more than 10000 nodes") {
			t.Errorf("err = %v", err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("self-referencing alias", func(t *testing.T) {
		var cfg testConfig
		_, err := Decode("c.yaml", []byte("any: &a [*a]\n"), &cfg)
		if err == nil {
			t.Errorf("no error for a cyclic alias")
		}
	})
	t.Run("aliases are fine in moderation", func(t *testing.T) {
		var cfg testConfig
		_, err := Decode("c.yaml", []byte("items:\n  - &one {name: one, size: 1}\n  - *one\n"), &cfg)
		if err != nil || len(cfg.Items) != 2 || cfg.Items[1] != (item{"one", 1}) {
			t.Errorf("err = %v, items %+v", err, cfg.Items)
		}
	})
	t.Run("many nodes", func(t *testing.T) {
		var cfg testConfig
		start := time.Now()
		_, err := Decode("c.yaml", []byte("any: ["+strings.Repeat("1,", 150000)+"1]"), &cfg)
		if err == nil || !strings.Contains(err.Error(), "more than 100000 values") {
			t.Errorf("err = %v", err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("many problems", func(t *testing.T) {
		var b strings.Builder
		for i := range 500 {
			fmt.Fprintf(&b, "k%d: 1\n", i)
		}
		var cfg testConfig
		_, err := Decode("c.yaml", []byte(b.String()), &cfg)
		var ps Problems
		if !errors.As(err, &ps) || len(ps) != 101 || !strings.Contains(ps[100].Msg, "too many problems") {
			t.Errorf("got %d problems", len(ps))
		}
	})
}

func TestDecodeNeedsPointer(t *testing.T) {
	var cfg testConfig
	_, err := Decode("c.yaml", []byte("name: x"), cfg)
	var ps Problems
	if err == nil || errors.As(err, &ps) {
		t.Errorf("err = %v, want a plain error", err)
	}
}

func TestProblemsSortAndErr(t *testing.T) {
	ps := Problems{{"b", 1, 1, "x"}, {"a", 3, 2, "y"}, {"a", 3, 1, "z"}, {"a", 1, 9, "w"}}
	ps.Sort()
	if got := ps.Error(); got != "a:1:9: w\na:3:1: z\na:3:2: y\nb:1:1: x" {
		t.Errorf("sorted = %q", got)
	}
	if Problems(nil).Err() != nil {
		t.Errorf("empty Problems.Err() is not nil")
	}
}

// FuzzDecode checks that no input panics or hangs the decoder and that a
// failure is always Problems with sane positions.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: demo\ncount: 3\nitems: [{name: a, size: 1}]\n"))
	f.Add([]byte("any: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg testConfig
		pos, err := Decode("f.yaml", data, &cfg)
		if err == nil {
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("err = %v (%T), want non-empty Problems", err, err)
		}
		for _, p := range ps {
			if p.File != "f.yaml" || p.Line < 1 || p.Column < 1 || p.Msg == "" {
				t.Fatalf("bad problem %+v", p)
			}
		}
		_ = pos.At("items[0].name")
	})
}
