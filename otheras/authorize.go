package otheras

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/ui"
)

// authRequest is a pending authorization request between pages.
type authRequest struct {
	authkit.Binding
	Flow        string            `json:"flow"`
	ClientID    string            `json:"client_id"`
	RedirectURI string            `json:"redirect_uri"`
	State       string            `json:"state"`
	Challenge   string            `json:"challenge"`
	Nonce       string            `json:"nonce"`
	Scopes      string            `json:"scopes"`      // grantable, refused ones included
	Refused     map[string]string `json:"refused"`     // scope -> reason
	Launch      bool              `json:"launch"`      // second launch with a launch-token
	LaunchUser  string            `json:"launch_user"` // the launch-token's user, when known here
	Username    string            `json:"username"`
	AuthTime    int64             `json:"auth_time"`
	PatientID   string            `json:"patient"`
	EHRIssuer   string            `json:"ehr_issuer"`
	EHRPatient  string            `json:"ehr_patient"`
	MatchNote   string            `json:"match_note"`
	Refusal     string            `json:"refusal"`
}

// flowOf is the request's trace flow: FlowHeader's, else a new one. The
// inbound recording is attributed to it.
func flowOf(ctx context.Context) (context.Context, string) {
	flow := trace.FlowFrom(ctx)
	if flow == "" {
		flow = "otheras-" + authkit.RandomString(9)
		ctx = trace.WithFlow(ctx, flow)
	}
	trace.Attribute(ctx, flow)
	return ctx, flow
}

// withFlow attributes a request to a known flow.
func withFlow(ctx context.Context, flow string) context.Context {
	if flow == "" {
		return ctx
	}
	trace.Attribute(ctx, flow)
	return trace.WithFlow(ctx, flow)
}

// handleAuthorize is the authorization endpoint (RFC 6749 §4.1.1, SMART
// App Launch 2.2), GET and POST. With launch=<launch-token> it resolves
// the context first (flows.md A.7).
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx, flow := flowOf(r.Context())
	ar, show, aerr := authkit.ReadAuthorize(r, s.clients)
	if show != nil {
		s.page.Show(w, r, show)
		return
	}
	form, client, redirect, state := ar.Form, ar.Client, ar.RedirectURI, ar.State
	fail := func(e *authkit.Error) {
		authkit.RedirectError(w, r, redirect, e, state, s.cfg.Issuer)
	}
	if aerr != nil {
		fail(aerr)
		return
	}
	if aud := form.Get("aud"); aud == "" || !authkit.SameBase(aud, s.cfg.FHIRBase) {
		fail(authkit.ErrInvalidRequest.With("aud must name this FHIR server"))
		return
	}
	requested, err := scope.Parse(form.Get("scope"))
	if err != nil {
		fail(authkit.ErrInvalidScope.With("scope is malformed"))
		return
	}
	if len(requested) == 0 {
		fail(authkit.ErrInvalidScope.With("scope is required"))
		return
	}
	if p := form.Get("prompt"); p != "" {
		if slices.Contains(strings.Fields(p), "none") {
			// sim keeps no remembered consent at OtherAS.
			fail(authkit.ErrInteractionRequired.With("this server always asks the user"))
			return
		}
	}
	launch := form.Get("launch")
	set := grantable(client, requested, launch != "")
	now := s.cfg.Now()
	sess, ok := s.sessions.Load(ctx, r)
	if !ok {
		sess = &authkit.Session{ID: authkit.RandomString(24)}
	}
	req := &authRequest{
		Binding: authkit.Binding{ID: authkit.RandomString(24), Session: sess.ID, CSRF: authkit.RandomString(24), Expires: now.Add(s.cfg.Lifetimes.Request)},
		Flow:    flow, ClientID: client.ID, RedirectURI: redirect, State: state, Challenge: form.Get("code_challenge"),
		Nonce: form.Get("nonce"), Scopes: set.String(), Refused: map[string]string{},
		Username: sess.Username, AuthTime: sess.AuthTime,
	}
	if slices.Contains(strings.Fields(form.Get("prompt")), "login") {
		req.Username = ""
	}
	if launch != "" {
		wantPatient := set.HasLevel(scope.Patient) || set.Has("launch/patient")
		lc, aerr := s.resolveLaunch(ctx, flow, client, launch, wantPatient)
		if aerr != nil {
			fail(aerr)
			return
		}
		req.Launch, req.EHRIssuer, req.EHRPatient = true, lc.Issuer, lc.EHRPatient
		req.PatientID, req.MatchNote, req.Refusal = lc.PatientID, lc.MatchNote, lc.Refusal
		// A patient who launched the app shares their own record: user/ and
		// system/ scopes would open every patient's data at Other.
		if u, err := s.cfg.Users.Lookup(ctx, lc.Sub); strings.Contains(lc.FHIRUser, "/Patient/") || err == nil && u.Patient {
			for _, sc := range set {
				if sc.IsResource() && sc.Level != scope.Patient {
					req.Refused[sc.Raw] = "the user is a patient, who may share only their own record"
					s.decide(flow, "scope refused", "refused "+sc.Raw+": the user is a patient", true)
				}
			}
		}
		if wantPatient && lc.PatientID == "" {
			for _, sc := range set {
				if sc.Raw == "launch/patient" || sc.IsResource() && sc.Level == scope.Patient {
					req.Refused[sc.Raw] = lc.Refusal
					s.decide(flow, "scope refused", "refused "+sc.Raw+": "+lc.Refusal, true)
				}
			}
		}
		if len(meaningful(offered(req))) == 0 {
			why := "no requested scope can be granted"
			if lc.Refusal != "" {
				why += ": " + lc.Refusal
			}
			s.decide(flow, "access denied", why, true)
			fail(authkit.ErrAccessDenied.With(why))
			return
		}
		// The user is recognised from the launch-token: no second login.
		// That recognition holds for this request only; it signs nobody in
		// to OtherAS (the session just binds the request to the browser).
		sess = &authkit.Session{ID: authkit.RandomString(24)}
		req.Session, req.Username = sess.ID, ""
		if u, err := s.cfg.Users.Lookup(ctx, lc.Sub); err == nil {
			req.LaunchUser = u.Username
			if !s.cfg.RequireLogin && !slices.Contains(strings.Fields(form.Get("prompt")), "login") {
				req.Username, req.AuthTime = u.Username, now.Unix()
			}
		}
	} else if len(set) == 0 {
		fail(authkit.ErrInvalidScope.With("no requested scope can be granted here"))
		return
	}
	if err := s.sessions.Save(ctx, sess); err != nil {
		s.logError(ctx, "save session", err)
		fail(authkit.ErrServerError)
		return
	}
	s.sessions.SetCookie(w, sess.ID)
	s.advance(w, r.WithContext(ctx), req)
}

