package fhirstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/julienschmidt/httprouter"
)

// DefaultMaxBodyBytes caps request bodies.
const DefaultMaxBodyBytes = 2 << 20

const fhirJSON = "application/fhir+json; charset=utf-8"

// HandlerConfig configures the REST API.
type HandlerConfig struct {
	Store *Store
	// BaseURL is the FHIR base, e.g. http://127.0.0.1:8080/fhir. Requests
	// arrive with its path as prefix.
	BaseURL string
	// Verifier checks bearer tokens; nil leaves the API open.
	Verifier TokenVerifier
	// Security, when set, adds the SMART oauth-uris extension to the
	// CapabilityStatement.
	Security *SecurityURIs
	Logger   *slog.Logger
	// MaxBodyBytes caps request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

type handler struct {
	store   *Store
	base    string
	realm   string
	verify  TokenVerifier
	log     *slog.Logger
	maxBody int64
	caps    []byte
	router  *httprouter.Router
}

// NewHandler returns the FHIR R4 REST API (FHIR R4 §3.1 RESTful API):
// capabilities, read, vread, instance history, search (GET and POST
// _search), create, update and delete, JSON only.
func NewHandler(cfg HandlerConfig) http.Handler {
	base := strings.TrimRight(cfg.BaseURL, "/")
	prefix := ""
	if u, err := url.Parse(base); err == nil {
		prefix = strings.TrimRight(u.Path, "/")
	}
	h := &handler{
		store:   cfg.Store,
		base:    base,
		realm:   base,
		verify:  cfg.Verifier,
		log:     cfg.Logger,
		maxBody: cfg.MaxBodyBytes,
		caps:    CapabilityStatement(base, cfg.Security),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.writeOutcome(w, http.StatusNotFound, []Issue{{Severity: "error", Code: "not-found", Diagnostics: "unknown path"}})
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.writeOutcome(w, http.StatusMethodNotAllowed, []Issue{{Severity: "error", Code: "not-supported", Diagnostics: "method not allowed"}})
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		h.log.ErrorContext(req.Context(), "fhir handler panic", "panic", v, "path", req.URL.Path)
		h.writeOutcome(w, http.StatusInternalServerError, []Issue{{Severity: "fatal", Code: "exception", Diagnostics: "internal server error"}})
	}
	r.Handler(http.MethodGet, prefix+"/:type", h.wrap(h.typeGet))
	r.Handler(http.MethodPost, prefix+"/:type", h.wrap(h.create))
	r.Handler(http.MethodGet, prefix+"/:type/:id", h.wrap(h.read))
	r.Handler(http.MethodPost, prefix+"/:type/:id", h.wrap(h.postSearch))
	r.Handler(http.MethodPut, prefix+"/:type/:id", h.wrap(h.update))
	r.Handler(http.MethodDelete, prefix+"/:type/:id", h.wrap(h.delete))
	r.Handler(http.MethodGet, prefix+"/:type/:id/_history", h.wrap(h.history))
	r.Handler(http.MethodGet, prefix+"/:type/:id/_history/:vid", h.wrap(h.vread))
	h.router = r
	return r
}

// request is one API call after content negotiation and authentication.
type request struct {
	typ, id string
	grant   Grant // nil when the API is open
	r       *http.Request
}

type apiFunc func(w http.ResponseWriter, rq *request) error

func (h *handler) wrap(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := httprouter.ParamsFromContext(r.Context())
		rq := &request{typ: p.ByName("type"), id: p.ByName("id"), r: r}
		if err := negotiate(r); err != nil {
			h.writeError(w, r, err)
			return
		}
		metadata := rq.typ == "metadata" && rq.id == ""
		if h.verify != nil && !metadata {
			g, ok := h.authenticate(w, r)
			if !ok {
				return
			}
			rq.grant = g
		}
		if err := fn(w, rq); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// negotiate enforces JSON: _format or Accept asking only for XML is 406; a
// non-JSON request body is 415.
func negotiate(r *http.Request) error {
	if f := r.URL.Query().Get("_format"); f != "" && !isJSONFormat(f) {
		return newOutcomeError(http.StatusNotAcceptable, "not-supported", "only JSON is supported (_format)")
	}
	if acc := r.Header.Get("Accept"); acc != "" {
		ok := false
		for _, part := range strings.Split(acc, ",") {
			mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
			if isJSONFormat(mt) || mt == "*/*" || mt == "application/*" || mt == "" {
				ok = true
				break
			}
		}
		if !ok {
			return newOutcomeError(http.StatusNotAcceptable, "not-supported", "only application/fhir+json is supported")
		}
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		ct := r.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		form := mt == "application/x-www-form-urlencoded"
		if ct != "" && (err != nil || !(isJSONFormat(mt) || form)) {
			return newOutcomeError(http.StatusUnsupportedMediaType, "not-supported", "request body must be application/fhir+json")
		}
	}
	return nil
}

func isJSONFormat(f string) bool {
	switch strings.ToLower(strings.TrimSpace(f)) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir", "fhir+json":
		return true
	}
	return false
}

func (h *handler) authenticate(w http.ResponseWriter, r *http.Request) (Grant, bool) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+h.realm+`"`)
		h.writeOutcome(w, http.StatusUnauthorized, []Issue{{Severity: "error", Code: "login", Diagnostics: "a bearer token is required"}})
		return nil, false
	}
	scheme, tok, _ := strings.Cut(authz, " ")
	tok = strings.TrimSpace(tok)
	var g Grant
	var err error
	if strings.EqualFold(scheme, "Bearer") && tok != "" {
		g, err = h.verify.Verify(r.Context(), tok)
	}
	if g == nil || err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+h.realm+`", error="invalid_token"`)
		h.writeOutcome(w, http.StatusUnauthorized, []Issue{{Severity: "error", Code: "login", Diagnostics: "the bearer token is invalid or expired"}})
		return nil, false
	}
	return g, true
}

