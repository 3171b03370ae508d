package broker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/broker"
)

// stub is a broker in front of two small upstream authorization servers
// on one test origin: {origin}/ehr and {origin}/other. Their token
// endpoints redeem the code "good" (the EHR's with a launch_token) and
// refuse anything else. No browser ever visits their authorize endpoints:
// the tests write the authorization responses themselves.
type stub struct {
	up, app  string // upstream origin, the app's redirect_uri
	brokerTS *httptest.Server
	broker   *broker.Server
	panicked atomic.Value
	// ehrMode breaks the EHR's token endpoint: "down" (500, not JSON) or
	// "no-launch-token".
	ehrMode atomic.Value
}

func newStub(t testing.TB) *stub {
	t.Helper()
	s := &stub{}
	upMux := http.NewServeMux()
	for _, leg := range []string{"ehr", "other"} {
		upMux.HandleFunc("POST /"+leg+"/token", func(w http.ResponseWriter, r *http.Request) {
			mode, _ := s.ehrMode.Load().(string)
			if leg == "ehr" && mode == "down" {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			if id, _, ok := r.BasicAuth(); !ok || id != "broker-at-"+leg {
				authkit.WriteError(w, authkit.ErrInvalidClient, true)
				return
			}
			if r.FormValue("code") != "good" || !authkit.ValidVerifier(r.FormValue("code_verifier")) {
				authkit.WriteError(w, authkit.ErrInvalidGrant, false)
				return
			}
			tok := map[string]any{"access_token": "at-" + leg, "token_type": "Bearer", "expires_in": 3600, "scope": "patient/*.rs"}
			if leg == "ehr" && mode != "no-launch-token" {
				tok["launch_token"], tok["patient"] = "lt", "p1"
			}
			authkit.WriteJSON(w, http.StatusOK, tok)
		})
	}
	upTS := httptest.NewServer(upMux)
	t.Cleanup(upTS.Close)
	s.up = upTS.URL
	s.app = "https://app.example/cb"

	mux := http.NewServeMux()
	s.brokerTS = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				s.panicked.Store(fmt.Sprint(v))
				http.Error(w, "panic", http.StatusInternalServerError)
			}
		}()
		mux.ServeHTTP(w, r)
	}))
	s.brokerTS.Start()
	t.Cleanup(s.brokerTS.Close)
	upstream := func(leg string) broker.Upstream {
		return broker.Upstream{Issuer: s.up + "/" + leg, AuthorizeURL: s.up + "/" + leg + "/authorize", TokenURL: s.up + "/" + leg + "/token",
			FHIRBase: s.up + "/" + leg + "/fhir", ClientID: "broker-at-" + leg, ClientSecret: "secret-" + leg}
	}
	b, err := broker.New(broker.Config{Issuer: s.brokerTS.URL + "/broker", EHR: upstream("ehr"), Other: upstream("other"),
		Clients: []broker.Client{{ID: "app", RedirectURIs: []string{s.app}}}, HTTPClient: upTS.Client()})
	if err != nil {
		t.Fatal(err)
	}
	b.Mount(mux)
	s.broker = b
	return s
}

// get sends one GET to the broker without following redirects.
func (s *stub) get(t testing.TB, u string) (int, *url.URL, string) {
	t.Helper()
	resp, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v := s.panicked.Load(); v != nil {
		t.Fatalf("the broker panicked: %v", v)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("Location %q: %v", resp.Header.Get("Location"), err)
	}
	return resp.StatusCode, loc, string(body)
}

// start runs the app's authorization request and returns the state of the
// broker's EHR leg.
func (s *stub) start(t testing.TB, verifier string) string {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {s.app}, "state": {"app-state"},
		"scope": {"launch patient/*.rs"}, "code_challenge": {authkit.S256(verifier)}, "code_challenge_method": {"S256"}}
	status, loc, body := s.get(t, s.broker.Issuer()+"/authorize?"+q.Encode())
	if status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), s.up+"/ehr/authorize?") {
		t.Fatalf("authorize: %d %s %s", status, loc, body)
	}
	return loc.Query().Get("state")
}

// callback sends an upstream authorization response to the broker.
func (s *stub) callback(t testing.TB, raw string) (int, *url.URL, string) {
	t.Helper()
	return s.get(t, s.broker.CallbackURL()+"?"+raw)
}

