package fhirstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/smart-sim/sim/internal/sqlitedb"
)

const (
	defaultCount = 50
	maxCount     = 1000
	maxValues    = 100 // OR values per parameter, and clauses per query
)

// query is a parsed search: every parameter checked and typed before any
// SQL is built.
type query struct {
	typ          string
	clauses      []clause // AND
	sort         []sortKey
	count        int
	offset       int
	snapshot     int64 // 0: take a new snapshot
	summaryCount bool
	includes     []include
	ignored      []string // unknown parameters dropped under lenient handling
	compartment  string   // patient id the search is confined to ("" = none)
}

type clause struct {
	param    string
	kind     paramKind // 0 for _id
	modifier string
	spec     paramSpec
	values   []value // OR
}

type value struct {
	prefix string // date comparator
	// token
	system, code string
	form         int // tokenCode, tokenSystemCode, tokenNoSystem, tokenSystemOnly
	// string / _id
	text string
	// date
	lo, hi int64
	// reference
	rtype, rid, rbase string
}

const (
	tokenCode = iota
	tokenSystemCode
	tokenNoSystem
	tokenSystemOnly
)

type sortKey struct {
	param string // "_lastUpdated" or a date parameter
	desc  bool
}

type include struct {
	param, target string
}

// controlParams are result parameters handled outside the clauses.
var controlParams = map[string]bool{
	"_count": true, "_offset": true, "_snapshot": true, "_sort": true, "_include": true,
	"_summary": true, "_format": true, "_pretty": true, "_total": true,
}

// parseSearch turns URL parameters into a typed query. Errors are 400
// OperationOutcomes naming the parameter. With lenient, unknown parameters
// are recorded in ignored instead.
func parseSearch(resourceType string, params url.Values, lenient bool, selfBase string) (*query, error) {
	if !supported(resourceType) {
		return nil, unknownType(resourceType)
	}
	q := &query{typ: resourceType, count: defaultCount}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		vals := params[key]
		name, modifier, _ := strings.Cut(key, ":")
		if controlParams[name] {
			if modifier != "" && name != "_include" {
				return nil, badParam(key, "modifiers are not supported on this parameter")
			}
			if err := q.control(name, vals); err != nil {
				return nil, err
			}
			continue
		}
		var spec paramSpec
		switch name {
		case "_id":
			spec = paramSpec{name: "_id"}
		case "_lastUpdated":
			spec = paramSpec{name: "_lastUpdated", kind: kindDate}
		default:
			var ok bool
			if spec, ok = lookupParam(resourceType, name); !ok {
				if lenient {
					q.ignored = append(q.ignored, key)
					continue
				}
				return nil, badParam(key, "unknown search parameter for "+resourceType)
			}
		}
		for _, raw := range vals {
			c, err := parseClause(spec, key, modifier, raw, selfBase)
			if err != nil {
				if lenient && isUnsupportedModifier(err) {
					q.ignored = append(q.ignored, key)
					continue
				}
				return nil, err
			}
			q.clauses = append(q.clauses, c)
			if len(q.clauses) > maxValues {
				return nil, badParam(key, "too many search parameters")
			}
		}
	}
	return q, nil
}

type unsupportedModifier struct{ *OutcomeError }

func (u unsupportedModifier) Unwrap() error { return u.OutcomeError }

func isUnsupportedModifier(err error) bool {
	_, ok := err.(unsupportedModifier)
	return ok
}

func badParam(key, msg string) *OutcomeError {
	if len(key) > 64 {
		key = key[:64]
	}
	return badRequest("invalid", fmt.Sprintf("search parameter %s: %s", strconv.Quote(key), msg))
}