func forbidden(msg string) error {
	return newOutcomeError(http.StatusForbidden, "forbidden", msg)
}

var errScope = forbidden("insufficient scope")

func (h *handler) allow(rq *request, in Interaction, params url.Values) error {
	if rq.grant != nil && !rq.grant.Allows(rq.typ, in, params) {
		return errScope
	}
	return nil
}

// --- read side -------------------------------------------------------------

func (h *handler) typeGet(w http.ResponseWriter, rq *request) error {
	if rq.typ == "metadata" {
		w.Header().Set("Content-Type", fhirJSON)
		w.WriteHeader(http.StatusOK)
		w.Write(h.caps)
		return nil
	}
	return h.search(w, rq, rq.r.URL.Query())
}

func (h *handler) postSearch(w http.ResponseWriter, rq *request) error {
	if rq.id != "_search" {
		w.Header().Set("Allow", "GET, PUT, DELETE")
		return newOutcomeError(http.StatusMethodNotAllowed, "not-supported", "method not allowed")
	}
	rq.r.Body = http.MaxBytesReader(w, rq.r.Body, h.maxBody)
	if err := rq.r.ParseForm(); err != nil {
		return badRequest("structure", "invalid form body")
	}
	params := url.Values{}
	for k, v := range rq.r.Form {
		params[k] = v
	}
	return h.search(w, rq, params)
}

func (h *handler) search(w http.ResponseWriter, rq *request, params url.Values) error {
	if !supported(rq.typ) {
		return unknownType(rq.typ)
	}
	if err := h.allow(rq, InteractionSearch, params); err != nil {
		return err
	}
	lenient := false
	for _, p := range rq.r.Header.Values("Prefer") {
		if strings.Contains(p, "handling=lenient") {
			lenient = true
		}
	}
	q, err := parseSearch(rq.typ, params, lenient, h.base)
	if err != nil {
		return err
	}
	if rq.grant != nil && rq.grant.Patient() != "" {
		if err := confineSearch(q, rq.grant.Patient()); err != nil {
			return err
		}
	}
	res, err := h.store.run(rq.r.Context(), q)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(http.StatusOK)
	w.Write(h.searchBundle(rq.typ, params, q, res))
	return nil
}

