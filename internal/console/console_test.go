package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smart-sim/sim/internal/trace"
)

// memStore is a tiny in-memory FHIR store for handler tests (the console's
// own seam; the real stores are exercised by scenarios' console tests).
type memStore map[string]json.RawMessage

func (m memStore) Read(_ context.Context, typ, id string) (json.RawMessage, error) {
	if b, ok := m[typ+"/"+id]; ok {
		return b, nil
	}
	return nil, errors.New("not found")
}

func (m memStore) Search(_ context.Context, typ string, q url.Values) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for k, v := range m {
		if !strings.HasPrefix(k, typ+"/") {
			continue
		}
		if id := q.Get("identifier"); id != "" && !strings.Contains(string(v), strings.SplitN(id, "|", 2)[1]) {
			continue
		}
		if p := q.Get("patient"); p != "" && !strings.Contains(string(v), "Patient/"+p) {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

type launchFunc func(context.Context, LaunchRequest) (string, error)

func (f launchFunc) NewLaunch(ctx context.Context, lr LaunchRequest) (string, error) {
	return f(ctx, lr)
}

const sharedSys = "https://national-id.example.org/fhir/sid/patient-id"

func newTestConsole(t *testing.T) (*Console, *httptest.Server, *[]LaunchRequest) {
	t.Helper()
	ehr := memStore{
		"Patient/p1":  json.RawMessage(`{"resourceType":"Patient","id":"p1","name":[{"given":["Ann"],"family":"Lee"}],"birthDate":"1970-01-02","identifier":[{"system":"` + sharedSys + `","value":"111"}]}`),
		"Patient/p2":  json.RawMessage(`{"resourceType":"Patient","id":"p2","name":[{"given":["Bo"],"family":"Ng"}],"identifier":[{"system":"` + sharedSys + `","value":"222"}]}`),
		"Condition/c": json.RawMessage(`{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p1"},"code":{"text":"Asthma <b>"},"onsetDateTime":"2020-05-06T10:00:00Z"}`),
	}
	other := memStore{
		"Patient/o1": json.RawMessage(`{"resourceType":"Patient","id":"o1","name":[{"given":["Ann"],"family":"Lee"}],"identifier":[{"system":"` + sharedSys + `","value":"111"}]}`),
	}
	var launches []LaunchRequest
	rec := trace.NewRecorder(10, nil)
	var srv *httptest.Server
	c, err := New(Config{
		EHRName: "EHR Org", OtherName: "Other Org", WorldName: "test world",
		Users:        []User{{Username: "dr.a", Password: "pw", Kind: "clinician"}, {Username: "pat", Password: "pw", Kind: "patient", FHIRUser: "http://x/fhir/Patient/p2"}},
		Apps:         []App{{ClientID: "app1", Name: "App One", LaunchURL: "http://app/launch", RegisteredAt: []string{"ehr", "other"}}},
		Patients:     []Patient{{EHRID: "p1", Class: "shared", OtherID: "o1", OtherRecords: []string{"o1"}, Identifiers: []Identifier{{sharedSys, "111"}}}, {EHRID: "p2", Class: "absent", Identifiers: []Identifier{{sharedSys, "222"}}}},
		Classes:      map[string]int{"shared": 1, "absent": 1},
		MatchSystems: []string{sharedSys}, SharedSystem: sharedSys,
		EHR: ehr, Other: other, Trace: rec,
		Launcher: launchFunc(func(_ context.Context, lr LaunchRequest) (string, error) {
			launches = append(launches, lr)
			return "http://app/launch?iss=x&launch=L", nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	c.Mount(mux)
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c.cfg.Servers.Console = srv.URL
	rec.Add(trace.Event{Flow: "f1", Kind: trace.KindHTTP, From: trace.OtherAS, To: trace.EHRAS, Method: "POST", Label: "POST /auth/introspect", Status: 200,
		Request: &trace.Message{Body: "token=" + trace.Redacted, Claims: map[string]any{"token": map[string]any{"iss": "http://ehr/auth"}}}})
	return c, srv, &launches
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, cl *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := cl.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func TestPagesWithoutSession(t *testing.T) {
	_, srv, _ := newTestConsole(t)
	cases := []struct {
		path   string
		status int
		want   []string
	}{
		{"/", 200, []string{"EHR Org", "Other Org", "launch-token", `data-copy="dr.a"`, "App One"}},
		{"/ehr", 200, []string{`name="username"`, `name="password"`}},
		{"/directories", 200, []string{"<svg", "found once, Other record o1", "Other has no record of this person"}},
		{"/directories?class=absent", 200, []string{"p2"}},
		{"/traces", 200, []string{`data-flow="f1"`, "OtherAS → EHR AS introspection"}},
		{"/traces/f1", 200, []string{"<svg", "introspect", "JWT claims in", "http://ehr/auth"}},
		{"/traces/nope", 404, []string{"No such flow"}},
		{"/scenarios", 200, []string{"runner-coming"}},
		{"/register", 200, []string{`name="redirect_uris"`, `value="both"`}},
		{"/sample-app/launch", 200, []string{"/static/sample-app/app.js"}},
		{"/static/sample-app/app.js", 200, []string{"code_challenge_method", "history.replaceState"}},
		{"/nowhere", 404, []string{"Page not found"}},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			code, body := get(t, srv.Client(), srv.URL+tc.path)
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q", w)
				}
			}
		})
	}
}

func login(t *testing.T, srv *httptest.Server, user string) *http.Client {
	t.Helper()
	cl := noRedirect()
	resp, err := cl.PostForm(srv.URL+"/ehr/login", url.Values{"username": {user}, "password": {"pw"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly {
		t.Fatal("login set no HttpOnly console session cookie")
	}
	cl.Transport = cookieTransport{ck}
	return cl
}

type cookieTransport struct{ ck *http.Cookie }

func (c cookieTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.AddCookie(c.ck)
	return http.DefaultTransport.RoundTrip(r)
}

func TestEHRSessionChartAndLaunch(t *testing.T) {
	c, srv, launches := newTestConsole(t)

	resp, _ := noRedirect().PostForm(srv.URL+"/ehr/login", url.Values{"username": {"dr.a"}, "password": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	cl := login(t, srv, "dr.a")
	code, body := get(t, cl, srv.URL+"/ehr/patients/p1")
	if code != 200 || !strings.Contains(body, "Asthma &lt;b&gt;") || !strings.Contains(body, `value="frame"`) {
		t.Fatalf("chart: %d %.300s", code, body)
	}
	var csrf string
	for s := range c.sessions {
		csrf = c.sessions[s].csrf
	}
	// Without the CSRF token: refused.
	resp, _ = cl.PostForm(srv.URL+"/ehr/launch", url.Values{"patient": {"p1"}, "client_id": {"app1"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("launch without csrf: %d", resp.StatusCode)
	}
	// From another origin: refused.
	req, _ := http.NewRequest("POST", srv.URL+"/ehr/launch", strings.NewReader(url.Values{"csrf": {csrf}, "patient": {"p1"}, "client_id": {"app1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, _ = cl.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin launch: %d", resp.StatusCode)
	}
	resp, _ = cl.PostForm(srv.URL+"/ehr/launch", url.Values{"csrf": {csrf}, "patient": {"p1"}, "client_id": {"app1"}, "mode": {"tab"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://app/launch?iss=x&launch=L" {
		t.Fatalf("tab launch: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = cl.PostForm(srv.URL+"/ehr/launch", url.Values{"csrf": {csrf}, "patient": {"p1"}, "client_id": {"app1"}, "mode": {"frame"}})
	if resp.StatusCode != 200 {
		t.Fatalf("frame launch: %d", resp.StatusCode)
	}
	if len(*launches) != 2 || (*launches)[0] != (LaunchRequest{ClientID: "app1", Patient: "p1", User: "dr.a"}) {
		t.Fatalf("launches: %+v", *launches)
	}
	resp, _ = cl.PostForm(srv.URL+"/ehr/launch", url.Values{"csrf": {csrf}, "patient": {"p1"}, "client_id": {"nope"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown app: %d", resp.StatusCode)
	}
}

func TestPortalUserSeesOnlyOwnRecord(t *testing.T) {
	_, srv, _ := newTestConsole(t)
	cl := login(t, srv, "pat")
	resp, err := cl.Get(srv.URL + "/ehr")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ehr/patients/p2" {
		t.Fatalf("portal home: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _ := get(t, cl, srv.URL+"/ehr/patients/p1"); code != http.StatusForbidden {
		t.Fatalf("another patient's chart: %d, want 403", code)
	}
}

func TestRegisterFormValidation(t *testing.T) {
	_, srv, _ := newTestConsole(t)
	resp, err := http.PostForm(srv.URL+"/register", url.Values{"client_name": {""}, "redirect_uris": {"not a url"}, "type": {"confidential-asymmetric"}, "at": {"both"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid form: %d", resp.StatusCode)
	}
}

func TestTraceEventsStream(t *testing.T) {
	c, srv, _ := newTestConsole(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/traces/events", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	read := func(want string) {
		t.Helper()
		var got strings.Builder
		buf := make([]byte, 4096)
		for !strings.Contains(got.String(), want) {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("stream ended before %q: %v", want, err)
			}
		}
	}
	read(`data-flow="f1"`)
	c.cfg.Trace.Add(trace.Event{Flow: "f2", Kind: trace.KindDecision, From: trace.OtherAS, To: trace.OtherAS, Decision: "refused patient/*.rs: no match", Error: true})
	read(`data-flow="f2"`)
}

func TestDescribe(t *testing.T) {
	r := describe(json.RawMessage(`{"resourceType":"Observation","id":"o","status":"final","code":{"coding":[{"display":"Heart rate"}]},"valueQuantity":{"value":72,"unit":"/min"},"effectiveDateTime":"2024-01-02T03:04:05Z"}`))
	if r.Text != "Heart rate" || r.Value != "72 /min" || r.Date != "2024-01-02" || r.Status != "final" {
		t.Fatalf("describe: %+v", r)
	}
	if r := describe(json.RawMessage(`not json`)); r.Text == "" {
		t.Fatal("describe of garbage shows nothing")
	}
}

func FuzzDescribe(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Condition","code":[1,{"text":2}],"period":"x","valueQuantity":{"value":"1"}}`))
	f.Add([]byte(`{"code":{"coding":[null,{}]},"clinicalStatus":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = describe(b) // must not panic
	})
}
