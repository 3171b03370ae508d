// Package yamlfile decodes one YAML document into a Go struct strictly and
// reports every problem with its position.
//
// Decode walks the yaml.v3 node tree itself instead of calling
// yaml.Unmarshal, so that it can:
//   - reject unknown keys, naming the keys that are allowed;
//   - reject values of the wrong type, saying what was found and what was
//     expected ("found string "abc", expected an integer");
//   - reject duplicate keys;
//   - collect every problem in one pass, each as "file:line:column: message";
//   - remember where every field came from (Positions), so that a later
//     validation step can report its own problems at the right place.
//
// Hostile input is bounded: the document size (Limits.MaxBytes), the nesting
// depth (Limits.MaxDepth), the number of nodes decoded (Limits.MaxNodes) and
// the number of nodes reached through aliases (Limits.MaxAliasNodes, which
// stops "billion laughs" documents). Decode never panics on input; a panic
// inside the YAML parser is turned into a Problem. The worst case is the
// parser reading a MaxBytes document: about a second for 4 MiB.
//
// Decoding is "onto" the value given: keys that are absent, or whose value is
// null, leave the destination field as it was, so a caller can pre-fill
// defaults. A sequence replaces a slice and a mapping replaces a map.
//
// Supported destination types: structs (fields named by their `yaml` tag,
// `yaml:"-"` skipped, untagged exported fields use the lower-cased name),
// pointers, string, bool, all integer and float kinds, time.Duration (a Go
// duration string such as "90s" or "5m"), time.Time (RFC 3339 or a plain
// date YYYY-MM-DD), slices, maps with string keys, `any` (decoded to
// map[string]any, []any, string, int64/float64, bool or nil), and any type
// implementing NodeDecoder.
package yamlfile