// confineSearch limits a search to patient P's compartment; a search that
// names another patient is refused.
func confineSearch(q *query, p string) error {
	for _, c := range q.clauses {
		switch {
		case q.typ == "Patient" && c.param == "_id":
			for _, v := range c.values {
				if v.text != p {
					return forbidden("the search names a patient outside the token's compartment")
				}
			}
		case c.kind == kindRef && (c.param == "patient" || c.param == "subject"):
			for _, v := range c.values {
				if v.rid != p || (v.rtype != "" && v.rtype != "Patient") || v.rbase != "" {
					return forbidden("the search names a patient outside the token's compartment")
				}
			}
		}
	}
	q.compartment = p
	return nil
}

func (h *handler) read(w http.ResponseWriter, rq *request) error {
	if rq.id == "_history" || rq.id == "_search" {
		if !supported(rq.typ) {
			return unknownType(rq.typ)
		}
		return newOutcomeError(http.StatusMethodNotAllowed, "not-supported", "interaction not supported")
	}
	return h.readVersion(w, rq, InteractionRead, 0)
}

func (h *handler) vread(w http.ResponseWriter, rq *request) error {
	n, err := strconv.Atoi(httprouter.ParamsFromContext(rq.r.Context()).ByName("vid"))
	if err != nil || n <= 0 {
		if !supported(rq.typ) {
			return unknownType(rq.typ)
		}
		return newOutcomeError(http.StatusNotFound, "not-found", "version not found")
	}
	return h.readVersion(w, rq, InteractionVRead, n)
}

func (h *handler) readVersion(w http.ResponseWriter, rq *request, in Interaction, n int) error {
	if !supported(rq.typ) {
		return unknownType(rq.typ)
	}
	if err := h.allow(rq, in, nil); err != nil {
		return err
	}
	if !idPattern.MatchString(rq.id) {
		return ErrNotFound
	}
	v, err := h.store.ReadVersion(rq.r.Context(), rq.typ, rq.id, n)
	if rq.grant != nil && rq.grant.Patient() != "" {
		if cerr := h.checkCompartmentRead(rq, v, err); cerr != nil {
			return cerr
		}
	}
	if err != nil {
		return err
	}
	h.writeVersion(w, http.StatusOK, v, false)
	return nil
}

// checkCompartmentRead refuses (403) an existing resource outside the
// grant's patient compartment; unknown ids stay 404.
func (h *handler) checkCompartmentRead(rq *request, v *Version, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case errors.Is(err, ErrGone):
		// Judge a deleted resource by its last live version.
		hist, herr := h.store.History(rq.r.Context(), rq.typ, rq.id, 100)
		if herr != nil {
			return herr
		}
		for _, hv := range hist {
			if !hv.Deleted {
				if !inCompartment(rq.typ, rq.id, hv.Body, rq.grant.Patient(), h.base) {
					return forbidden("the resource is outside the token's patient compartment")
				}
				return nil
			}
		}
		return nil
	case err != nil:
		return nil
	}
	if !inCompartment(rq.typ, rq.id, v.Body, rq.grant.Patient(), h.base) {
		return forbidden("the resource is outside the token's patient compartment")
	}
	return nil
}

// inCompartment reports whether a resource belongs to patient p's
// compartment: the Patient itself, or a resource whose patient/subject
// references Patient/p.
func inCompartment(typ, id string, body json.RawMessage, p, base string) bool {
	if typ == "Patient" {
		return id == p
	}
	if compartmentParam(typ) == "" || body == nil {
		return false
	}
	doc, err := decodeDoc(body)
	if err != nil {
		return false
	}
	for _, r := range extractIndex(typ, doc, base).refs {
		if r.param == "patient" && r.ttype == "Patient" && r.tid == p && r.base == "" {
			return true
		}
	}
	return false
}

func (h *handler) history(w http.ResponseWriter, rq *request) error {
	if !supported(rq.typ) {
		return unknownType(rq.typ)
	}
	if err := h.allow(rq, InteractionHistory, nil); err != nil {
		return err
	}
	if !idPattern.MatchString(rq.id) {
		return ErrNotFound
	}
	count := 100
	if c := rq.r.URL.Query().Get("_count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return badParam("_count", "must be a positive integer")
		}
		count = min(n, maxCount)
	}
	vs, err := h.store.History(rq.r.Context(), rq.typ, rq.id, count)
	if err != nil {
		return err
	}
	if rq.grant != nil && rq.grant.Patient() != "" {
		ok := false
		for _, v := range vs {
			if !v.Deleted {
				ok = inCompartment(rq.typ, rq.id, v.Body, rq.grant.Patient(), h.base)
				break
			}
		}
		if !ok {
			return forbidden("the resource is outside the token's patient compartment")
		}
	}
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(http.StatusOK)
	w.Write(h.historyBundle(rq.typ, rq.id, vs))
	return nil
}

