package trace

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// FromHeader marks a request sent through a recording Transport. The
// sender has recorded the exchange, so a receiving Middleware does not
// record it again (it still honours FlowHeader). The header is a tracing
// hint between sim's own parties, never an authentication signal.
const FromHeader = "Sim-From"

// Redacted replaces a secret value in recorded messages.
const Redacted = "[redacted]"

// maxCapture bounds the bytes of a body kept in an event.
const maxCapture = 16 << 10

// secretParams are form, query and JSON fields whose values are never
// recorded. JWT values among them are kept as decoded claims instead.
var secretParams = map[string]bool{
	"code": true, "launch": true, "code_verifier": true, "client_secret": true,
	"client_assertion": true, "access_token": true, "refresh_token": true,
	"id_token": true, "launch_token": true, "subject_token": true, "actor_token": true,
	"token": true, "assertion": true, "password": true, "csrf": true, "id_token_hint": true,
}

// keptHeaders are the headers an event shows (canonical names).
var keptHeaders = [...]string{"Authorization", "Content-Type", "Location", "WWW-Authenticate", "Cache-Control"}

// contentTypeIndex is Content-Type's place in keptHeaders.
const contentTypeIndex = 1

type slotKey struct{}

// flowSlot lets a handler name the flow of the inbound request being
// recorded after the middleware has started recording it.
type flowSlot struct {
	mu   sync.Mutex
	flow string
}

// Attribute names the flow of the inbound request ctx belongs to, for an
// authorization server that knows the flow from its own state (a pending
// request, a code) rather than from FlowHeader. Without a recording
// Middleware it does nothing.
func Attribute(ctx context.Context, flow string) {
	if s, ok := ctx.Value(slotKey{}).(*flowSlot); ok && flow != "" {
		s.mu.Lock()
		s.flow = flow
		s.mu.Unlock()
	}
}

// cleanFlow keeps a flow id from a header short and printable.
func cleanFlow(v string) string {
	if len(v) > 128 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return ""
		}
	}
	return v
}

// Middleware records each inbound request to party to as a KindHTTP event
// from from(r). The flow is FlowHeader when present (it is also put in the
// request context for the handler's outbound calls), else what the handler
// names with Attribute. Requests carrying FromHeader were recorded by the
// sender and are passed through unrecorded. A nil Recorder returns next.
func (r *Recorder) Middleware(to Party, from func(*http.Request) Party, next http.Handler) http.Handler {
	if r == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		flow := cleanFlow(req.Header.Get(FlowHeader))
		ctx := req.Context()
		if flow != "" {
			ctx = WithFlow(ctx, flow)
		}
		if req.Header.Get(FromHeader) != "" {
			next.ServeHTTP(w, req.WithContext(ctx))
			return
		}
		slot := &flowSlot{flow: flow}
		ctx = context.WithValue(ctx, slotKey{}, slot)
		reqBody := captureRequest(req)
		sender := User
		if from != nil {
			sender = from(req)
		}
		cw := &captureWriter{ResponseWriter: w}
		defer cw.release()
		start := time.Now()
		next.ServeHTTP(cw, req.WithContext(ctx))
		slot.mu.Lock()
		flow = slot.flow
		slot.mu.Unlock()
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		r.Add(Event{
			Flow: flow, Kind: KindHTTP, From: sender, To: to,
			Method: req.Method, rawURL: copyURL(req.URL), Status: status,
			Duration: time.Since(start), Label: label(req.Method, req.URL),
			Error:       status >= 400,
			rawRequest:  capture(req.Header, reqBody),
			rawResponse: capture(cw.Header(), bytes.Clone(cw.captured())),
		})
	})
}

// captureRequest reads a small form or JSON body and puts it back.
func captureRequest(req *http.Request) []byte {
	if req.Body == nil || req.Body == http.NoBody || !textual(req.Header.Get("Content-Type")) {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxCapture+1))
	req.Body = readCloser{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
	if err != nil || len(b) > maxCapture {
		return nil
	}
	return b
}

type readCloser struct {
	io.Reader
	io.Closer
}

// bufPool holds response capture buffers: the bytes are copied into the
// event's (redacted) body, so the buffer itself is reused.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// captureWriter keeps the status and the first bytes of a textual body.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   *bytes.Buffer // from bufPool, only once a textual body is written
	skip   bool
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.skip = !textual(w.Header().Get("Content-Type"))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.skip && len(b) > 0 {
		if w.body == nil {
			w.body = bufPool.Get().(*bytes.Buffer)
		}
		if n := maxCapture - w.body.Len(); n > 0 {
			w.body.Write(b[:min(len(b), n)])
		}
	}
	return w.ResponseWriter.Write(b)
}

