package scope

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// Level is the prefix of a resource scope.
type Level string

const (
	Patient Level = "patient"
	User    Level = "user"
	System  Level = "system"
)

// Permission bits of a resource scope.
type Perm uint8

const (
	Create Perm = 1 << iota
	Read
	Update
	Delete
	Search
)

// All is every permission ("cruds", v1 "*").
const All = Create | Read | Update | Delete | Search

// Interaction names as the resource server passes them.
const (
	InteractionRead    = "read"
	InteractionVRead   = "vread"
	InteractionHistory = "history"
	InteractionSearch  = "search"
	InteractionCreate  = "create"
	InteractionUpdate  = "update"
	InteractionDelete  = "delete"
)

// ErrSyntax reports a scope string that is not well formed.
var ErrSyntax = errors.New("malformed scope")

// Scope is one parsed scope token. Resource is empty for a non-resource
// scope (openid, launch, offline_access, unknown ones...).
type Scope struct {
	Raw      string
	Level    Level  // resource scopes only
	Resource string // resource type or "*"
	Perms    Perm
	V1       bool       // written in v1 syntax (read/write/*)
	Query    url.Values // granular v2 query, nil when none
}

// IsResource reports whether s is a patient/, user/ or system/ scope.
func (s Scope) IsResource() bool { return s.Resource != "" }

// String returns the scope as written.
func (s Scope) String() string { return s.Raw }

// validToken implements RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < 0x21 || c > 0x7e || c == 0x22 || c == 0x5c {
			return false
		}
	}
	return true
}

// ParseOne parses one scope token.
func ParseOne(tok string) (Scope, error) {
	if !validToken(tok) {
		return Scope{}, fmt.Errorf("%w: %q has characters outside RFC 6749 §3.3", ErrSyntax, tok)
	}
	s := Scope{Raw: tok}
	slash := strings.IndexByte(tok, '/')
	if slash < 0 {
		return s, nil
	}
	lvl := Level(tok[:slash])
	if lvl != Patient && lvl != User && lvl != System {
		// launch/patient, launch/encounter and unknown scopes with a slash.
		return s, nil
	}
	rest := tok[slash+1:]
	query, hasQuery := "", false
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest, query, hasQuery = rest[:q], rest[q+1:], true
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot <= 0 || dot == len(rest)-1 {
		return Scope{}, fmt.Errorf("%w: %q needs resource.permissions", ErrSyntax, tok)
	}
	res, perm := rest[:dot], rest[dot+1:]
	if res != "*" && !validResourceType(res) {
		return Scope{}, fmt.Errorf("%w: %q has an invalid resource type", ErrSyntax, tok)
	}
	s.Level, s.Resource = lvl, res
	switch perm {
	case "read":
		s.Perms, s.V1 = Read|Search, true
	case "write":
		s.Perms, s.V1 = Create|Update|Delete, true
	case "*":
		s.Perms, s.V1 = All, true
	default:
		p, ok := parseLetters(perm)
		if !ok {
			return Scope{}, fmt.Errorf("%w: %q: permissions must be read, write, * or an ordered subset of cruds", ErrSyntax, tok)
		}
		s.Perms = p
	}
	if hasQuery {
		if s.V1 {
			return Scope{}, fmt.Errorf("%w: %q: query parameters need v2 syntax", ErrSyntax, tok)
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return Scope{}, fmt.Errorf("%w: %q has an invalid query", ErrSyntax, tok)
		}
		for k := range q {
			if k == "" {
				return Scope{}, fmt.Errorf("%w: %q has an empty query parameter", ErrSyntax, tok)
			}
		}
		s.Query = q
	}
	return s, nil
}

func validResourceType(r string) bool {
	if r == "" || r[0] < 'A' || r[0] > 'Z' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func parseLetters(p string) (Perm, bool) {
	const order = "cruds"
	var out Perm
	last := -1
	for i := 0; i < len(p); i++ {
		idx := strings.IndexByte(order, p[i])
		if idx < 0 || idx <= last {
			return 0, false
		}
		last = idx
		out |= 1 << idx
	}
	return out, out != 0
}

// Set is an ordered list of distinct scopes.
type Set []Scope

// Parse splits a space-separated scope string (RFC 6749 §3.3). Duplicates
// are dropped. An error wraps ErrSyntax.
func Parse(s string) (Set, error) {
	var out Set
	seen := map[string]bool{}
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		sc, err := ParseOne(tok)
		if err != nil {
			return nil, err
		}
		if seen[tok] {
			continue
		}
		seen[tok] = true
		out = append(out, sc)
	}
	return out, nil
}

