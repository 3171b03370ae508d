package ehr

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
	"github.com/smart-sim/sim/ui"
)

// authRequest is a pending authorization request between pages.
type authRequest struct {
	authkit.Binding
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	State         string   `json:"state"`
	Challenge     string   `json:"challenge"`
	Nonce         string   `json:"nonce"`
	LoginHint     string   `json:"login_hint"`
	Prompt        string   `json:"prompt"`
	Scopes        string   `json:"scopes"` // grantable candidates
	LaunchAud     []string `json:"launch_aud"`
	TokenAud      []string `json:"token_aud,omitempty"`
	EHRLaunch     bool     `json:"ehr_launch"`
	Username      string   `json:"username"`
	AuthTime      int64    `json:"auth_time"`
	PatientID     string   `json:"patient"`
	EncounterID   string   `json:"encounter"`
	EncounterDone bool     `json:"encounter_done"`
}

type launchContext struct {
	ClientID  string `json:"client_id"`
	Patient   string `json:"patient"`
	User      string `json:"user"`
	Encounter string `json:"encounter"`
}

// looksLikeLaunchToken reports a JWT whose header says launch-token+jwt.
func looksLikeLaunchToken(v string) bool {
	if strings.Count(v, ".") != 2 {
		return false
	}
	h, _, _ := strings.Cut(v, ".")
	b, err := decodeSegment(h)
	if err != nil {
		return false
	}
	var hdr struct {
		Typ string `json:"typ"`
	}
	return json.Unmarshal(b, &hdr) == nil && strings.EqualFold(hdr.Typ, authkit.TypLaunchToken)
}

// handleAuthorize is the authorization endpoint (RFC 6749 §4.1.1, SMART
// App Launch 2.2 "Obtain authorization code"), GET and POST.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, show, aerr := authkit.ReadAuthorize(r, s.clients, "resource")
	if show != nil {
		s.page.Show(w, r, show)
		return
	}
	form, client, redirect, state, challenge := ar.Form, ar.Client, ar.RedirectURI, ar.State, ar.Challenge
	fail := func(e *authkit.Error) {
		authkit.RedirectError(w, r, redirect, e, state, s.cfg.Issuer)
	}
	if aerr != nil {
		fail(aerr)
		return
	}
	tokenAud, aerr := s.tokenAudience(form.Get("aud"), form["resource"])
	if aerr != nil {
		fail(aerr)
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
	launchAud, aerr := s.launchAudience(form["resource"])
	if aerr != nil {
		fail(aerr)
		return
	}
	prompt := form.Get("prompt")
	prompts := strings.Fields(prompt)
	for _, p := range prompts {
		if p != "none" && p != "login" && p != "consent" {
			fail(authkit.ErrInvalidRequest.With("unsupported prompt value"))
			return
		}
	}
	if slices.Contains(prompts, "none") && len(prompts) > 1 {
		fail(authkit.ErrInvalidRequest.With("prompt=none cannot be combined"))
		return
	}
	var lc *launchContext
	if l := form.Get("launch"); l != "" {
		if looksLikeLaunchToken(l) {
			fail(authkit.ErrInvalidRequest.With("a launch-token is not an EHR launch"))
			return
		}
		b, err := s.ephemeral.Take(ctx, bucketLaunch, authkit.Hash(l))
		if err != nil {
			fail(authkit.ErrInvalidRequest.With("launch is unknown, used or expired"))
			return
		}
		lc = new(launchContext)
		if json.Unmarshal(b, lc) != nil || lc.ClientID != client.ID {
			fail(authkit.ErrInvalidRequest.With("launch was created for another app"))
			return
		}
	}
	now := s.cfg.Now()
	sess, ok := s.sessions.Load(ctx, r)
	if !ok {
		sess = &authkit.Session{ID: authkit.RandomString(24)}
	}
	req := &authRequest{
		Binding:  authkit.Binding{ID: authkit.RandomString(24), Session: sess.ID, CSRF: authkit.RandomString(24), Expires: now.Add(s.cfg.Lifetimes.Request)},
		ClientID: client.ID, RedirectURI: redirect, State: state, Challenge: challenge,
		Nonce: form.Get("nonce"), LoginHint: form.Get("login_hint"), Prompt: prompt,
		LaunchAud: launchAud, TokenAud: tokenAud,
	}
	req.Scopes = s.grantable(client, requested, lc != nil, len(launchAud) > 0).String()
	switch {
	case lc != nil:
		// The EHR user who launched the app is recognised for this one
		// authorization request only: the launch signs nobody in to the
		// browser session (sess stays whatever it was, possibly anonymous,
		// and only binds the request to this browser).
		req.EHRLaunch = true
		req.Username, req.AuthTime = lc.User, now.Unix()
		req.PatientID, req.EncounterID, req.EncounterDone = lc.Patient, lc.Encounter, true
	case sess.Username != "":
		req.Username, req.AuthTime = sess.Username, sess.AuthTime
	}
	if slices.Contains(prompts, "login") && !req.EHRLaunch {
		req.Username = ""
	}
	if hint := form.Get("id_token_hint"); hint != "" {
		sub, ok := s.idTokenHintSubject(hint, client.ID)
		if !ok || (req.Username != "" && sub != req.Username) {
			if slices.Contains(prompts, "none") {
				fail(authkit.ErrLoginRequired.With("the signed-in user is not the id_token_hint subject"))
				return
			}
			req.Username = ""
			req.LoginHint = sub
		}
	}
	if err := s.sessions.Save(ctx, sess); err != nil {
		s.logError(ctx, "save session", err)
		fail(authkit.ErrServerError)
		return
	}
	s.sessions.SetCookie(w, sess.ID)
	if err := s.requests.Save(ctx, req); err != nil {
		s.logError(ctx, "save authorization request", err)
		fail(authkit.ErrServerError)
		return
	}
	s.advance(w, r, req)
}

