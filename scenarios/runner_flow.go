package scenarios

// One flow (or matrix cell) of a scenario run: the scripted app and user
// step by step, faults around the steps, the trace after each step.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smart-sim/sim/internal/browser"
	"github.com/smart-sim/sim/internal/httpkit"
	"github.com/smart-sim/sim/internal/report"
	"github.com/smart-sim/sim/internal/trace"
)

// stepOut is what a step produced: its outcome and its template values.
type stepOut struct {
	kind   StepKind
	server string
	app    string
	// errCode is the OAuth error (or login_failed, unreachable) the step
	// ended with; "" for success.
	errCode string
	// errDetail is the error_description, for reports.
	errDesc string
	status  int
	// token is the token response (grants that succeeded). A response
	// x/oauth2 took is kept as tokenRaw and parsed into token only when
	// read through tokenBody (run does so before a step is checked): a
	// load flow never needs it beyond values.
	token    map[string]any
	tokenRaw []byte
	// read results.
	count   int
	id      string
	values  map[string]string
	tokenEP string // the token endpoint that issued token
}

// tokenBody is the token response's JSON object (nil for a step without
// one), parsed from tokenRaw on first use.
func (o *stepOut) tokenBody() map[string]any {
	if o.token == nil && o.tokenRaw != nil {
		// tokenRaw is only ever a body x/oauth2 parsed as a JSON object.
		_ = json.Unmarshal(o.tokenRaw, &o.token)
		o.tokenRaw = nil
	}
	return o.token
}

// runError is a step that could not run; its message is for the user.
type runError struct{ msg string }

func (e *runError) Error() string { return e.msg }

func cannot(format string, args ...any) error {
	return &runError{msg: fmt.Sprintf(format, args...)}
}

// flowRun is the state of one flow run.
type flowRun struct {
	rn   *runner
	flow *Flow
	cell Cell
	id   string
	// steps holds the latest step by name.
	steps map[string]*stepOut
	// app is the scripted app's HTTP client; br the user's browser. Both
	// send FlowHeader on every request.
	app  *http.Client
	br   *browser.Browser
	tr   *flowTransport
	disc map[string]discovery
	// seen is how many events of the flow's trace earlier steps covered.
	seen int
}

// flowTransport sends FlowHeader on every request, counts the requests
// that reach sim's servers (each is recorded there) and keeps the last
// response status.
type flowTransport struct {
	flow string
	// apiHost and apiPath locate the control API, whose requests are not
	// counted.
	apiHost, apiPath string
	base             http.RoundTripper
	sent             atomic.Int64
	last             atomic.Int64
	// lastToken is the last successful token response.
	lastToken atomic.Pointer[tokenResponse]
}

// flowHeaderKey is trace.FlowHeader as a header map key.
var flowHeaderKey = http.CanonicalHeaderKey(trace.FlowHeader)

// tokenResponse is the body of a successful token response.
type tokenResponse struct {
	body []byte
	// json: x/oauth2 reads the body as JSON (its media type is neither
	// application/x-www-form-urlencoded nor text/plain), so the token it
	// returns holds the body's JSON object.
	json bool
}

func newFlowTransport(flow, api string, base http.RoundTripper) *flowTransport {
	t := &flowTransport{flow: flow, base: base}
	if u, err := url.Parse(api); err == nil {
		t.apiHost, t.apiPath = u.Host, u.Path
	}
	return t
}