// --- write side ------------------------------------------------------------

func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newOutcomeError(http.StatusRequestEntityTooLarge, "too-costly", "request body too large")
		}
		return nil, badRequest("structure", "could not read the request body")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, badRequest("required", "request body is empty")
	}
	return b, nil
}

// writeGuard confines writes under a patient-level grant: both the stored
// and the new version must be in the compartment.
func (h *handler) writeGuard(rq *request) guard {
	if rq.grant == nil || rq.grant.Patient() == "" {
		return nil
	}
	p := rq.grant.Patient()
	return func(prev, next json.RawMessage) error {
		for _, b := range []json.RawMessage{prev, next} {
			if b == nil {
				continue
			}
			id := rq.id
			if id == "" { // create: the id is server-assigned, never P's
				id = "\x00"
			}
			if !inCompartment(rq.typ, id, b, p, h.base) {
				return forbidden("the write is outside the token's patient compartment")
			}
		}
		return nil
	}
}

func (h *handler) create(w http.ResponseWriter, rq *request) error {
	if rq.typ == "metadata" {
		w.Header().Set("Allow", "GET")
		return newOutcomeError(http.StatusMethodNotAllowed, "not-supported", "method not allowed")
	}
	if !supported(rq.typ) {
		return unknownType(rq.typ)
	}
	if err := h.allow(rq, InteractionCreate, nil); err != nil {
		return err
	}
	body, err := h.readBody(w, rq.r)
	if err != nil {
		return err
	}
	v, err := h.store.create(rq.r.Context(), rq.typ, body, h.writeGuard(rq))
	if err != nil {
		return err
	}
	h.writeVersion(w, http.StatusCreated, v, true)
	return nil
}