var knownPlain = []string{"openid", "fhirUser", "profile", "offline_access", "online_access", "launch/patient"}

// grantable keeps the requested scopes this server may grant this client;
// the rest is dropped silently (SMART: never an error).
func grantable(c *authkit.Client, requested scope.Set, launch bool) scope.Set {
	limit := c.AllowedScopes()
	return requested.Filter(func(sc scope.Scope) bool {
		switch {
		case sc.IsResource():
			if sc.Level == scope.System {
				return false
			}
		case sc.Raw == "launch":
			if !launch {
				return false
			}
		case sc.Raw == "offline_access":
			if !c.HasGrant(authkit.GrantRefreshToken) {
				return false
			}
		case sc.Raw == "online_access":
			if requested.Has("offline_access") || !c.HasGrant(authkit.GrantRefreshToken) {
				return false
			}
		case slices.Contains(knownPlain, sc.Raw):
		default:
			return false
		}
		return limit == nil || limit.Covers(sc)
	})
}

// offered is what the consent page offers: the grantable scopes minus the
// refused ones, and patient scopes only with a patient.
func offered(req *authRequest) scope.Set {
	set, _ := scope.Parse(req.Scopes)
	return set.Filter(func(sc scope.Scope) bool {
		if _, refused := req.Refused[sc.Raw]; refused {
			return false
		}
		if req.PatientID == "" && (sc.Raw == "launch/patient" || sc.IsResource() && sc.Level == scope.Patient) {
			return false
		}
		return true
	})
}

// meaningful drops the context-only scopes, which give nothing alone.
func meaningful(set scope.Set) scope.Set {
	return set.Filter(func(sc scope.Scope) bool { return sc.Raw != "launch" && sc.Raw != "launch/patient" })
}

func (s *Server) pageURL(page string, req *authRequest) string {
	return s.url("/"+page) + "?req=" + url.QueryEscape(req.ID)
}