// governed returns the governed server whose FHIR base is base.
func (s *Server) governed(base string) (Governed, bool) {
	for _, g := range s.cfg.Governed {
		if authkit.SameBase(base, g.FHIRBase) {
			return g, true
		}
	}
	return Governed{}, false
}

// tokenAudience is the access token's aud: the FHIR servers this AS
// governs that the request names, by aud (SMART) or by RFC 8707 resource
// parameters (direction C), in the order named. aud may be left out when
// a resource names one of them; when given it must name one. Resources
// naming a partner's server are the launch-token's business
// (launchAudience); any other resource is invalid_target there.
func (s *Server) tokenAudience(aud string, resources []string) ([]string, *authkit.Error) {
	var out []string
	add := func(base string) {
		base = strings.TrimSuffix(base, "/")
		if !slices.Contains(out, base) {
			out = append(out, base)
		}
	}
	if aud != "" {
		_, gov := s.governed(aud)
		if !authkit.SameBase(aud, s.cfg.FHIRBase) && !gov {
			return nil, authkit.ErrInvalidRequest.With("aud does not name this FHIR server")
		}
		add(aud)
	}
	for _, res := range resources {
		if _, gov := s.governed(res); gov || authkit.SameBase(res, s.cfg.FHIRBase) {
			add(res)
		}
	}
	if len(out) == 0 {
		return nil, authkit.ErrInvalidRequest.With("aud is required")
	}
	return out, nil
}

// launchAudience maps RFC 8707 resource parameters to partner issuers
// (flows.md Decisions). No resource: every partner.
func (s *Server) launchAudience(resources []string) ([]string, *authkit.Error) {
	if len(resources) == 0 {
		var all []string
		for _, p := range s.cfg.Partners {
			all = append(all, p.Issuer)
		}
		return all, nil
	}
	var aud []string
	for _, res := range resources {
		if _, gov := s.governed(res); gov || authkit.SameBase(res, s.cfg.FHIRBase) {
			continue
		}
		found := false
		for _, p := range s.cfg.Partners {
			if authkit.SameBase(res, p.FHIRBase) {
				if !slices.Contains(aud, p.Issuer) {
					aud = append(aud, p.Issuer)
				}
				found = true
			}
		}
		if !found {
			return nil, authkit.ErrInvalidTarget.With("resource names a server this EHR neither governs nor has a partnership with")
		}
	}
	return aud, nil
}

var knownPlain = []string{"openid", "fhirUser", "profile", "offline_access", "online_access", "launch/patient", "launch/encounter"}