// FuzzCallback (seeds in testdata/fuzz/FuzzCallback) throws authorization responses at the broker's callback,
// on the EHR leg (other false) or on the OtherAS leg. In raw, {state} is
// the pending leg's state and {ehr} / {other} the upstream issuers. The
// broker must never panic, must answer with an error page or a redirect,
// and may only go on (to OtherAS, or to the app with a code) when the
// response carries exactly one iss, the leg's own, and a code the
// upstream redeemed.
func FuzzCallback(f *testing.F) {
	s := newStub(f)
	f.Fuzz(func(t *testing.T, raw string, other bool) {
		if !sendable(raw) {
			t.Skip("not something a browser sends as a query")
		}
		verifier := authkit.RandomString(48)
		state := s.start(t, verifier)
		leg, iss := "ehr", s.up+"/ehr"
		if other {
			status, loc, body := s.callback(t, url.Values{"state": {state}, "code": {"good"}, "iss": {iss}}.Encode())
			if status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), s.up+"/other/authorize?") {
				t.Fatalf("EHR leg: %d %s %s", status, loc, body)
			}
			state, leg, iss = loc.Query().Get("state"), "other", s.up+"/other"
		}
		raw = strings.NewReplacer("{state}", url.QueryEscape(state), "{ehr}", url.QueryEscape(s.up+"/ehr"),
			"{other}", url.QueryEscape(s.up+"/other")).Replace(raw)
		status, loc, body := s.callback(t, raw)
		in, perr := url.ParseQuery(raw)
		trusted := perr == nil && len(in["iss"]) == 1 && in.Get("iss") == iss
		switch {
		case status == http.StatusBadRequest:
			if loc.String() != "" {
				t.Fatalf("error page with Location %s", loc)
			}
		case status != http.StatusSeeOther:
			t.Fatalf("callback: %d %s", status, body)
		case strings.HasPrefix(loc.String(), s.up+"/other/authorize?"):
			if leg != "ehr" || !trusted || in.Get("code") != "good" || in.Has("error") {
				t.Fatalf("went on to OtherAS after %q on the %s leg", raw, leg)
			}
		case strings.HasPrefix(loc.String(), s.app+"?"):
			q := loc.Query()
			if q.Get("state") != "app-state" || q.Get("iss") != s.broker.Issuer() {
				t.Fatalf("app redirect %s: want the app's state and the broker's iss", loc.RawQuery)
			}
			if q.Has("code") == q.Has("error") {
				t.Fatalf("app redirect %s: want a code or an error", loc.RawQuery)
			}
			if q.Has("code") && (leg != "other" || !trusted) {
				t.Fatalf("a code for the app after %q on the %s leg", raw, leg)
			}
			if q.Has("code") {
				s.redeem(t, q.Get("code"), verifier, in)
			}
		default:
			t.Fatalf("redirect to %s", loc)
		}
	})
}

// sendable: raw reaches the handler as it is (no fragment, no bytes a
// client or server refuses in a request line).
func sendable(raw string) bool {
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// redeem checks the broker's token response after an OtherAS leg that
// answered in (a code or an error).
func (s *stub) redeem(t *testing.T, code, verifier string, in url.Values) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {s.app}, "code_verifier": {verifier}, "client_id": {"app"}}
	resp, err := http.PostForm(s.broker.Issuer()+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	if body["access_token"] != "at-ehr" {
		t.Fatalf("token response %v: want the EHR token", body)
	}
	_, gotOther := body["additional_tokens"]
	_, gotErr := body["additional_token_errors"]
	if wantOther := in.Get("code") == "good" && !in.Has("error"); gotOther != wantOther || gotErr == wantOther {
		t.Fatalf("token response %v after OtherAS answered %v", body, in)
	}
}

// TestUpstreamFailures: what the app sees when the EHR's token endpoint
// fails or gives no launch-token.
func TestUpstreamFailures(t *testing.T) {
	s := newStub(t)
	ehrResponse := func(t *testing.T, verifier string) (int, *url.URL) {
		state := s.start(t, verifier)
		status, loc, _ := s.callback(t, url.Values{"state": {state}, "code": {"good"}, "iss": {s.up + "/ehr"}}.Encode())
		return status, loc
	}
	t.Run("EHR token endpoint down", func(t *testing.T) {
		s.ehrMode.Store("down")
		defer s.ehrMode.Store("")
		status, loc := ehrResponse(t, authkit.RandomString(48))
		q := loc.Query()
		if status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), s.app+"?") || q.Get("error") != "temporarily_unavailable" || q.Has("code") {
			t.Fatalf("%d %s: want temporarily_unavailable at the app", status, loc)
		}
	})
	t.Run("EHR grants no launch-token", func(t *testing.T) {
		s.ehrMode.Store("no-launch-token")
		defer s.ehrMode.Store("")
		verifier := authkit.RandomString(48)
		status, loc := ehrResponse(t, verifier)
		if status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), s.app+"?") || loc.Query().Get("code") == "" {
			t.Fatalf("%d %s: want a code at the app", status, loc)
		}
		// The app gets the EHR token and an error for Other.
		s.redeem(t, loc.Query().Get("code"), verifier, url.Values{"error": {"x"}})
	})
}