// advance moves a request to its next step: login, patient, consent.
func (s *Server) advance(w http.ResponseWriter, r *http.Request, req *authRequest) {
	ctx := r.Context()
	next := "consent"
	set, _ := scope.Parse(req.Scopes)
	switch {
	case req.Username == "":
		next = "login"
	case !req.Launch && req.PatientID == "" && (set.Has("launch/patient") || set.HasLevel(scope.Patient)):
		next = "pick"
	}
	if err := s.requests.Save(ctx, req); err != nil {
		s.logError(ctx, "save authorization request", err)
		authkit.RedirectError(w, r, req.RedirectURI, authkit.ErrServerError, req.State, s.cfg.Issuer)
		return
	}
	http.Redirect(w, r, s.pageURL(next, req), http.StatusSeeOther)
}

// pendingRequest opens the request named in ?req for a page (see
// authkit.PendingRequests.Open); ok false means an error page was shown.
func (s *Server) pendingRequest(w http.ResponseWriter, r *http.Request) (*authRequest, url.Values, bool) {
	req := new(authRequest)
	form, show := s.requests.Open(r, req)
	if req.Flow != "" {
		trace.Attribute(r.Context(), req.Flow)
	}
	if show != nil {
		s.page.Show(w, r, show)
		return nil, nil, false
	}
	return req, form, true
}

func (s *Server) appName(clientID string) string {
	if c, ok := s.clients.Get(clientID); ok && c.Name != "" {
		return c.Name
	}
	return clientID
}

// handleLogin shows and checks the login form (inputs username, password).
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	req, form, ok := s.pendingRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	page := ui.LoginPage{Common: s.page.Common("Sign in"), AppName: s.appName(req.ClientID), Hint: s.cfg.LoginHint}
	page.CSRF, page.Action = req.CSRF, s.pageURL("login", req)
	if form == nil {
		_ = s.page.Render(w, http.StatusOK, ui.PageLogin, page)
		return
	}
	username := form.Get("username")
	user, err := s.cfg.Users.Authenticate(ctx, username, form.Get("password"))
	if err != nil {
		page.Username, page.Error = username, "The username or password is not correct."
		_ = s.page.Render(w, http.StatusOK, ui.PageLogin, page)
		return
	}
	if req.LaunchUser != "" && user.Username != req.LaunchUser {
		// The app was launched by another user at the EHR.
		page.Username, page.Error = username, "Sign in as the user who opened the app in the EHR."
		_ = s.page.Render(w, http.StatusOK, ui.PageLogin, page)
		return
	}
	now := s.cfg.Now().Unix()
	sess := &authkit.Session{ID: authkit.RandomString(24), Username: user.Username, AuthTime: now}
	if err := s.sessions.Save(ctx, sess); err != nil {
		s.logError(ctx, "save session", err)
		s.page.Error(w, r, http.StatusInternalServerError, "Internal server error.", "Try again later.")
		return
	}
	s.sessions.SetCookie(w, sess.ID)
	req.Session, req.Username, req.AuthTime = sess.ID, user.Username, now
	s.advance(w, r, req)
}

// handlePick is the patient picker (field patient) of a standalone launch,
// over the Other directory.
func (s *Server) handlePick(w http.ResponseWriter, r *http.Request) {
	req, form, ok := s.pendingRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if req.Username == "" || req.Launch {
		s.advance(w, r, req)
		return
	}
	page := ui.PickerPage{Common: s.page.Common("Choose a patient"), AppName: s.appName(req.ClientID)}
	page.CSRF, page.Action = req.CSRF, s.pageURL("pick", req)
	if form != nil {
		if id := form.Get("patient"); id != "" {
			if p, err := s.cfg.Directory.Patient(ctx, id); err == nil {
				req.PatientID = p.ID
				s.advance(w, r, req)
				return
			}
			page.Error = "That patient was not found."
		} else {
			page.Error = "Choose a patient."
		}
	}
	page.Query = r.URL.Query().Get("q")
	pts, err := s.cfg.Directory.SearchPatients(ctx, page.Query, 25)
	if err != nil {
		s.logError(ctx, "search patients", err)
	}
	for _, p := range pts {
		page.Patients = append(page.Patients, ui.PickerOption{Value: p.ID, Label: p.Name, Detail: strings.TrimSpace(p.BirthDate + " " + p.Gender)})
	}
	_ = s.page.Render(w, http.StatusOK, ui.PagePicker, page)
}