// captured is the body kept so far; valid until release.
func (w *captureWriter) captured() []byte {
	if w.body == nil {
		return nil
	}
	return w.body.Bytes()
}

// release returns the capture buffer to the pool.
func (w *captureWriter) release() {
	if w.body != nil && w.body.Cap() <= 4*maxCapture {
		w.body.Reset()
		bufPool.Put(w.body)
	}
	w.body = nil
}

func (w *captureWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *captureWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// textual reports a form or JSON content type (bodies worth showing; HTML
// pages and binaries are not kept).
func textual(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/x-www-form-urlencoded" || mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// mediaType is the lower-cased type/subtype of a Content-Type value, or ""
// when there is none. Unlike mime.ParseMediaType it does not parse (or
// allocate for) the parameters: only the media type decides how a body is
// recorded, and every recorded body is redacted whatever its type.
func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	if strings.Count(mt, "/") != 1 || strings.ContainsAny(mt, " \t\"()<>@,:[]?=") {
		return ""
	}
	for i := 0; i < len(mt); i++ {
		if c := mt[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(mt)
		}
	}
	return mt
}

// Transport records each outbound request from party from to party to(u)
// as a KindHTTP event in the flow of the request context (else its
// FlowHeader), and sends FlowHeader and FromHeader along. A request that
// already carries FromHeader is being recorded by an outer recording
// Transport and is not recorded twice. A nil Recorder returns base (nil
// base: http.DefaultTransport).
func (r *Recorder) Transport(from Party, to func(*url.URL) Party, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if r == nil {
		return base
	}
	return &recordingTransport{rec: r, from: from, to: to, base: base}
}

type recordingTransport struct {
	rec  *Recorder
	from Party
	to   func(*url.URL) Party
	base http.RoundTripper
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get(FromHeader) != "" {
		return t.base.RoundTrip(req)
	}
	flow := FlowFrom(req.Context())
	if flow == "" {
		flow = cleanFlow(req.Header.Get(FlowHeader))
	}
	out := req.Clone(req.Context())
	out.Header.Set(FromHeader, string(t.from))
	if flow != "" {
		out.Header.Set(FlowHeader, flow)
	}
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody && textual(req.Header.Get("Content-Type")) && req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			b, err := io.ReadAll(io.LimitReader(rc, maxCapture+1))
			rc.Close()
			if err == nil && len(b) <= maxCapture {
				reqBody = b
			}
		}
	}
	to := Party("")
	if t.to != nil {
		to = t.to(req.URL)
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(out)
	e := Event{
		Flow: flow, Kind: KindHTTP, From: t.from, To: to, Method: req.Method,
		rawURL: copyURL(req.URL), Label: label(req.Method, req.URL),
		rawRequest: capture(req.Header, reqBody),
	}
	if err != nil {
		e.Duration, e.Error = time.Since(start), true
		e.Response = &Message{Body: transportFailure(err)}
		t.rec.Add(e)
		return nil, err
	}
	var respBody []byte
	if textual(resp.Header.Get("Content-Type")) && resp.Body != nil {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxCapture+1))
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
		if rerr == nil && len(b) <= maxCapture {
			respBody = b
		}
	}
	e.Duration, e.Status, e.Error = time.Since(start), resp.StatusCode, resp.StatusCode >= 400
	e.rawResponse = capture(resp.Header, respBody)
	t.rec.Add(e)
	return resp, nil
}

// transportFailure says why no response came, without the error text
// (which may hold URLs with secrets).
func transportFailure(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "no response: timeout"
	case errors.Is(err, context.Canceled):
		return "no response: canceled"
	}
	return "no response: connection failed"
}

func label(method string, u *url.URL) string {
	return method + " " + u.EscapedPath()
}

// copyURL keeps a request's URL for redaction at read time, safe from
// whoever holds the request afterwards.
func copyURL(u *url.URL) *url.URL {
	if u == nil {
		return nil
	}
	c := *u
	return &c
}

