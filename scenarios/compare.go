package scenarios

// sim compare: the four directions of flows.md run for the same app, user
// and patient, each measured from its own trace flow ("What a scenario
// compares").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/smart-sim/sim/ehr"
	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/internal/trace"
)

// CompareOptions says what Compare runs.
type CompareOptions struct {
	// World is the world every direction runs in (direction C in a copy
	// with other.governed_by: ehr). nil: the default world.
	World *World
	// Class picks the patient: the first EHR patient of this overlap class
	// (default shared).
	Class  string
	Logger *slog.Logger
}

// ServerScopes is what one server's authorization granted.
type ServerScopes struct {
	Server    string   `json:"server"` // "EHR FHIR" or "Other FHIR"
	DecidedBy string   `json:"decided_by"`
	Requested []string `json:"requested"`
	Granted   []string `json:"granted"`
	Refused   []string `json:"refused"`
}

// DirectionResult is one direction's measurements.
type DirectionResult struct {
	Direction string `json:"direction"` // A, B, C, D
	Name      string `json:"name"`
	Patient   string `json:"patient"` // the EHR id
	Class     string `json:"class"`
	// Counted from the trace flow of the direction.
	Redirects     int `json:"browser_redirects"`
	Interactions  int `json:"user_interactions"`
	ServerToServe int `json:"server_to_server_calls"`
	Exchanges     int `json:"http_exchanges"`
	// WallTime is the flow's duration as the app saw it.
	WallTime time.Duration  `json:"wall_time_ns"`
	Scopes   []ServerScopes `json:"scopes"`
	// UserSawOther says whether the user was shown what the app gets at
	// the Other server, and where.
	UserSawOther string `json:"user_saw_other"`
	// Readers lists, per FHIR server, the parties that held an access
	// token for it or read from it during the flow.
	Readers map[string][]string `json:"readers"`
	// Error is set when the direction could not complete.
	Error string     `json:"error,omitempty"`
	Flow  trace.Flow `json:"-"`
}

var directionNames = map[string]string{
	"A": "launch-token (multiple SMART launch)",
	"B": "token exchange (RFC 8693)",
	"C": "one token for both servers",
	"D": "authorization proxy (broker)",
}