// handleConsent shows every scope granted or refused (with the reason)
// and takes the decision (approve / deny).
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	req, form, ok := s.pendingRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if req.Username == "" {
		s.advance(w, r, req)
		return
	}
	offer := offered(req)
	if form != nil {
		s.requests.Delete(ctx, req.ID)
		fail := func(e *authkit.Error) {
			authkit.RedirectError(w, r, req.RedirectURI, e, req.State, s.cfg.Issuer)
		}
		switch form.Get("decision") {
		case "approve":
			chosen := map[string]bool{}
			for _, v := range form["scope"] {
				chosen[v] = true
			}
			granted := offer.Filter(func(sc scope.Scope) bool { return chosen[sc.Raw] })
			if len(meaningful(granted)) == 0 {
				s.decide(req.Flow, "consent", "the user approved no scope", true)
				fail(authkit.ErrAccessDenied.With("the user approved no scope"))
				return
			}
			s.decide(req.Flow, "consent", "the user approved "+granted.String(), false)
			s.issueCode(w, r, req, granted)
		case "deny":
			s.decide(req.Flow, "consent", "the user denied access", true)
			fail(authkit.ErrAccessDenied.With("the user denied access"))
		default:
			fail(authkit.ErrInvalidRequest.With("no decision"))
		}
		return
	}
	page := ui.ConsentPage{Common: s.page.Common("Allow access"), AppName: s.appName(req.ClientID), Server: s.cfg.FHIRBase}
	page.CSRF, page.Action = req.CSRF, s.pageURL("consent", req)
	if u, err := s.cfg.Users.Lookup(ctx, req.Username); err == nil {
		page.UserName = u.DisplayName
	}
	if req.PatientID != "" {
		if p, err := s.cfg.Directory.Patient(ctx, req.PatientID); err == nil {
			page.PatientName = p.Name + " (" + s.cfg.OrgName + " record " + p.ID + ")"
		}
	}
	if req.Launch {
		page.Notes = append(page.Notes, "Context from "+req.EHRIssuer+".")
		if req.EHRPatient != "" {
			page.Notes = append(page.Notes, "Patient in the EHR: "+req.EHRPatient+".")
		}
		switch {
		case req.MatchNote != "":
			page.Notes = append(page.Notes, "Found in "+s.cfg.OrgName+"'s directory: "+req.MatchNote+".")
		case req.Refusal != "":
			page.Notes = append(page.Notes, "No patient here: "+req.Refusal+".")
		}
	}
	set, _ := scope.Parse(req.Scopes)
	for _, sc := range set {
		cs := ui.ConsentScope{Value: sc.Raw, Description: Describe(sc)}
		if reason, refused := req.Refused[sc.Raw]; refused {
			cs.Disabled, cs.Reason = true, reason
		} else if offer.Has(sc.Raw) {
			cs.Checked = true
		} else {
			continue
		}
		page.Scopes = append(page.Scopes, cs)
	}
	_ = s.page.Render(w, http.StatusOK, ui.PageConsent, page)
}

// Describe says what a scope lets an app do, in plain words.
func Describe(sc scope.Scope) string {
	switch sc.Raw {
	case "openid":
		return "Know who you are"
	case "fhirUser":
		return "See your user record"
	case "profile":
		return "See your name"
	case "launch":
		return "Open with the context passed on by your EHR"
	case "launch/patient":
		return "Know which patient is selected"
	case "offline_access":
		return "Keep access after you sign out"
	case "online_access":
		return "Keep access while you are signed in"
	}
	if !sc.IsResource() {
		return "Use the permission " + sc.Raw
	}
	var verbs []string
	for _, p := range []struct {
		bit  scope.Perm
		verb string
	}{{scope.Create, "create"}, {scope.Read, "read"}, {scope.Update, "update"}, {scope.Delete, "delete"}, {scope.Search, "search"}} {
		if sc.Perms&p.bit != 0 {
			verbs = append(verbs, p.verb)
		}
	}
	what := sc.Resource + " records"
	if sc.Resource == "*" {
		what = "all kinds of records"
	}
	whose := map[scope.Level]string{scope.Patient: "of the selected patient", scope.User: "you can access", scope.System: "on this server"}[sc.Level]
	text := strings.Join(verbs, ", ") + " " + what + " " + whose
	return strings.ToUpper(text[:1]) + text[1:]
}