// RedactURL renders u without user info and with secret query values
// replaced by Redacted.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		if err != nil {
			c.RawQuery = Redacted
		} else {
			redactValues(q, nil)
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

// redactValues replaces secret values; JWT values go to claims.
func redactValues(q url.Values, claims map[string]any) {
	for k, vs := range q {
		if !secretParams[k] {
			continue
		}
		for i, v := range vs {
			if c := JWTClaims(v); c != nil && claims != nil {
				claims[k] = c
			}
			vs[i] = Redacted
		}
	}
}

// capturedMessage is one side of an exchange as it went over the wire:
// the kept headers and the body, not yet redacted. It never leaves the
// Recorder: the first read of its event (Flows, Flow) turns it into a
// redacted Message. Under load most flows are dropped before anyone looks
// at them, so their redaction and JWT decoding are never paid for.
type capturedMessage struct {
	headers [len(keptHeaders)]string
	body    []byte // owned: not reused by the caller
}

// capture keeps h's shown headers and body (which it does not copy).
func capture(h http.Header, body []byte) *capturedMessage {
	c := &capturedMessage{body: body}
	kept := len(body) > 0
	for i, k := range keptHeaders {
		if vs := h[k]; len(vs) > 0 && vs[0] != "" {
			c.headers[i], kept = vs[0], true
		}
	}
	if !kept {
		return nil
	}
	return c
}

// redact builds the redacted Message; nil for nothing captured.
func (c *capturedMessage) redact() *Message {
	if c == nil {
		return nil
	}
	m := &Message{}
	for i, k := range keptHeaders {
		v := c.headers[i]
		if v == "" {
			continue
		}
		switch k {
		case "Authorization":
			scheme, cred, _ := strings.Cut(v, " ")
			if c := bearerClaims.get(strings.TrimSpace(cred)); c != nil {
				m.claim("Authorization", c)
			}
			v = scheme + " " + Redacted
		case "Location":
			if u, err := url.Parse(v); err == nil {
				v = RedactURL(u)
			} else {
				v = Redacted
			}
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, 2)
		}
		m.Headers[k] = v
	}
	if len(c.body) > 0 {
		m.Body = redactBody(c.headers[contentTypeIndex], c.body, m)
	}
	if m.Headers == nil && m.Claims == nil && m.Body == "" {
		return nil
	}
	return m
}

// claim records decoded JWT claims under name.
func (m *Message) claim(name string, c map[string]any) {
	if m.Claims == nil {
		m.Claims = map[string]any{}
	}
	m.Claims[name] = c
}

// redactBody redacts a form or JSON body; anything else is dropped. A JSON
// object none of whose top-level names is secret (a FHIR resource, a
// discovery document) is kept as sent, without decoding it.
func redactBody(ct string, body []byte, m *Message) string {
	if mediaType(ct) == "application/x-www-form-urlencoded" {
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return Redacted
		}
		claims := map[string]any{}
		redactValues(q, claims)
		for k, c := range claims {
			m.claim(k, c.(map[string]any))
		}
		return q.Encode()
	}
	if i := skipSpace(body, 0); i < len(body) && body[i] == '{' && !secretTopLevel(body) {
		return string(body)
	}
	var obj map[string]any
	if json.Unmarshal(body, &obj) != nil {
		if json.Valid(body) {
			return string(body) // an array or another non-object
		}
		return ""
	}
	for k, v := range obj {
		if !secretParams[k] {
			continue
		}
		if s, ok := v.(string); ok {
			if c := JWTClaims(s); c != nil {
				m.claim(k, c)
			}
		}
		obj[k] = Redacted
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return ""
	}
	return string(b)
}

// secretTopLevel reports whether body may be a JSON object with a secret
// member (a name in secretParams) at its top level, the members redactBody
// redacts, scanning without decoding. It does not rely on body being valid
// JSON: every string directly inside the outer object, name or value, is
// compared, and a string written with escapes (it might decode to a secret
// name), an unterminated object or string, or anything after the object
// reports true, so that the caller takes the decoding path, which is always
// safe. A body that is not an object reports false (redactBody keeps
// those only if they are valid JSON).
func secretTopLevel(body []byte) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	depth := 0 // body[i] is the outer '{'; the loop counts it
	for ; i < len(body); i++ {
		switch body[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return skipSpace(body, i+1) != len(body)
			}
		case '"':
			end, escaped := scanString(body, i+1)
			if end < 0 {
				return true
			}
			if depth == 1 && (escaped || secretParams[string(body[i+1:end])]) {
				return true
			}
			i = end
		}
	}
	return true // the object never closed
}

// scanString returns the index of the quote closing the string whose
// content starts at i, and whether it holds escapes; -1 if unterminated.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i, escaped
		}
	}
	return -1, escaped
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// JWTClaims decodes the payload of a compact JWS without verifying it, or
// returns nil when v is not one. The signature is never kept.
func JWTClaims(v string) map[string]any {
	if len(v) > 16<<10 || strings.Count(v, ".") != 2 {
		return nil
	}
	parts := strings.SplitN(v, ".", 3)
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil
	}
	var hdr map[string]any
	if json.Unmarshal(hb, &hdr) != nil {
		return nil
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(pb, &claims) != nil {
		return nil
	}
	if typ, ok := hdr["typ"].(string); ok {
		claims["_typ"] = typ
	}
	return claims
}