// MustParse is Parse for constants in tests and config; it panics on error.
func MustParse(s string) Set {
	set, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return set
}

// String joins the scopes with spaces.
func (set Set) String() string {
	parts := make([]string, len(set))
	for i, s := range set {
		parts[i] = s.Raw
	}
	return strings.Join(parts, " ")
}

// Has reports whether the exact scope token is in the set.
func (set Set) Has(raw string) bool {
	return slices.ContainsFunc(set, func(s Scope) bool { return s.Raw == raw })
}

// Filter returns the scopes keep accepts, in order.
func (set Set) Filter(keep func(Scope) bool) Set {
	var out Set
	for _, s := range set {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// HasLevel reports whether any resource scope has level l.
func (set Set) HasLevel(l Level) bool {
	return slices.ContainsFunc(set, func(s Scope) bool { return s.IsResource() && s.Level == l })
}

// Subset reports whether every scope of set is in super (exact tokens).
// Used for refresh down-scoping.
func (set Set) Subset(super Set) bool {
	for _, s := range set {
		if !super.Has(s.Raw) {
			return false
		}
	}
	return true
}

// Covers reports whether the set, taken as a ceiling (a client's
// registered scope), allows sc: the same token, or a resource scope of the
// same level whose resource type ("*" matches any), permissions and query
// include sc's. A ceiling with a query covers only the same query.
func (set Set) Covers(sc Scope) bool {
	for _, l := range set {
		if l.Raw == sc.Raw {
			return true
		}
		if l.IsResource() && sc.IsResource() && l.Level == sc.Level &&
			(l.Resource == "*" || l.Resource == sc.Resource) &&
			l.Perms&sc.Perms == sc.Perms &&
			(l.Query == nil || reflect.DeepEqual(l.Query, sc.Query)) {
			return true
		}
	}
	return false
}

// InteractionPerm maps a FHIR interaction to the permission it needs.
func InteractionPerm(interaction string) (Perm, bool) {
	switch interaction {
	case InteractionRead, InteractionVRead, InteractionHistory:
		return Read, true
	case InteractionSearch:
		return Search, true
	case InteractionCreate:
		return Create, true
	case InteractionUpdate:
		return Update, true
	case InteractionDelete:
		return Delete, true
	}
	return 0, false
}

// Allows reports whether one resource scope of the set whose level is in
// levels allows interaction on resourceType with the request's search
// params. An unknown interaction is never allowed.
func (set Set) Allows(levels []Level, resourceType, interaction string, params url.Values) bool {
	need, ok := InteractionPerm(interaction)
	if !ok || resourceType == "" {
		return false
	}
	for _, s := range set {
		if !s.IsResource() || !slices.Contains(levels, s.Level) {
			continue
		}
		if s.Resource != "*" && s.Resource != resourceType {
			continue
		}
		if s.Perms&need == 0 {
			continue
		}
		if s.Query != nil {
			if need != Search || !queryAllows(s.Query, params) {
				continue
			}
		}
		return true
	}
	return false
}

// queryAllows: every parameter of the scope must appear in the request,
// and every value the request gives for it (comma-separated alternatives
// included) must be one the scope lists. A token value matches with or
// without its system when the scope names only the code.
func queryAllows(scopeQ, params url.Values) bool {
	for k, allowed := range scopeQ {
		got, ok := params[k]
		if !ok || len(got) == 0 {
			return false
		}
		var allowedVals []string
		for _, a := range allowed {
			allowedVals = append(allowedVals, strings.Split(a, ",")...)
		}
		for _, g := range got {
			for _, v := range strings.Split(g, ",") {
				if !valueAllowed(v, allowedVals) {
					return false
				}
			}
		}
	}
	return true
}

func valueAllowed(v string, allowed []string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
		// Scope names a bare code: accept system|code with that code.
		if !strings.Contains(a, "|") {
			if i := strings.LastIndexByte(v, '|'); i >= 0 && v[i+1:] == a {
				return true
			}
		}
	}
	return false
}