func (t *flowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper must not change req: send a shallow copy with a
	// header of its own (the values are shared; nothing changes them).
	out := *req
	out.Header = make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		out.Header[k] = v
	}
	out.Header[flowHeaderKey] = []string{t.flow}
	if req.URL.Host != t.apiHost || !strings.HasPrefix(req.URL.Path, t.apiPath) {
		t.sent.Add(1)
	}
	token := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/token")
	if token {
		t.lastToken.Store(nil)
	}
	resp, err := t.base.RoundTrip(&out)
	if err != nil {
		return nil, err
	}
	t.last.Store(int64(resp.StatusCode))
	if token && resp.StatusCode/100 == 2 {
		// Keep the token response's JSON object: x/oauth2 shows its
		// fields only one by one.
		b, rerr := httpkit.ReadBody(resp, 1<<20)
		resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		t.lastToken.Store(&tokenResponse{body: b, json: mt != "application/x-www-form-urlencoded" && mt != "text/plain"})
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

// newFlowRun prepares one run of flow f (cell c) under trace flow id: a
// fresh app client and a fresh browser (no cookies), both over the
// runner's transport.
func (rn *runner) newFlowRun(f *Flow, id string, c Cell) *flowRun {
	base := rn.transport
	if base == nil {
		base = http.DefaultTransport
	}
	tr := newFlowTransport(id, rn.ready.API, base)
	return &flowRun{
		rn: rn, flow: f, cell: c, id: id, steps: map[string]*stepOut{},
		app:  &http.Client{Transport: tr, Timeout: 90 * time.Second},
		br:   browser.New(tr),
		tr:   tr,
		disc: map[string]discovery{},
	}
}

// runCell runs one flow or matrix cell and returns its result and the
// events recorded for it.
func (rn *runner) runCell(ctx context.Context, f *Flow, id string, c Cell) (report.FlowResult, trace.Flow) {
	start := rn.now()
	fr := report.FlowResult{Name: f.Name, Cell: c.Name, Steps: []report.StepResult{}}
	fl := rn.newFlowRun(f, id, c)
	// The trace of an earlier run with the same id (the same scenario run
	// again against one world) is not this run's.
	before, err := rn.fetchTrace(ctx, id)
	if err != nil {
		fr.Error = "the trace could not be read from the control API"
		fr.Duration = rn.now().Sub(start)
		return fr, trace.Flow{ID: id, Name: fr.FlowName()}
	}
	fl.seen = len(before.Events)
	firstEvent := fl.seen

	fc := &faultControl{rn: rn}
	defer func() {
		// Faults and skews never outlive the flow, whatever happened.
		_ = fc.undo(context.WithoutCancel(ctx))
	}()
	fr.Error = fl.run(ctx, fc, &fr)
	if err := fc.undo(context.WithoutCancel(ctx)); err != nil && fr.Error == "" {
		fr.Error = "the injected faults could not be undone through the control API"
	}
	fr.Passed = fr.Error == ""
	for _, s := range fr.Steps {
		if !s.Passed {
			fr.Passed = false
		}
	}
	fr.Duration = rn.now().Sub(start)
	tf, err := rn.fetchTrace(ctx, id)
	if err != nil {
		tf = trace.Flow{ID: id}
	}
	if firstEvent <= len(tf.Events) {
		tf.Events = tf.Events[firstEvent:]
	}
	tf.Name = fr.FlowName()
	return fr, tf
}

// run runs the steps; it returns why the flow could not run to its end.
func (fl *flowRun) run(ctx context.Context, fc *faultControl, fr *report.FlowResult) string {
	f := fl.flow
	if err := fc.init(ctx); err != nil {
		return "the faults in force could not be read from the control API"
	}
	// The step each fault applies to: the latest step of that name.
	during := map[int][]Fault{}
	var flowWide []Fault
	for _, ft := range f.Faults {
		if ft.During == "" {
			flowWide = append(flowWide, ft)
			continue
		}
		for i := len(f.Steps) - 1; i >= 0; i-- {
			if f.Steps[i].Name == ft.During {
				during[i] = append(during[i], ft)
				break
			}
		}
	}
	fc.flowWide = faultSet(flowWide)
	if len(fc.flowWide) > 0 {
		if err := fc.set(ctx, fc.flowWide); err != nil {
			return "the flow's faults could not be put in force through the control API"
		}
	}
	for _, ft := range flowWide {
		if ft.ClockSkew != "" {
			if err := fc.advance(ctx, ft.By); err != nil {
				return "the clock could not be skewed through the control API"
			}
		}
	}
	for i := range f.Steps {
		st := &f.Steps[i]
		sr := report.StepResult{Index: i + 1, Name: st.Name, Kind: string(st.Kind())}
		t0 := fl.rn.now()
		out, err := fl.runStep(ctx, fc, st, during[i])
		sr.Duration = fl.rn.now().Sub(t0)
		var events []trace.Event
		if err == nil {
			events, err = fl.stepEvents(ctx)
		}
		if err != nil {
			fr.Steps = append(fr.Steps, sr)
			var re *runError
			if errors.As(err, &re) {
				return fmt.Sprintf("step %d (%s): %s", i+1, st.Name, re.msg)
			}
			if ctx.Err() != nil {
				return fmt.Sprintf("step %d (%s): interrupted", i+1, st.Name)
			}
			return fmt.Sprintf("step %d (%s): the control API did not answer as expected", i+1, st.Name)
		}
		fl.steps[st.Name] = out
		out.tokenBody() // the checks read the token response's object
		sr.Failures = fl.check(st, out, events)
		sr.Passed = len(sr.Failures) == 0
		fr.Steps = append(fr.Steps, sr)
	}
	return ""
}

// stepEvents waits until every request the flow sent is recorded, then
// returns the events recorded since the previous step.
func (fl *flowRun) stepEvents(ctx context.Context) ([]trace.Event, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		tf, err := fl.rn.fetchTrace(ctx, fl.id)
		if err != nil {
			return nil, err
		}
		inbound := 0
		for _, e := range tf.Events[min(fl.seen, len(tf.Events)):] {
			if e.Kind == trace.KindHTTP && (e.From == trace.App || e.From == trace.User) {
				inbound++
			}
		}
		if int64(inbound) >= fl.tr.sent.Load() || time.Now().After(deadline) {
			if fl.seen > len(tf.Events) {
				fl.seen = len(tf.Events)
			}
			ev := tf.Events[fl.seen:]
			fl.seen = len(tf.Events)
			fl.tr.sent.Store(0)
			return ev, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// runStep runs one step with its faults around it.
func (fl *flowRun) runStep(ctx context.Context, fc *faultControl, st *Step, faults []Fault) (*stepOut, error) {
	if srv := faultSet(faults); len(srv) > 0 {
		if err := fc.set(ctx, fc.flowWide, srv); err != nil {
			return nil, err
		}
		defer func() {
			if len(fc.flowWide) > 0 {
				_ = fc.set(context.WithoutCancel(ctx), fc.flowWide)
			} else {
				_ = fc.set(context.WithoutCancel(ctx))
			}
		}()
	}
	var skew time.Duration
	for _, ft := range faults {
		if ft.ClockSkew != "" {
			skew += ft.By
		}
	}
	if _, ok := hasFaultKind(faults, "launch_token", "expired"); ok {
		// Let the launch-token expire: move the servers' clock past its
		// lifetime for this step.
		lt := fl.rn.sc.World.Lifetimes.LaunchToken
		if lt <= 0 {
			lt = 5 * time.Minute
		}
		skew += lt + time.Minute
	}
	if skew != 0 {
		if err := fc.advance(ctx, skew); err != nil {
			return nil, err
		}
		defer func() { _ = fc.advance(context.WithoutCancel(ctx), -skew) }()
	}
	switch st.Kind() {
	case StepEHRLaunch:
		return fl.ehrLaunch(ctx, st, faults)
	case StepStandaloneLaunch:
		return fl.standalone(ctx, st, faults)
	case StepOtherLaunch:
		return fl.otherLaunch(ctx, st, faults)
	case StepRefresh:
		return fl.refresh(ctx, st)
	case StepRead:
		return fl.read(ctx, st)
	case StepBackend:
		return fl.backend(ctx, st)
	case StepTokenExchange:
		return fl.tokenExchange(ctx, st, faults)
	case StepBrokerLaunch:
		return fl.brokerLaunch(ctx, st, faults)
	}
	return nil, cannot("%s steps cannot run yet", st.Kind())
}

// lookup resolves a template reference for this flow.
func (fl *flowRun) lookup(r Ref) (string, bool) {
	switch r.Step {
	case tmplPatient:
		switch r.Value {
		case "ehr_id":
			return fl.cell.Patient.EHRID, fl.cell.HasPatient
		case "other_id":
			return fl.cell.Patient.OtherID, fl.cell.Patient.OtherID != ""
		case "class":
			return fl.cell.Patient.Class, fl.cell.HasPatient
		}
	case tmplUser:
		u, ok := fl.rn.userView(fl.flow.User)
		if !ok {
			return "", false
		}
		if r.Value == "username" {
			return u.Username, true
		}
		return u.FHIRUser, true
	case tmplServers:
		if r.Value == "ehr_fhir" {
			return fl.rn.ready.EHRFHIR, true
		}
		if r.Value == "other_fhir" {
			return fl.rn.ready.OtherFHIR, true
		}
	}
	o, ok := fl.steps[r.Step]
	if !ok {
		return "", false
	}
	v, ok := o.values[r.Value]
	return v, ok && v != ""
}

// expand fills a template; a missing value means the step cannot run.
func (fl *flowRun) expand(s string) (string, error) {
	out, err := Expand(s, fl.lookup)
	if err != nil {
		return "", cannot("%v (the step it comes from did not give it)", err)
	}
	return out, nil
}

// discovery is what the app reads from {fhir}/.well-known/smart-configuration.
type discovery struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	Capabilities          []string `json:"capabilities"`
}

// discover reads (once per flow) the SMART configuration of a FHIR base.
func (fl *flowRun) discover(ctx context.Context, fhirBase string) (discovery, error) {
	if d, ok := fl.disc[fhirBase]; ok {
		return d, nil
	}
	var d discovery
	status, err := fl.getJSON(ctx, fhirBase+"/.well-known/smart-configuration", "", &d)
	if err != nil || status != http.StatusOK || d.AuthorizationEndpoint == "" || d.TokenEndpoint == "" || d.Issuer == "" {
		return d, cannot("the app could not read the SMART configuration at %s/.well-known/smart-configuration", fhirBase)
	}
	fl.disc[fhirBase] = d
	return d, nil
}

// getJSON GETs with the app's client (and a bearer token when given).
func (fl *flowRun) getJSON(ctx context.Context, u, bearer string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/fhir+json, application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := fl.app.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := httpkit.ReadBody(resp, 32<<20)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil && resp.StatusCode/100 == 2 {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// randomState is an unguessable state value.
func randomState() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// fillValues sets a grant step's template values from its token response.
func (o *stepOut) fillValues() {
	o.fillValuesFrom(func(k string) any { return o.token[k] })
}

// valueKeys are the token response members a grant step's values hold.
var valueKeys = []string{"access_token", "refresh_token", "id_token", "launch_token", "patient", "encounter", "scope", "token_type", "expires_in", "issued_token_type"}

// fillValuesFrom sets a grant step's template values from the members of
// its token response that member returns (nil: absent or null).
func (o *stepOut) fillValuesFrom(member func(string) any) {
	o.values = make(map[string]string, len(valueKeys)+1)
	for _, k := range valueKeys {
		if v := member(k); v != nil {
			o.values[k] = scalarText(v)
		}
	}
	if idt, ok := member("id_token").(string); ok {
		if c := trace.JWTClaims(idt); c != nil {
			if fu, ok := c["fhirUser"].(string); ok {
				o.values["fhirUser"] = fu
			}
		}
	}
}

// scalarText is a JSON scalar as text (numbers without exponent).
func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// samePerson tells whether patient (an id at server) is a record of the
// flow's EHR patient.
func (fl *flowRun) samePerson(server, patient string) bool {
	if patient == "" || !fl.cell.HasPatient {
		return false
	}
	if server == ServerEHR {
		return patient == fl.cell.Patient.EHRID
	}
	for _, r := range fl.cell.Patient.OtherRecords {
		if r == patient {
			return true
		}
	}
	return patient == fl.cell.Patient.OtherID
}

// authorizeRequest is one authorization request by the app.
type authorizeRequest struct {
	disc     discovery
	clientID string
	redirect string
	scope    string
	params   url.Values // aud, launch, resource, ...
	user     UserAction
	// patient is the id the user picks on a picker page.
	patient string
}

// authorizeResult is where the browser came back to the app.
type authorizeResult struct {
	code, errCode, errDesc string
	status                 int
	verifier               string
}

// authorize sends the user's browser to the authorization endpoint and
// plays the user on every page (login, picker, consent) until the AS sends
// the browser back to the app's redirect URI. The app checks state and the
// RFC 9207 iss of the response.
func (fl *flowRun) authorize(ctx context.Context, ar authorizeRequest, cfg oauthConfig) (authorizeResult, error) {
	var res authorizeResult
	state := randomState()
	res.verifier = newVerifier()
	u, err := url.Parse(cfg.authCodeURL(state, res.verifier))
	if err != nil {
		return res, cannot("the app could not build the authorization URL")
	}
	q := u.Query()
	for k, vs := range ar.params {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	u.RawQuery = q.Encode()
	fl.br.StopAt = []string{ar.redirect}
	page, err := fl.br.Get(ctx, u.String())
	loggedIn := false
	for range 10 {
		if err != nil {
			res.errCode, res.status = "unreachable", 0
			return res, nil
		}
		res.status = page.Status
		if page.Redirect != nil {
			back := page.Redirect.Query()
			res.status = int(fl.tr.last.Load())
			if iss := back.Get("iss"); iss != ar.disc.Issuer {
				return res, cannot("the authorization response carries iss %q, not the issuer %q the app discovered (RFC 9207); the app refuses it", clip(iss), ar.disc.Issuer)
			}
			if back.Get("state") != state {
				return res, cannot("the authorization response's state does not match the app's request; the app refuses it")
			}
			if e := back.Get("error"); e != "" {
				res.errCode, res.errDesc = e, back.Get("error_description")
				return res, nil
			}
			if res.code = back.Get("code"); res.code == "" {
				return res, cannot("the authorization response carries neither code nor error")
			}
			return res, nil
		}
		switch {
		case hasFormField(page, "password"):
			if loggedIn {
				// The login page again: the AS did not accept the login.
				res.errCode = "login_failed"
				return res, nil
			}
			loggedIn = true
			f, _ := page.FormWith("password")
			page, err = fl.br.Submit(ctx, f, browser.Submit{Set: map[string]string{"username": ar.user.Login, "password": ar.user.Password}})
		case hasFormField(page, "decision"):
			f, _ := page.FormWith("decision")
			check := map[string]bool{}
			for _, s := range ar.user.Untick {
				check["scope="+s] = false
			}
			decision := ar.user.Decision
			if decision == "" {
				decision = DecisionApprove
			}
			page, err = fl.br.Submit(ctx, f, browser.Submit{Check: check, Button: "decision=" + decision})
		case hasFormField(page, "encounter"):
			f, _ := page.FormWith("encounter")
			page, err = fl.br.Submit(ctx, f, browser.Submit{Button: "step=encounter"})
		case hasFormField(page, "patient"):
			if ar.patient == "" {
				return res, cannot("the AS shows a patient picker, but the flow's patient has no record to pick there")
			}
			f, _ := page.FormWith("patient")
			page, err = fl.br.Submit(ctx, f, browser.Submit{Set: map[string]string{"patient": ar.patient}, Button: "step=patient"})
		case page.Status >= 400:
			// An error page instead of a redirect: the AS could not send
			// the browser back safely (unknown client, bad redirect_uri,
			// an expired or foreign sign-in).
			res.errCode = "invalid_request"
			if page.Status >= 500 {
				res.errCode = "server_error"
			}
			return res, nil
		default:
			return res, cannot("the AS showed a page the user cannot act on (%q, status %d)", clip(page.Title), page.Status)
		}
	}
	return res, cannot("the authorization did not come back to the app after 10 pages")
}

func hasFormField(p *browser.Page, name string) bool {
	_, ok := p.FormWith(name)
	return ok
}

func clip(s string) string { return clipText(s) }
