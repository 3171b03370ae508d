package trace_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/smart-sim/sim/internal/trace"
)

func fakeJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "launch-token+jwt"})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + ".c2lnbmF0dXJlLXNlY3JldA"
}

func events(r *trace.Recorder) []trace.Event {
	var out []trace.Event
	for _, f := range r.Flows() {
		out = append(out, f.Events...)
	}
	return out
}

// TestTransportAndMiddlewareRecordOnce: a call between two recorded
// parties is one event, in the caller's flow, with secrets redacted and
// JWT claims decoded.
func TestTransportAndMiddlewareRecordOnce(t *testing.T) {
	rec := trace.NewRecorder(10, nil)
	assertion := fakeJWT(map[string]any{"iss": "otheras", "jti": "a1"})
	access := fakeJWT(map[string]any{"scope": "system/Patient.rs", "jti": "t1"})
	var seenFlow string
	ehr := httptest.NewServer(rec.Middleware(trace.EHRAS, func(*http.Request) trace.Party { return trace.User }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenFlow = trace.FlowFrom(r.Context())
		_ = r.ParseForm()
		if r.PostForm.Get("client_assertion") != assertion {
			t.Error("the handler did not get the request body")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"`+access+`","token_type":"Bearer","expires_in":300}`)
	})))
	defer ehr.Close()
	// Two recording layers: only the outer one records.
	inner := rec.Transport(trace.OtherAS, func(*url.URL) trace.Party { return trace.EHRAS }, nil)
	hc := &http.Client{Transport: rec.Transport(trace.OtherAS, func(*url.URL) trace.Party { return trace.EHRAS }, inner)}
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion": {assertion}, "client_secret": {"hunter2-secret"}}
	req, _ := http.NewRequestWithContext(trace.WithFlow(context.Background(), "f1"), http.MethodPost, ehr.URL+"/auth/token?code=abc123secret", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), access) {
		t.Fatal("the caller did not get the response body")
	}
	if seenFlow != "f1" {
		t.Errorf("handler flow %q, want f1 from the Sim-Flow header", seenFlow)
	}
	evs := events(rec)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.Flow != "f1" || e.From != trace.OtherAS || e.To != trace.EHRAS || e.Status != 200 || e.Label != "POST /auth/token" || e.Kind != trace.KindHTTP || e.Duration <= 0 {
		t.Errorf("event %+v", e)
	}
	dump, _ := json.Marshal(e)
	for _, secret := range []string{"c2lnbmF0dXJlLXNlY3JldA", "hunter2-secret", "abc123secret", assertion, access} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("event holds a secret %.20s: %s", secret, dump)
		}
	}
	if e.Request.Claims["client_assertion"].(map[string]any)["jti"] != "a1" || e.Request.Claims["Authorization"] == nil {
		t.Errorf("request claims %v", e.Request.Claims)
	}
	if e.Response.Claims["access_token"].(map[string]any)["scope"] != "system/Patient.rs" || !strings.Contains(e.Response.Body, `"token_type":"Bearer"`) {
		t.Errorf("response %+v", e.Response)
	}
	if e.Request.Headers["Authorization"] != "Bearer "+trace.Redacted {
		t.Errorf("authorization header %q", e.Request.Headers["Authorization"])
	}
}

// TestMiddlewareAttributesBrowserRequests: a browser request without flow
// header lands in the flow the handler names; Location is redacted.
func TestMiddlewareAttributesBrowserRequests(t *testing.T) {
	rec := trace.NewRecorder(10, nil)
	srv := httptest.NewServer(rec.Middleware(trace.OtherAS, func(*http.Request) trace.Party { return trace.User }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		trace.Attribute(r.Context(), "authz-1")
		http.Redirect(w, r, "http://app.test/cb?code=the-code-value&state=s1&iss=x", http.StatusSeeOther)
	})))
	defer srv.Close()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(srv.URL + "/auth/authorize?launch=launch-secret-value&client_id=app")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	evs := events(rec)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	e := evs[0]
	if e.Flow != "authz-1" || e.From != trace.User || e.To != trace.OtherAS || e.Status != http.StatusSeeOther {
		t.Errorf("event %+v", e)
	}
	loc := e.Response.Headers["Location"]
	if strings.Contains(loc, "the-code-value") || !strings.Contains(loc, "state=s1") || strings.Contains(e.URL, "launch-secret-value") || !strings.Contains(e.URL, "client_id=app") {
		t.Errorf("url %q location %q", e.URL, loc)
	}
}

func TestTransportRecordsFailures(t *testing.T) {
	rec := trace.NewRecorder(10, nil)
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	hc := &http.Client{Transport: rec.Transport(trace.OtherAS, func(*url.URL) trace.Party { return trace.EHRFHIR }, nil)}
	if _, err := hc.Get(u + "/fhir/Patient/1"); err == nil {
		t.Fatal("no error from a closed server")
	}
	evs := events(rec)
	if len(evs) != 1 || !evs[0].Error || evs[0].Flow != "unattributed" || evs[0].Response == nil || !strings.HasPrefix(evs[0].Response.Body, "no response") {
		t.Fatalf("events %+v", evs)
	}
}

func TestNilRecorderPassesThrough(t *testing.T) {
	var rec *trace.Recorder
	h := http.NotFoundHandler()
	if rec.Middleware(trace.EHRAS, nil, h) == nil || rec.Transport(trace.OtherAS, nil, nil) != http.DefaultTransport {
		t.Fatal("nil recorder did not pass through")
	}
	trace.Attribute(context.Background(), "x") // no middleware: no effect, no panic
}

func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{"abcdefgh", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "a b+c%20d&e=f", "…unicode…"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, secret string) {
		u := &url.URL{Scheme: "http", Host: "app.test", Path: "/cb", RawQuery: url.Values{"code": {secret}, "state": {"s"}}.Encode()}
		got := trace.RedactURL(u)
		if len(secret) >= 8 && strings.Contains(got, url.QueryEscape(secret)) {
			t.Fatalf("secret kept: %s", got)
		}
		trace.JWTClaims(secret)
		raw, _ := url.Parse("http://x/?" + secret)
		_ = trace.RedactURL(raw)
	})
}

// TestReadersRedactWhileServersRecord: readers (the console, the control
// API) redact outside the recorder's lock while requests keep being
// recorded; whatever they get is redacted, every event is redacted once
// and kept so, and Recent returns only the newest flows.
func TestReadersRedactWhileServersRecord(t *testing.T) {
	rec := trace.NewRecorder(50, nil)
	srv := httptest.NewServer(rec.Middleware(trace.EHRAS, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"tok-secret-value","token_type":"Bearer"}`)
	})))
	defer srv.Close()
	const flows, perFlow = 20, 10
	done := make(chan struct{})
	readErr := make(chan string, 1)
	for range 3 {
		go func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, f := range rec.Recent(5) {
					dump, _ := json.Marshal(f)
					if strings.Contains(string(dump), "tok-secret-value") || strings.Contains(string(dump), "code-secret-value") {
						select {
						case readErr <- string(dump):
						default:
						}
						return
					}
				}
			}
		}()
	}
	for i := range flows * perFlow {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/auth/token?code=code-secret-value", strings.NewReader("a=b"))
		req.Header.Set(trace.FlowHeader, "flow-"+strconv.Itoa(i/perFlow))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	close(done)
	select {
	case dump := <-readErr:
		t.Fatalf("a reader got a secret: %s", dump)
	default:
	}
	if got := rec.Recent(3); len(got) != 3 || got[0].ID != "flow-19" || got[2].ID != "flow-17" {
		t.Fatalf("Recent(3): %d flows, first %v", len(got), got)
	}
	all := rec.Flows()
	if len(all) != flows {
		t.Fatalf("%d flows, want %d", len(all), flows)
	}
	again := rec.Flows()
	for i, f := range all {
		if len(f.Events) != perFlow {
			t.Fatalf("flow %s: %d events, want %d", f.ID, len(f.Events), perFlow)
		}
		for j, e := range f.Events {
			if e.Response == nil || strings.Contains(e.Response.Body, "tok-secret-value") || !strings.Contains(e.Response.Body, "token_type") ||
				strings.Contains(e.URL, "code-secret-value") || !strings.Contains(e.URL, "code=") {
				t.Fatalf("event %+v not redacted", e)
			}
			// Redacted once: later reads get the same message.
			if again[i].Events[j].Response != e.Response {
				t.Fatalf("flow %s event %d redacted again on a later read", f.ID, j)
			}
		}
	}
}