func (q *query) control(name string, vals []string) error {
	last := vals[len(vals)-1]
	switch name {
	case "_count", "_offset":
		n, err := strconv.Atoi(last)
		if err != nil || n < 0 {
			return badParam(name, "must be a non-negative integer")
		}
		if name == "_count" {
			q.count = min(n, maxCount)
		} else {
			q.offset = n
		}
	case "_snapshot":
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return badParam(name, "invalid paging snapshot")
		}
		q.snapshot = n
	case "_summary":
		switch last {
		case "count":
			q.summaryCount = true
		case "false":
		default:
			return badParam(name, "only count and false are supported")
		}
	case "_sort":
		q.sort = nil
		for _, v := range vals {
			for _, f := range strings.Split(v, ",") {
				k := sortKey{param: f}
				if strings.HasPrefix(f, "-") {
					k = sortKey{param: f[1:], desc: true}
				}
				if k.param != "_lastUpdated" {
					if spec, ok := lookupParam(q.typ, k.param); !ok || spec.kind != kindDate {
						return badParam(name, "sorting is supported on _lastUpdated and date parameters only")
					}
				}
				q.sort = append(q.sort, k)
				if len(q.sort) > 4 {
					return badParam(name, "too many sort keys")
				}
			}
		}
	case "_include":
		for _, v := range vals {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || len(parts) > 3 || parts[0] != q.typ {
				return badParam(name, "expected "+q.typ+":parameter[:Type]")
			}
			spec, ok := lookupParam(q.typ, parts[1])
			if !ok || spec.kind != kindRef {
				return badParam(name, "not a reference parameter of "+q.typ)
			}
			inc := include{param: parts[1]}
			if len(parts) == 3 {
				if !supported(parts[2]) {
					return badParam(name, "unknown target type")
				}
				inc.target = parts[2]
			}
			q.includes = append(q.includes, inc)
		}
	}
	return nil
}

func parseClause(spec paramSpec, key, modifier, raw, selfBase string) (clause, error) {
	c := clause{param: spec.name, kind: spec.kind, modifier: modifier, spec: spec}
	switch {
	case modifier == "":
	case spec.kind == kindString && (modifier == "exact" || modifier == "contains"):
	case spec.kind == kindRef && supported(modifier):
	default:
		return c, unsupportedModifier{badParam(key, "unsupported modifier")}
	}
	if raw == "" {
		return c, badParam(key, "empty value")
	}
	parts := splitValues(raw)
	if len(parts) > maxValues {
		return c, badParam(key, "too many values")
	}
	for _, p := range parts {
		if p == "" {
			return c, badParam(key, "empty value")
		}
		var v value
		switch {
		case spec.name == "_id":
			if !idPattern.MatchString(p) {
				return c, badParam(key, "invalid id")
			}
			v.text = p
		case spec.kind == kindToken:
			sys, code, hasBar := cutUnescaped(p)
			switch {
			case !hasBar:
				v.form, v.code = tokenCode, code
			case sys == "" && code == "":
				return c, badParam(key, "empty token")
			case sys == "":
				v.form, v.code = tokenNoSystem, code
			case code == "":
				v.form, v.system = tokenSystemOnly, sys
			default:
				v.form, v.system, v.code = tokenSystemCode, sys, code
			}
		case spec.kind == kindString:
			if modifier == "exact" {
				v.text = p
			} else {
				v.text = normalize(p)
			}
		case spec.kind == kindDate:
			v.prefix = "eq"
			s := p
			if len(s) >= 2 && s[0] >= 'a' && s[0] <= 'z' {
				v.prefix, s = s[:2], s[2:]
			}
			switch v.prefix {
			case "eq", "ne", "lt", "gt", "le", "ge":
			default:
				return c, badParam(key, "unsupported date prefix")
			}
			lo, hi, ok := parseDateRange(s)
			if !ok {
				return c, badParam(key, "invalid date")
			}
			v.lo, v.hi = lo, hi
		case spec.kind == kindRef:
			if strings.Contains(p, "/") {
				tt, id, base, ok := splitReference(p, selfBase)
				if !ok || !idPattern.MatchString(id) {
					return c, badParam(key, "invalid reference")
				}
				v.rtype, v.rid, v.rbase = tt, id, base
			} else {
				if !idPattern.MatchString(p) {
					return c, badParam(key, "invalid reference")
				}
				v.rid = p
				if supported(modifier) {
					v.rtype = modifier
				} else if len(spec.targets) == 1 {
					v.rtype = spec.targets[0]
				}
			}
			if v.rtype != "" && !contains(spec.targets, v.rtype) && len(spec.targets) > 0 {
				return c, badParam(key, "reference type not allowed for this parameter")
			}
		}
		c.values = append(c.values, v)
	}
	return c, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// splitValues splits on commas not escaped with a backslash and unescapes
// \, \| and \\.
func splitValues(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && (s[i+1] == ',' || s[i+1] == '\\' || s[i+1] == '$'):
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// cutUnescaped splits a token at its first '|' not preceded by '\'.
func cutUnescaped(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			continue
		}
		if s[i] == '|' {
			return unescapeBar(s[:i]), unescapeBar(s[i+1:]), true
		}
	}
	return "", unescapeBar(s), false
}

func unescapeBar(s string) string { return strings.ReplaceAll(s, `\|`, "|") }

// SearchEntry is one resource of a search result.
type SearchEntry struct {
	Type     string
	ID       string
	Mode     string // "match" or "include"
	Resource json.RawMessage
}