func (h *handler) update(w http.ResponseWriter, rq *request) error {
	if !supported(rq.typ) {
		return unknownType(rq.typ)
	}
	if err := h.allow(rq, InteractionUpdate, nil); err != nil {
		return err
	}
	ifMatch, err := parseIfMatch(rq.r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	body, err := h.readBody(w, rq.r)
	if err != nil {
		return err
	}
	v, err := h.store.update(rq.r.Context(), rq.typ, rq.id, body, ifMatch, h.writeGuard(rq))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if v.Created {
		status = http.StatusCreated
	}
	h.writeVersion(w, status, v, v.Created)
	return nil
}

func (h *handler) delete(w http.ResponseWriter, rq *request) error {
	if !supported(rq.typ) {
		return unknownType(rq.typ)
	}
	if err := h.allow(rq, InteractionDelete, nil); err != nil {
		return err
	}
	ifMatch, err := parseIfMatch(rq.r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	if !idPattern.MatchString(rq.id) {
		return ErrNotFound
	}
	if err := h.store.delete(rq.r.Context(), rq.typ, rq.id, ifMatch, h.writeGuard(rq)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseIfMatch reads W/"n" (or "n"); "" means no precondition.
func parseIfMatch(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	n, err := strconv.Atoi(strings.Trim(s, `"`))
	if err != nil || n <= 0 {
		return 0, badRequest("invalid", `If-Match must be W/"<versionId>"`)
	}
	return n, nil
}

// --- responses -------------------------------------------------------------

func (h *handler) writeVersion(w http.ResponseWriter, status int, v *Version, location bool) {
	hd := w.Header()
	hd.Set("Content-Type", fhirJSON)
	hd.Set("ETag", v.ETag())
	hd.Set("Last-Modified", v.LastUpdated.Format(http.TimeFormat))
	if location {
		hd.Set("Location", h.base+"/"+v.Type+"/"+v.ID+"/_history/"+strconv.Itoa(v.Version))
	}
	hd.Set("Content-Length", strconv.Itoa(len(v.Body)))
	w.WriteHeader(status)
	w.Write(v.Body)
}

func (h *handler) writeOutcome(w http.ResponseWriter, status int, issues []Issue) {
	w.Header().Set("Content-Type", fhirJSON)
	w.WriteHeader(status)
	w.Write(outcomeJSON(issues))
}

func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	oe, client := asOutcome(err)
	if !client {
		if errors.Is(err, context.Canceled) {
			return
		}
		h.log.ErrorContext(r.Context(), "fhir request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	h.writeOutcome(w, oe.Status, oe.Issues)
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) []byte {
	b, err := canonicalJSON(s)
	if err != nil {
		return []byte(`""`)
	}
	return b
}

// searchBundle splices stored bodies into a searchset Bundle.
func (h *handler) searchBundle(typ string, params url.Values, q *query, res *SearchResult) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":`)
	b.WriteString(strconv.Itoa(res.Total))
	b.WriteString(`,"link":[`)
	self := url.Values{}
	for k, v := range params {
		self[k] = v
	}
	link := func(rel string, v url.Values) {
		b.WriteString(`{"relation":"` + rel + `","url":`)
		u := h.base + "/" + typ
		if enc := v.Encode(); enc != "" {
			u += "?" + enc
		}
		b.Write(jsonString(u))
		b.WriteString(`}`)
	}
	link("self", self)
	page := func(offset int) url.Values {
		v := url.Values{}
		for k, vals := range params {
			v[k] = vals
		}
		v.Set("_snapshot", strconv.FormatInt(res.Snapshot, 10))
		v.Set("_offset", strconv.Itoa(offset))
		v.Set("_count", strconv.Itoa(q.count))
		return v
	}
	if res.HasNext && !q.summaryCount {
		b.WriteString(",")
		link("next", page(q.offset+q.count))
	}
	if q.offset > 0 && !q.summaryCount && q.count > 0 {
		b.WriteString(",")
		link("previous", page(max(0, q.offset-q.count)))
	}
	b.WriteString("]")
	entries := res.Entries
	if len(entries) > 0 || len(q.ignored) > 0 {
		b.WriteString(`,"entry":[`)
		for i, e := range entries {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"fullUrl":`)
			b.Write(jsonString(h.base + "/" + e.Type + "/" + e.ID))
			b.WriteString(`,"resource":`)
			b.Write(e.Resource)
			b.WriteString(`,"search":{"mode":"` + e.Mode + `"}}`)
		}
		if len(q.ignored) > 0 {
			if len(entries) > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"resource":`)
			b.Write(outcomeJSON([]Issue{{Severity: "warning", Code: "not-supported",
				Diagnostics: "ignored unknown search parameters: " + strings.Join(q.ignored, ", ")}}))
			b.WriteString(`,"search":{"mode":"outcome"}}`)
		}
		b.WriteString("]")
	}
	b.WriteString("}")
	return b.Bytes()
}

func (h *handler) historyBundle(typ, id string, vs []*Version) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"history","total":`)
	b.WriteString(strconv.Itoa(len(vs)))
	b.WriteString(`,"link":[{"relation":"self","url":`)
	b.Write(jsonString(h.base + "/" + typ + "/" + id + "/_history"))
	b.WriteString(`}],"entry":[`)
	for i, v := range vs {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"fullUrl":`)
		b.Write(jsonString(h.base + "/" + typ + "/" + id))
		method, url, status := "PUT", typ+"/"+id, "200 OK"
		switch {
		case v.Deleted:
			method, status = "DELETE", "204 No Content"
		case v.Version == 1:
			method, url, status = "POST", typ, "201 Created"
		default:
			b.WriteString(`,"resource":`)
			b.Write(v.Body)
		}
		if v.Version == 1 && !v.Deleted {
			b.WriteString(`,"resource":`)
			b.Write(v.Body)
		}
		b.WriteString(`,"request":{"method":"` + method + `","url":`)
		b.Write(jsonString(url))
		b.WriteString(`},"response":{"status":"` + status + `","etag":`)
		b.Write(jsonString(v.ETag()))
		b.WriteString(`,"lastModified":"` + v.LastUpdated.Format("2006-01-02T15:04:05.000Z07:00") + `"}}`)
	}
	b.WriteString("]}")
	return b.Bytes()
}