// Compare runs directions A, B, C and D, each in a freshly started world
// from the same seed (so no cache, such as OtherAS's backend token, carries
// over from one direction to the next), and measures each from its trace.
// A direction that fails is reported with Error; Compare itself fails only
// when a world cannot start or has no patient of the class.
func Compare(ctx context.Context, opt CompareOptions) ([]DirectionResult, error) {
	w := opt.World
	if w == nil {
		w = DefaultWorld()
	}
	if opt.Class == "" {
		opt.Class = synth.ClassShared
	}
	if !slices.Contains(synth.Classes, opt.Class) {
		return nil, fmt.Errorf("unknown class %q (expected one of: %s)", opt.Class, strings.Join(synth.Classes, ", "))
	}
	var out []DirectionResult
	for _, d := range []string{"A", "B", "C", "D"} {
		world := *w
		world.Other.GovernedBy = ""
		if d == "C" {
			world.Other.GovernedBy = GovernedByEHR
		}
		res, err := compareOne(ctx, &world, d, opt)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

func compareOne(ctx context.Context, w *World, d string, opt CompareOptions) (DirectionResult, error) {
	r, err := Start(ctx, w, Options{Logger: opt.Logger})
	if err != nil {
		return DirectionResult{}, fmt.Errorf("start the world for direction %s: %w", d, err)
	}
	defer r.Close(context.WithoutCancel(ctx))
	var pat *synth.Truth
	for i := range r.Population.Truth {
		if r.Population.Truth[i].Class == opt.Class {
			pat = &r.Population.Truth[i]
			break
		}
	}
	if pat == nil {
		return DirectionResult{}, fmt.Errorf("the world has no %s patient", opt.Class)
	}
	if len(w.Users.Clinicians) == 0 {
		return DirectionResult{}, errors.New("the world has no clinician to launch with")
	}
	flow := "compare-" + strings.ToLower(d) + "-" + authkit.RandomString(6)
	r.Trace.Name(flow, "Direction "+d+": "+directionNames[d])
	a := &scriptedApp{r: r, ready: r.Ready(), flow: flow, user: w.Users.Clinicians[0].Username, world: w, patient: pat.EHRID}
	a.client = &http.Client{Transport: cmpFlowTransport{flow: flow, base: http.DefaultTransport}, Timeout: 30 * time.Second}
	res := DirectionResult{Direction: d, Name: directionNames[d], Patient: pat.EHRID, Class: opt.Class}
	start := time.Now()
	switch d {
	case "A":
		err = a.directionA(ctx, &res)
	case "B":
		err = a.directionB(ctx, &res)
	case "C":
		err = a.directionC(ctx, &res)
	case "D":
		err = a.directionD(ctx, &res)
	}
	res.WallTime = time.Since(start)
	if err != nil {
		res.Error = err.Error()
	}
	f, _ := r.Trace.Flow(flow)
	res.Flow = f
	a.measure(&res)
	return res, nil
}

// cmpFlowTransport puts every request of the scripted app and user in flow.
type cmpFlowTransport struct {
	flow string
	base http.RoundTripper
}

func (t cmpFlowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := req.Clone(req.Context())
	c.Header.Set(trace.FlowHeader, t.flow)
	return t.base.RoundTrip(c)
}

// scriptedApp is the app and its user for one direction.
type scriptedApp struct {
	r       *Running
	ready   Ready
	flow    string
	user    string
	world   *World
	patient string
	client  *http.Client
	// consents are the consent pages the user saw: the AS party and text.
	consents []consentSeen
}

type consentSeen struct {
	party trace.Party
	body  string
}

type cmpDiscovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
}

func (a *scriptedApp) getJSON(ctx context.Context, u, bearer string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", u, err)
		}
	}
	return resp.StatusCode, nil
}

func (a *scriptedApp) discover(ctx context.Context, u string) (cmpDiscovery, error) {
	var d cmpDiscovery
	code, err := a.getJSON(ctx, u, "", &d)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("cmpDiscovery at %s: status %d", u, code)
	}
	return d, err
}

func (a *scriptedApp) launch(ctx context.Context, clientID string) (string, error) {
	app := a.world.Apps[0]
	u, err := a.r.ehrAS.NewLaunch(ctx, ehr.LaunchRequest{ClientID: clientID, LaunchURL: ExpandURL(app.LaunchURL, a.ready.origins()), Patient: a.patient, User: a.user})
	if err != nil {
		return "", fmt.Errorf("create the EHR launch: %w", err)
	}
	pu, _ := url.Parse(u)
	return pu.Query().Get("launch"), nil
}

// authorize walks the user through the pages from authURL to the app's
// redirect (login, patient picker, every consent approved).
func (a *scriptedApp) authorize(ctx context.Context, authURL, redirect string) (*url.URL, error) {
	b := browser.New(a.client.Transport, redirect)
	page, err := b.Get(ctx, authURL)
	for i := 0; err == nil && page.Redirect == nil && i < 8; i++ {
		switch {
		case formWith(page, "password") != nil:
			pw := ""
			for _, c := range a.world.Users.Clinicians {
				if c.Username == a.user {
					pw = c.Password
				}
			}
			page, err = b.Submit(ctx, formWith(page, "password"), browser.Submit{Set: map[string]string{"username": a.user, "password": pw}})
		case formWith(page, "decision") != nil:
			a.consents = append(a.consents, consentSeen{party: a.r.partyOf(page.URL), body: page.Body})
			page, err = b.Submit(ctx, formWith(page, "decision"), browser.Submit{Button: "decision=approve"})
		case formWith(page, "patient") != nil:
			page, err = b.Submit(ctx, formWith(page, "patient"), browser.Submit{Set: map[string]string{"patient": a.patient}})
		default:
			return nil, fmt.Errorf("the user is stuck on %s (status %d)", page.URL.Redacted(), page.Status)
		}
	}
	if err != nil {
		return nil, err
	}
	if page.Redirect == nil {
		return nil, errors.New("the authorization did not end at the app")
	}
	if e := page.Redirect.Query().Get("error"); e != "" {
		return page.Redirect, fmt.Errorf("authorization refused: %s", e)
	}
	return page.Redirect, nil
}