// grantable keeps the requested scopes this server may grant this client;
// everything else is dropped silently (SMART: never an error).
func (s *Server) grantable(c *authkit.Client, requested scope.Set, ehrLaunch, launchTokenAud bool) scope.Set {
	limit := c.AllowedScopes()
	out := requested.Filter(func(sc scope.Scope) bool {
		switch {
		case sc.IsResource():
			if sc.Level == scope.System {
				return false
			}
		case sc.Raw == "launch":
			if !ehrLaunch {
				return false
			}
		case sc.Raw == "launch-token":
			if !launchTokenAud {
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
	return out
}

// forPatientUser narrows a grant to what a patient (portal) user may have:
// no user/ or system/ scopes (dropped, see the package doc), and without a
// Patient record of their own no patient data or patient context either.
func forPatientUser(set scope.Set, ownPatient string) scope.Set {
	return set.Filter(func(sc scope.Scope) bool {
		if sc.IsResource() {
			return sc.Level == scope.Patient && ownPatient != ""
		}
		return sc.Raw != "launch/patient" || ownPatient != ""
	})
}

// finalScopes is what the consent page offers once the context is known.
func finalScopes(req *authRequest) scope.Set {
	set, _ := scope.Parse(req.Scopes)
	return set.Filter(func(sc scope.Scope) bool {
		if req.PatientID == "" && (sc.Raw == "launch/patient" || sc.IsResource() && sc.Level == scope.Patient) {
			return false
		}
		if req.EncounterID == "" && sc.Raw == "launch/encounter" {
			return false
		}
		return true
	})
}

func (s *Server) pageURL(page string, req *authRequest) string {
	return s.url("/"+page) + "?req=" + url.QueryEscape(req.ID)
}

// advance moves a request to its next step: login, patient, encounter,
// consent, or (prompt=none) straight to the code.
func (s *Server) advance(w http.ResponseWriter, r *http.Request, req *authRequest) {
	ctx := r.Context()
	none := req.Prompt == "none"
	fail := func(e *authkit.Error) {
		s.requests.Delete(ctx, req.ID)
		authkit.RedirectError(w, r, req.RedirectURI, e, req.State, s.cfg.Issuer)
	}
	if req.Username == "" {
		if none {
			fail(authkit.ErrLoginRequired.With("no signed-in user"))
			return
		}
		http.Redirect(w, r, s.pageURL("login", req), http.StatusSeeOther)
		return
	}
	user, err := s.cfg.Users.Lookup(ctx, req.Username)
	if err != nil {
		fail(authkit.ErrLoginRequired.With("the signed-in user is unknown"))
		return
	}
	set, _ := scope.Parse(req.Scopes)
	if user.Kind == PatientUser {
		// A patient user only ever sees their own record.
		if req.PatientID != "" && req.PatientID != user.PatientID {
			fail(authkit.ErrAccessDenied.With("a patient user can only open their own record"))
			return
		}
		req.PatientID = user.PatientID
		set = forPatientUser(set, user.PatientID)
		req.Scopes = set.String()
	}
	if req.PatientID == "" && set.Has("launch/patient") {
		if user.Kind == PatientUser && user.PatientID != "" {
			req.PatientID = user.PatientID
		} else if none {
			fail(authkit.ErrInteractionRequired.With("a patient must be chosen"))
			return
		} else {
			_ = s.requests.Save(ctx, req)
			http.Redirect(w, r, s.pageURL("pick", req), http.StatusSeeOther)
			return
		}
	}
	if req.PatientID == "" && user.Kind == PatientUser && user.PatientID != "" && set.HasLevel(scope.Patient) {
		req.PatientID = user.PatientID
	}
	if !req.EncounterDone && req.PatientID != "" && set.Has("launch/encounter") {
		encs, err := s.cfg.Patients.Encounters(ctx, req.PatientID)
		if err != nil {
			s.logError(ctx, "list encounters", err)
			fail(authkit.ErrServerError)
			return
		}
		if len(encs) > 0 {
			if none {
				fail(authkit.ErrInteractionRequired.With("an encounter must be chosen"))
				return
			}
			_ = s.requests.Save(ctx, req)
			http.Redirect(w, r, s.pageURL("pick", req)+"&step=encounter", http.StatusSeeOther)
			return
		}
		req.EncounterDone = true
	}
	if none {
		s.consentMu.Lock()
		prior, ok := s.consents[req.Username+"\x00"+req.ClientID]
		s.consentMu.Unlock()
		priorSet, _ := scope.Parse(prior)
		if !ok || !finalScopes(req).Subset(priorSet) {
			fail(authkit.ErrConsentRequired.With("the user has not approved these scopes"))
			return
		}
		s.issueCode(w, r, req, finalScopes(req))
		return
	}
	if err := s.requests.Save(ctx, req); err != nil {
		s.logError(ctx, "save authorization request", err)
		fail(authkit.ErrServerError)
		return
	}
	http.Redirect(w, r, s.pageURL("consent", req), http.StatusSeeOther)
}

// pendingRequest opens the request named in ?req for a page (see
// authkit.PendingRequests.Open); ok false means an error page was shown.
func (s *Server) pendingRequest(w http.ResponseWriter, r *http.Request) (*authRequest, url.Values, bool) {
	req := new(authRequest)
	form, show := s.requests.Open(r, req)
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
	page := ui.LoginPage{Common: s.page.Common("Sign in"), AppName: s.appName(req.ClientID), Username: req.LoginHint, Hint: s.cfg.LoginHint}
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
	now := s.cfg.Now().Unix()
	// A new session id on sign-in (no session fixation).
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

// handlePick is the patient picker (field patient) and encounter choice
// (field encounter) of a standalone launch.
func (s *Server) handlePick(w http.ResponseWriter, r *http.Request) {
	req, form, ok := s.pendingRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	page := ui.PickerPage{Common: s.page.Common("Choose a patient"), AppName: s.appName(req.ClientID)}
	page.CSRF, page.Action = req.CSRF, s.pageURL("pick", req)
	if req.Username == "" {
		http.Redirect(w, r, s.pageURL("login", req), http.StatusSeeOther)
		return
	}
	if form != nil {
		switch {
		case form.Get("encounter") != "" && req.PatientID != "":
			encs, err := s.cfg.Patients.Encounters(ctx, req.PatientID)
			if err == nil && slices.ContainsFunc(encs, func(e Encounter) bool { return e.ID == form.Get("encounter") }) {
				req.EncounterID, req.EncounterDone = form.Get("encounter"), true
				s.advance(w, r, req)
				return
			}
			page.Error = "Choose one of the listed encounters."
		case form.Get("patient") != "" && req.PatientID == "":
			p, err := s.cfg.Patients.Patient(ctx, form.Get("patient"))
			if err == nil {
				req.PatientID = p.ID
				s.advance(w, r, req)
				return
			}
			page.Error = "That patient was not found."
		default:
			page.Error = "Choose a patient."
		}
	}
	if req.PatientID != "" {
		page.Title = "Choose an encounter"
		page.Patient = req.PatientID
		encs, err := s.cfg.Patients.Encounters(ctx, req.PatientID)
		if err != nil {
			s.logError(ctx, "list encounters", err)
		}
		for _, e := range encs {
			page.Encounters = append(page.Encounters, ui.PickerOption{Value: e.ID, Label: e.Label})
		}
		_ = s.page.Render(w, http.StatusOK, ui.PagePicker, page)
		return
	}
	page.Query = r.URL.Query().Get("q")
	pts, err := s.cfg.Patients.SearchPatients(ctx, page.Query, 25)
	if err != nil {
		s.logError(ctx, "search patients", err)
	}
	for _, p := range pts {
		page.Patients = append(page.Patients, ui.PickerOption{Value: p.ID, Label: p.Name, Detail: strings.TrimSpace(p.BirthDate + " " + p.Gender + " " + p.MRN)})
	}
	_ = s.page.Render(w, http.StatusOK, ui.PagePicker, page)
}

// handleConsent shows the asks with a checkbox per scope and takes the
// decision (approve / deny).
func (s *Server) handleConsent(w http.ResponseWriter, r *http.Request) {
	req, form, ok := s.pendingRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if req.Username == "" {
		http.Redirect(w, r, s.pageURL("login", req), http.StatusSeeOther)
		return
	}
	offered := finalScopes(req)
	if form != nil {
		s.requests.Delete(ctx, req.ID)
		switch form.Get("decision") {
		case "approve":
			chosen := map[string]bool{}
			for _, v := range form["scope"] {
				chosen[v] = true
			}
			granted := offered.Filter(func(sc scope.Scope) bool { return chosen[sc.Raw] })
			s.consentMu.Lock()
			s.consents[req.Username+"\x00"+req.ClientID] = granted.String()
			s.consentMu.Unlock()
			s.issueCode(w, r, req, granted)
		case "deny":
			authkit.RedirectError(w, r, req.RedirectURI, authkit.ErrAccessDenied.With("the user denied access"), req.State, s.cfg.Issuer)
		default:
			authkit.RedirectError(w, r, req.RedirectURI, authkit.ErrInvalidRequest.With("no decision"), req.State, s.cfg.Issuer)
		}
		return
	}
	page := ui.ConsentPage{Common: s.page.Common("Allow access"), AppName: s.appName(req.ClientID), Server: s.cfg.FHIRBase}
	page.CSRF, page.Action = req.CSRF, s.pageURL("consent", req)
	if u, err := s.cfg.Users.Lookup(ctx, req.Username); err == nil {
		page.UserName = u.DisplayName
	}
	if req.PatientID != "" {
		if p, err := s.cfg.Patients.Patient(ctx, req.PatientID); err == nil {
			page.PatientName = p.Name
		}
	}
	for _, sc := range offered {
		desc := Describe(sc)
		if sc.Raw == "launch-token" {
			if names := s.partnerNames(req.LaunchAud); len(names) > 0 {
				desc = "Pass this patient and user context to " + strings.Join(names, ", ")
				page.Notes = append(page.Notes, "The patient and user context will be passed to: "+strings.Join(names, ", ")+".")
			}
		}
		page.Scopes = append(page.Scopes, ui.ConsentScope{Value: sc.Raw, Description: desc, Checked: true})
	}
	if others := s.governedNames(req.TokenAud); len(others) > 0 {
		page.Server = strings.Join(req.TokenAud, ", ")
		page.Notes = append(page.Notes, s.cfg.OrgName+" grants this access also to data it does not hold: the permissions below apply at "+
			strings.Join(others, ", ")+" too, decided by "+s.cfg.OrgName+" alone.")
	}
	if len(offered) == 0 {
		page.Notes = append(page.Notes, "The app asked for nothing this server can grant.")
	}
	_ = s.page.Render(w, http.StatusOK, ui.PageConsent, page)
}

// governedNames names the governed servers among aud: "Org (base)".
func (s *Server) governedNames(aud []string) []string {
	var out []string
	for _, a := range aud {
		if g, ok := s.governed(a); ok {
			name := g.FHIRBase
			if g.Name != "" {
				name = g.Name + " (" + g.FHIRBase + ")"
			}
			out = append(out, name)
		}
	}
	return out
}

// partnerNames names the organisations behind launch-token audiences: the
// Others entry whose FHIR base the partner guards, with that base, else
// the partner issuer.
func (s *Server) partnerNames(aud []string) []string {
	var out []string
	for _, iss := range aud {
		name := iss
		for _, p := range s.cfg.Partners {
			if p.Issuer != iss {
				continue
			}
			for _, o := range s.cfg.Others {
				if authkit.SameBase(o.FHIRBase, p.FHIRBase) && o.Name != "" {
					name = o.Name + " (" + p.FHIRBase + ")"
				}
			}
		}
		out = append(out, name)
	}
	return out
}

// codeRecord is what an authorization code stands for.
type codeRecord struct {
	grantData
	RedirectURI string `json:"redirect_uri"`
	Challenge   string `json:"challenge"`
}

func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req *authRequest, granted scope.Set) {
	ctx := r.Context()
	rec := codeRecord{
		grantData: grantData{
			ClientID: req.ClientID, Username: req.Username, Scopes: granted.String(),
			PatientID: req.PatientID, EncounterID: req.EncounterID, Nonce: req.Nonce,
			AuthTime: req.AuthTime, LaunchAud: req.LaunchAud, EHRLaunch: req.EHRLaunch,
			AudRoles: s.audRoles(req.TokenAud),
		},
		RedirectURI: req.RedirectURI, Challenge: req.Challenge,
	}
	code, err := s.codes.Issue(ctx, rec)
	if err != nil {
		s.logError(ctx, "store code", err)
		authkit.RedirectError(w, r, req.RedirectURI, authkit.ErrServerError, req.State, s.cfg.Issuer)
		return
	}
	s.requests.Delete(ctx, req.ID)
	q := url.Values{"code": {code}, "iss": {s.cfg.Issuer}}
	if req.State != "" {
		q.Set("state", req.State)
	}
	authkit.Redirect(w, r, req.RedirectURI, q)
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
		return "Open in the context of this EHR session"
	case "launch/patient":
		return "Know which patient is selected"
	case "launch/encounter":
		return "Know which encounter is selected"
	case "offline_access":
		return "Keep access after you sign out"
	case "online_access":
		return "Keep access while you are signed in"
	case "launch-token":
		return "Pass this patient and user context to a partner organisation's server"
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
	if sc.Query != nil {
		text += " (only where " + sc.Query.Encode() + ")"
	}
	return strings.ToUpper(text[:1]) + text[1:]
}

var errHint = errors.New("bad id_token_hint")

// idTokenHintSubject returns the sub of an id_token this server issued to
// clientID (expired ones are accepted, as OIDC allows).
func (s *Server) idTokenHintSubject(hint, clientID string) (string, bool) {
	var c authkit.IDClaims
	v, err := s.signer.Verify(hint, &c)
	if err != nil || v.Type == authkit.TypAccess || v.Type == authkit.TypLaunchToken || c.Iss != s.cfg.Issuer || c.Aud != clientID {
		return "", false
	}
	return c.Sub, true
}