// SearchResult is one page of a search.
type SearchResult struct {
	Total    int
	Entries  []SearchEntry
	Snapshot int64 // the write sequence the search saw; carried in paging links
	Offset   int
	Count    int
	HasNext  bool
	Ignored  []string // parameters ignored under lenient handling
}

// Search runs a search with FHIR URL parameters (the same engine as the
// REST API). Unknown parameters are errors.
func (s *Store) Search(ctx context.Context, resourceType string, params url.Values) (*SearchResult, error) {
	q, err := parseSearch(resourceType, params, false, s.base)
	if err != nil {
		return nil, err
	}
	return s.run(ctx, q)
}

func (s *Store) run(ctx context.Context, q *query) (*SearchResult, error) {
	// No transaction is needed: every query filters on the snapshot, and
	// versions visible at a snapshot never change, so the count, the page and
	// the includes agree even while writers commit.
	tx := s.db.Read
	snap := q.snapshot
	if snap == 0 {
		var m sql.NullInt64
		if err := s.stmts.QueryRowContext(ctx, `SELECT max(vid) FROM res`).Scan(&m); err != nil {
			return nil, fmt.Errorf("search %s: snapshot: %w", q.typ, err)
		}
		snap = m.Int64
	}
	where, args := q.where(snap)
	res := &SearchResult{Snapshot: snap, Offset: q.offset, Count: q.count}
	if err := s.stmts.QueryRowContext(ctx, `SELECT count(*) FROM res r WHERE `+where, args...).Scan(&res.Total); err != nil {
		return nil, fmt.Errorf("search %s: count: %w", q.typ, err)
	}
	if q.summaryCount || q.count == 0 || q.offset >= res.Total {
		return res, nil
	}
	order, oargs := q.orderBy()
	args = append(args, oargs...)
	args = append(args, q.count, q.offset)
	rows, err := s.stmts.QueryContext(ctx, `SELECT r.vid, r.id, r.body FROM res r WHERE `+where+` ORDER BY `+order+` LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", q.typ, err)
	}
	var vids []any
	for rows.Next() {
		var vid int64
		e := SearchEntry{Type: q.typ, Mode: "match"}
		if err := rows.Scan(&vid, &e.ID, (*[]byte)(&e.Resource)); err != nil {
			rows.Close()
			return nil, fmt.Errorf("search %s: %w", q.typ, err)
		}
		vids = append(vids, vid)
		res.Entries = append(res.Entries, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search %s: %w", q.typ, err)
	}
	res.HasNext = q.offset+len(res.Entries) < res.Total
	if len(q.includes) > 0 && len(vids) > 0 {
		inc, err := q.fetchIncludes(ctx, tx, s.stmts, snap, vids)
		if err != nil {
			return nil, err
		}
		res.Entries = append(res.Entries, inc...)
	}
	return res, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func (q *query) fetchIncludes(ctx context.Context, tx *sql.DB, stmts *sqlitedb.Stmts, snap int64, vids []any) ([]SearchEntry, error) {
	var out []SearchEntry
	seen := map[string]bool{}
	for _, inc := range q.includes {
		args := append([]any{q.typ, inc.param}, vids...)
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT ttype, tid FROM ref_idx WHERE type = ? AND param = ? AND base = '' AND vid IN (`+placeholders(len(vids))+`) ORDER BY ttype, tid`, args...)
		if err != nil {
			return nil, fmt.Errorf("include %s: %w", inc.param, err)
		}
		var targets [][2]string
		for rows.Next() {
			var t [2]string
			if err := rows.Scan(&t[0], &t[1]); err != nil {
				rows.Close()
				return nil, fmt.Errorf("include %s: %w", inc.param, err)
			}
			if (inc.target == "" || inc.target == t[0]) && supported(t[0]) && !seen[t[0]+"/"+t[1]] {
				seen[t[0]+"/"+t[1]] = true
				targets = append(targets, t)
			}
		}
		rows.Close()
		for _, t := range targets {
			e := SearchEntry{Type: t[0], ID: t[1], Mode: "include"}
			err := stmts.QueryRowContext(ctx, `SELECT body FROM res WHERE type = ? AND id = ? AND vid <= ? AND vto > ? AND deleted = 0`,
				t[0], t[1], snap, snap).Scan((*[]byte)(&e.Resource))
			if err == sql.ErrNoRows {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("include %s: %w", inc.param, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// where builds the SQL condition over res r at snapshot snap.
func (q *query) where(snap int64) (string, []any) {
	var b strings.Builder
	args := []any{q.typ, snap, snap}
	b.WriteString(`r.type = ? AND r.vid <= ? AND r.vto > ? AND r.deleted = 0`)
	if q.compartment != "" {
		if q.typ == "Patient" {
			b.WriteString(` AND r.id = ?`)
			args = append(args, q.compartment)
		} else if compartmentParam(q.typ) != "" {
			b.WriteString(` AND r.vid IN (SELECT vid FROM ref_idx WHERE type = ? AND param = 'patient' AND tid = ? AND ttype = 'Patient' AND base = '')`)
			args = append(args, q.typ, q.compartment)
		} else {
			b.WriteString(` AND 0`)
		}
	}
	for _, c := range q.clauses {
		b.WriteString(" AND ")
		switch {
		case c.param == "_id":
			b.WriteString(`r.id IN (` + placeholders(len(c.values)) + `)`)
			for _, v := range c.values {
				args = append(args, v.text)
			}
		case c.param == "_lastUpdated":
			b.WriteString("(")
			for i, v := range c.values {
				if i > 0 {
					b.WriteString(" OR ")
				}
				cond, a := dateCond(v, "r.lu", "r.lu")
				b.WriteString(cond)
				args = append(args, a...)
			}
			b.WriteString(")")
		default:
			table := map[paramKind]string{kindToken: "token_idx", kindString: "string_idx", kindDate: "date_idx", kindRef: "ref_idx"}[c.kind]
			b.WriteString(`r.vid IN (SELECT vid FROM ` + table + ` WHERE type = ? AND param = ? AND (`)
			args = append(args, q.typ, c.param)
			for i, v := range c.values {
				if i > 0 {
					b.WriteString(" OR ")
				}
				cond, a := c.valueCond(v)
				b.WriteString(cond)
				args = append(args, a...)
			}
			b.WriteString("))")
		}
	}
	return b.String(), args
}

func (c clause) valueCond(v value) (string, []any) {
	switch c.kind {
	case kindToken:
		switch v.form {
		case tokenSystemCode:
			return `(value = ? AND system = ?)`, []any{v.code, v.system}
		case tokenNoSystem:
			return `(value = ? AND system = '')`, []any{v.code}
		case tokenSystemOnly:
			return `(system = ?)`, []any{v.system}
		default:
			return `(value = ?)`, []any{v.code}
		}
	case kindString:
		switch c.modifier {
		case "exact":
			return `(raw = ?)`, []any{v.text}
		case "contains":
			return `(instr(norm, ?) > 0)`, []any{v.text}
		default:
			return `(norm >= ? AND norm < ?)`, []any{v.text, v.text + "\U0010FFFF"}
		}
	case kindDate:
		return dateCond(v, "lo", "hi")
	case kindRef:
		if v.rtype == "" {
			return `(tid = ? AND base = ?)`, []any{v.rid, v.rbase}
		}
		return `(tid = ? AND ttype = ? AND base = ?)`, []any{v.rid, v.rtype, v.rbase}
	}
	return `0`, nil
}

// dateCond implements the R4 comparators over ranges: eq means the target
// range lies within the search range; gt/lt compare the range above/below.
func dateCond(v value, lo, hi string) (string, []any) {
	within := `(` + lo + ` >= ? AND ` + hi + ` <= ?)`
	switch v.prefix {
	case "ne":
		return `NOT ` + within, []any{v.lo, v.hi}
	case "gt":
		return `(` + hi + ` > ?)`, []any{v.hi}
	case "lt":
		return `(` + lo + ` < ?)`, []any{v.lo}
	case "ge":
		return `(` + hi + ` > ? OR ` + within + `)`, []any{v.hi, v.lo, v.hi}
	case "le":
		return `(` + lo + ` < ? OR ` + within + `)`, []any{v.lo, v.lo, v.hi}
	default:
		return within, []any{v.lo, v.hi}
	}
}

func (q *query) orderBy() (string, []any) {
	var parts []string
	var args []any
	for _, k := range q.sort {
		dir := " ASC"
		if k.desc {
			dir = " DESC"
		}
		if k.param == "_lastUpdated" {
			parts = append(parts, "r.lu"+dir)
			continue
		}
		agg := "min(lo)"
		if k.desc {
			agg = "max(hi)"
		}
		parts = append(parts, `coalesce((SELECT `+agg+` FROM date_idx d WHERE d.vid = r.vid AND d.param = ?), `+strconv.FormatInt(math.MinInt64, 10)+`)`+dir)
		args = append(args, k.param)
	}
	parts = append(parts, "r.vid ASC")
	return strings.Join(parts, ", "), args
}