func formWith(p *browser.Page, name string) *browser.Form {
	var out *browser.Form
	for i := range p.Forms {
		f := &p.Forms[i]
		for _, fl := range append(slices.Clone(f.Fields), f.Buttons...) {
			if fl.Name == name && (out == nil || f.Method == http.MethodPost) {
				out = f
			}
		}
	}
	return out
}

// codeFlow runs one authorization-code flow with PKCE and returns the
// token response.
func (a *scriptedApp) codeFlow(ctx context.Context, d cmpDiscovery, clientID, secret string, scope string, params url.Values) (*oauth2.Token, error) {
	redirect := ExpandURL(a.appOf(clientID).RedirectURIs[0], a.ready.origins())
	style := oauth2.AuthStyleInParams
	if secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	conf := &oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: redirect, Scopes: strings.Fields(scope),
		Endpoint: oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint, AuthStyle: style}}
	v := oauth2.GenerateVerifier()
	u, _ := url.Parse(conf.AuthCodeURL("st-"+authkit.RandomString(8), oauth2.S256ChallengeOption(v)))
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	back, err := a.authorize(ctx, u.String(), redirect)
	if err != nil {
		return nil, err
	}
	if back.Query().Get("iss") != d.Issuer {
		return nil, fmt.Errorf("authorization response iss %q, want %q", back.Query().Get("iss"), d.Issuer)
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, a.client), back.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		return nil, fmt.Errorf("token request: %w", err)
	}
	return tok, nil
}

func (a *scriptedApp) appOf(clientID string) WorldApp {
	for _, x := range a.world.Apps {
		if x.ClientID == clientID {
			return x
		}
	}
	return a.world.Apps[0]
}

const (
	ehrScope   = "launch launch-token openid fhirUser patient/*.rs user/*.rs"
	otherScope = "launch patient/*.rs user/*.rs"
)

func extraString(t *oauth2.Token, k string) string { s, _ := t.Extra(k).(string); return s }

// read reads the patient at a server, as the app would next.
// read fetches the patient in context with bearer, or, when the token
// carries no patient (it was refused), searches Patient with what the
// token does grant: either way the trace shows who could read the server.
func (a *scriptedApp) read(ctx context.Context, base, id, bearer string) {
	switch {
	case bearer == "":
	case id != "":
		_, _ = a.getJSON(ctx, base+"/Patient/"+id, bearer, nil)
	default:
		_, _ = a.getJSON(ctx, base+"/Patient?_count=1", bearer, nil)
	}
}

func (a *scriptedApp) sampleApp() WorldApp {
	for _, x := range a.world.Apps {
		if x.Type == AppPublic {
			return x
		}
	}
	return a.world.Apps[0]
}

func (a *scriptedApp) vendorApp() (WorldApp, bool) {
	for _, x := range a.world.Apps {
		if x.Type == AppConfidentialSymmetric && registeredAt(x, RegisterAtEHR) && registeredAt(x, RegisterAtOther) {
			return x, true
		}
	}
	return WorldApp{}, false
}

// ehrLeg is the EHR launch every direction but D starts with.
func (a *scriptedApp) ehrLeg(ctx context.Context, res *DirectionResult, app WorldApp, scope string, params url.Values) (*oauth2.Token, error) {
	l, err := a.launch(ctx, app.ClientID)
	if err != nil {
		return nil, err
	}
	d, err := a.discover(ctx, a.ready.EHRFHIR+"/.well-known/smart-configuration")
	if err != nil {
		return nil, err
	}
	params.Set("launch", l)
	tok, err := a.codeFlow(ctx, d, app.ClientID, app.Secret, scope, params)
	if err != nil {
		return nil, fmt.Errorf("EHR: %w", err)
	}
	return tok, nil
}

