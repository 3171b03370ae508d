package yamlfile

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one positioned complaint about an input file.
type Problem struct {
	File   string
	Line   int
	Column int
	Msg    string
}

// String formats the problem as "file:line:column: message", the form
// editors and CI annotations understand.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(p.Line))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(p.Column))
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one or more files. It implements error;
// its text is one problem per line.
type Problems []Problem

// Error joins the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders the problems by file, line and column, keeping the order of
// problems at the same position.
func (ps Problems) Sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// Err returns ps as an error, or nil when there are no problems. Use it to
// avoid returning a non-nil error holding an empty Problems.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Pos is a 1-based line and column in a file.
type Pos struct {
	Line, Column int
}

// Positions records where each decoded field's value sits in the file, keyed
// by field path: "ehr.patients", "apps[1].redirect_uris[0]", "" for the
// document root. A validation step uses it to position its own problems.
type Positions struct {
	file string
	m    map[string]Pos
}

// File is the file name the positions refer to.
func (p Positions) File() string { return p.file }

// Lookup reports the position recorded for exactly path.
func (p Positions) Lookup(path string) (Pos, bool) {
	pos, ok := p.m[path]
	return pos, ok
}

// Has reports whether the file gave a value (possibly null) for path.
func (p Positions) Has(path string) bool {
	_, ok := p.m[path]
	return ok
}

// At is the position of path or, when the file did not give that field (a
// default was used), of its nearest ancestor that the file did give; 1:1 as
// a last resort.
func (p Positions) At(path string) Pos {
	for {
		if pos, ok := p.m[path]; ok {
			return pos
		}
		if path == "" {
			return Pos{Line: 1, Column: 1}
		}
		path = parentPath(path)
	}
}

// Problemf builds a problem positioned at path (see At).
func (p Positions) Problemf(path, format string, args ...any) Problem {
	pos := p.At(path)
	return Problem{File: p.file, Line: pos.Line, Column: pos.Column, Msg: fmt.Sprintf(format, args...)}
}

// parentPath strips the last ".field" or "[i]" from a field path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// JoinPath appends a field name to a path.
func JoinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// IndexPath appends a list index to a path.
func IndexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