func (a *scriptedApp) directionA(ctx context.Context, res *DirectionResult) error {
	app := a.sampleApp()
	tok, err := a.ehrLeg(ctx, res, app, ehrScope, url.Values{"aud": {a.ready.EHRFHIR}, "resource": {a.ready.OtherFHIR}})
	if err != nil {
		return err
	}
	res.Scopes = append(res.Scopes, scopes("EHR FHIR", "EHR AS", ehrScope, extraString(tok, "scope")))
	a.read(ctx, a.ready.EHRFHIR, extraString(tok, "patient"), tok.AccessToken)
	d, err := a.discover(ctx, a.ready.OtherFHIR+"/.well-known/smart-configuration")
	if err != nil {
		return err
	}
	ot, err := a.codeFlow(ctx, d, app.ClientID, app.Secret, otherScope, url.Values{"launch": {extraString(tok, "launch_token")}, "aud": {a.ready.OtherFHIR}})
	if err != nil {
		res.Scopes = append(res.Scopes, scopes("Other FHIR", "OtherAS", otherScope, ""))
		return fmt.Errorf("Other: %w", err)
	}
	res.Scopes = append(res.Scopes, scopes("Other FHIR", "OtherAS", otherScope, extraString(ot, "scope")))
	a.read(ctx, a.ready.OtherFHIR, extraString(ot, "patient"), ot.AccessToken)
	return nil
}

func (a *scriptedApp) directionB(ctx context.Context, res *DirectionResult) error {
	app, ok := a.vendorApp()
	if !ok {
		return errors.New("the world has no confidential-symmetric app registered at both servers")
	}
	tok, err := a.ehrLeg(ctx, res, app, ehrScope, url.Values{"aud": {a.ready.EHRFHIR}, "resource": {a.ready.OtherFHIR}})
	if err != nil {
		return err
	}
	res.Scopes = append(res.Scopes, scopes("EHR FHIR", "EHR AS", ehrScope, extraString(tok, "scope")))
	a.read(ctx, a.ready.EHRFHIR, extraString(tok, "patient"), tok.AccessToken)
	d, err := a.discover(ctx, a.ready.OtherFHIR+"/.well-known/smart-configuration")
	if err != nil {
		return err
	}
	const exScope = "patient/*.rs user/*.rs"
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {extraString(tok, "launch_token")},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
		"scope":              {exScope},
		"resource":           {a.ready.OtherFHIR},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(app.ClientID), url.QueryEscape(app.Secret))
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("token exchange: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
		Patient     string `json:"patient"`
		Error       string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	res.Scopes = append(res.Scopes, scopes("Other FHIR", "OtherAS", exScope, body.Scope))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token exchange refused: %s", body.Error)
	}
	a.read(ctx, a.ready.OtherFHIR, body.Patient, body.AccessToken)
	return nil
}

func (a *scriptedApp) directionC(ctx context.Context, res *DirectionResult) error {
	const scope = "launch openid fhirUser patient/*.rs user/*.rs"
	tok, err := a.ehrLeg(ctx, res, a.sampleApp(), scope, url.Values{"resource": {a.ready.EHRFHIR, a.ready.OtherFHIR}})
	if err != nil {
		return err
	}
	granted := extraString(tok, "scope")
	res.Scopes = append(res.Scopes, scopes("EHR FHIR", "EHR AS", scope, granted), scopes("Other FHIR", "EHR AS", scope, granted))
	a.read(ctx, a.ready.EHRFHIR, extraString(tok, "patient"), tok.AccessToken)
	otherID := ""
	if fc, ok := tok.Extra("fhirContext").([]any); ok {
		for _, x := range fc {
			m, _ := x.(map[string]any)
			id, _ := m["identifier"].(map[string]any)
			if v, _ := id["value"].(string); strings.HasPrefix(v, a.ready.OtherFHIR+"/Patient/") {
				otherID = strings.TrimPrefix(v, a.ready.OtherFHIR+"/Patient/")
			}
		}
	}
	a.read(ctx, a.ready.OtherFHIR, otherID, tok.AccessToken)
	return nil
}

func (a *scriptedApp) directionD(ctx context.Context, res *DirectionResult) error {
	app := a.sampleApp()
	const scope = "launch openid fhirUser patient/*.rs user/*.rs"
	l, err := a.launch(ctx, brokerClientID)
	if err != nil {
		return err
	}
	d, err := a.discover(ctx, a.ready.BrokerIssuer+"/.well-known/smart-configuration")
	if err != nil {
		return err
	}
	tok, err := a.codeFlow(ctx, d, app.ClientID, app.Secret, scope, url.Values{"launch": {l}})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	res.Scopes = append(res.Scopes, scopes("EHR FHIR", "EHR AS (via broker)", scope+" launch-token", extraString(tok, "scope")))
	a.read(ctx, a.ready.EHRFHIR, extraString(tok, "patient"), tok.AccessToken)
	otherAsked := "launch openid fhirUser patient/*.rs user/*.rs"
	list, _ := tok.Extra("additional_tokens").([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		s, _ := m["scope"].(string)
		res.Scopes = append(res.Scopes, scopes("Other FHIR", "OtherAS (via broker)", otherAsked, s))
		at, _ := m["access_token"].(string)
		p, _ := m["patient"].(string)
		a.read(ctx, a.ready.OtherFHIR, p, at)
	}
	if len(list) == 0 {
		res.Scopes = append(res.Scopes, scopes("Other FHIR", "OtherAS (via broker)", otherAsked, ""))
	}
	return nil
}

func scopes(server, by, requested, granted string) ServerScopes {
	req, got := strings.Fields(requested), strings.Fields(granted)
	s := ServerScopes{Server: server, DecidedBy: by, Requested: req, Granted: got, Refused: []string{}}
	for _, x := range req {
		if !slices.Contains(got, x) {
			s.Refused = append(s.Refused, x)
		}
	}
	if s.Granted == nil {
		s.Granted = []string{}
	}
	return s
}

// measure counts the flow's exchanges and derives who saw and who could
// read what.
func (a *scriptedApp) measure(res *DirectionResult) {
	readers := map[trace.Party]map[string]bool{trace.EHRFHIR: {}, trace.OtherFHIR: {}}
	sawAtOther := false
	for _, e := range res.Flow.Events {
		if e.Kind != trace.KindHTTP {
			continue
		}
		res.Exchanges++
		switch e.From {
		case trace.User:
			if e.Status >= 300 && e.Status < 400 {
				res.Redirects++
			}
			if e.Method == http.MethodPost {
				res.Interactions++
				if e.To == trace.OtherAS && strings.Contains(e.URL, "consent") {
					sawAtOther = true
				}
			}
		case trace.App:
		default:
			res.ServerToServe++
		}
		if e.Status != http.StatusOK {
			continue
		}
		if e.To == trace.EHRFHIR || e.To == trace.OtherFHIR {
			if strings.Contains(e.URL, "/Patient") {
				readers[e.To][string(e.From)] = true
			}
		}
		if e.Response != nil {
			if c, ok := e.Response.Claims["access_token"].(map[string]any); ok {
				for _, aud := range audiences(c["aud"]) {
					switch aud {
					case a.ready.EHRFHIR:
						readers[trace.EHRFHIR][string(e.From)] = true
					case a.ready.OtherFHIR:
						readers[trace.OtherFHIR][string(e.From)] = true
					}
				}
			}
		}
	}
	res.Readers = map[string][]string{}
	for server, set := range readers {
		list := []string{}
		for p := range set {
			list = append(list, p)
		}
		sort.Strings(list)
		res.Readers[string(server)] = list
	}
	switch {
	case sawAtOther:
		res.UserSawOther = "yes: OtherAS consent"
	case slices.ContainsFunc(a.consents, func(c consentSeen) bool {
		return c.party == trace.EHRAS && strings.Contains(c.body, a.world.Other.Name)
	}) && res.Direction == "C":
		res.UserSawOther = "only the EHR consent, which names Other"
	default:
		res.UserSawOther = "no"
	}
}

func audiences(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, y := range x {
			if s, ok := y.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
