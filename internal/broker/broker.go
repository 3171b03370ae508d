package broker

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/trace"
)

// Upstream is an authorization server the broker is a client of.
type Upstream struct {
	Issuer       string // checked against iss on every authorization response
	AuthorizeURL string
	TokenURL     string
	FHIRBase     string // the server its tokens are for (aud / resource)
	ClientID     string // the broker's client at this AS
	ClientSecret string // client_secret_basic
}

// Client is an app registered at the broker.
type Client struct {
	ID           string
	Name         string
	Secret       string // "" = public client (PKCE only)
	RedirectURIs []string
}

// Config configures a Server.
type Config struct {
	Issuer  string // e.g. {origin}/broker
	EHR     Upstream
	Other   Upstream
	Clients []Client
	// HTTPClient makes the calls to the upstream token endpoints.
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// Server is the broker AS.
type Server struct {
	cfg     Config
	store   *authkit.MemStore
	clients map[string]Client
}

// Buckets of the in-memory store.
const (
	bucketPending = "pending" // by the upstream leg's state
	bucketCode    = "code"
)

const (
	pendingLife = 15 * time.Minute
	codeLife    = 60 * time.Second
)

// New builds a broker.
func New(cfg Config) (*Server, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	var errs []error
	for name, v := range map[string]string{"Issuer": cfg.Issuer, "EHR.AuthorizeURL": cfg.EHR.AuthorizeURL, "EHR.TokenURL": cfg.EHR.TokenURL,
		"Other.AuthorizeURL": cfg.Other.AuthorizeURL, "Other.TokenURL": cfg.Other.TokenURL, "EHR.FHIRBase": cfg.EHR.FHIRBase, "Other.FHIRBase": cfg.Other.FHIRBase} {
		if u, err := url.Parse(v); err != nil || !u.IsAbs() || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an absolute URL", name))
		}
	}
	if cfg.EHR.ClientID == "" || cfg.Other.ClientID == "" {
		errs = append(errs, errors.New("the broker needs a client_id at both ASes"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("broker config: %w", errors.Join(errs...))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{cfg: cfg, store: authkit.NewMemStore(cfg.Now), clients: map[string]Client{}}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = c
	}
	return s, nil
}

// CallbackURL is the redirect URI the broker registers at both ASes.
func (s *Server) CallbackURL() string { return s.cfg.Issuer + "/callback" }

// Issuer is the broker's issuer.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// Mount registers the broker's routes.
func (s *Server) Mount(mux *http.ServeMux) {
	base := pathOf(s.cfg.Issuer)
	mux.HandleFunc("GET "+base+"/.well-known/smart-configuration", s.handleDiscovery)
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc(base+"/authorize", s.handleAuthorize)
	mux.HandleFunc("GET "+base+"/callback", s.handleCallback)
	mux.HandleFunc(base+"/token", s.handleToken)
}

func pathOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// CapabilityBrokered marks the broker's discovery document.
const CapabilityBrokered = "sim-brokered-tokens"

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	doc := map[string]any{
		"issuer":                                         s.cfg.Issuer,
		"authorization_endpoint":                         s.cfg.Issuer + "/authorize",
		"token_endpoint":                                 s.cfg.Issuer + "/token",
		"response_types_supported":                       []string{"code"},
		"grant_types_supported":                          []string{authkit.GrantAuthorizationCode},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{authkit.AuthNone, authkit.AuthSecretBasic, authkit.AuthSecretPost},
		"capabilities":                                   []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric", "context-ehr-patient", "context-standalone-patient", "permission-patient", "permission-user", "permission-v2", CapabilityBrokered},
		"authorization_response_iss_parameter_supported": true,
		"brokered_resources":                             []string{s.cfg.EHR.FHIRBase, s.cfg.Other.FHIRBase},
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_ = json.NewEncoder(w).Encode(doc)
}

// pending is one brokered authorization between its legs.
type pending struct {
	Flow        string          `json:"flow"`
	ClientID    string          `json:"client_id"`
	RedirectURI string          `json:"redirect_uri"`
	State       string          `json:"state"`
	Challenge   string          `json:"challenge"`
	Scope       string          `json:"scope"`
	Leg         string          `json:"leg"` // "ehr" or "other"
	Verifier    string          `json:"verifier"`
	EHRToken    json.RawMessage `json:"ehr_token,omitempty"`
}

// issued is what a broker code stands for.
type issued struct {
	ClientID    string         `json:"client_id"`
	RedirectURI string         `json:"redirect_uri"`
	Challenge   string         `json:"challenge"`
	Response    map[string]any `json:"response"`
}

func (s *Server) errorPage(w http.ResponseWriter, status int, msg string) {
	authkit.NoStore(w)
	http.Error(w, msg, status)
}

// handleAuthorize is the broker's authorization endpoint (RFC 6749
// §4.1.1): it checks the app's request and sends the browser on to the
// EHR AS.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Use GET or POST.")
		return
	}
	form, err := authkit.ParseForm(r, true)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "The authorization request is malformed.")
		return
	}
	c, ok := s.clients[form.Get("client_id")]
	if !ok {
		s.errorPage(w, http.StatusBadRequest, "The app's client_id is not registered at the broker.")
		return
	}
	redirect := form.Get("redirect_uri")
	if redirect == "" || !slices.Contains(c.RedirectURIs, redirect) {
		s.errorPage(w, http.StatusBadRequest, "The redirect_uri does not exactly match one registered for this app.")
		return
	}
	state := form.Get("state")
	fail := func(e *authkit.Error) { authkit.RedirectError(w, r, redirect, e, state, s.cfg.Issuer) }
	if form.Get("response_type") != "code" {
		fail(authkit.ErrUnsupportedRespType.With("only response_type=code is supported"))
		return
	}
	if form.Get("code_challenge_method") != "S256" || !authkit.ValidChallenge(form.Get("code_challenge")) {
		fail(authkit.ErrInvalidRequest.With("PKCE with code_challenge_method=S256 is required"))
		return
	}
	scope := strings.Join(strings.Fields(form.Get("scope")), " ")
	if scope == "" || len(scope) > 2048 {
		fail(authkit.ErrInvalidScope.With("scope is required"))
		return
	}
	ctx := r.Context()
	flow := trace.FlowFrom(ctx)
	if flow == "" {
		flow = "broker-" + authkit.RandomString(9)
	}
	trace.Attribute(ctx, flow)
	p := pending{Flow: flow, ClientID: c.ID, RedirectURI: redirect, State: state, Challenge: form.Get("code_challenge"), Scope: scope}
	ehrScope := scope
	if !slices.Contains(strings.Fields(scope), "launch-token") {
		ehrScope += " launch-token"
	}
	q := url.Values{"aud": {s.cfg.EHR.FHIRBase}, "resource": {s.cfg.Other.FHIRBase}, "scope": {ehrScope}}
	if l := form.Get("launch"); l != "" {
		q.Set("launch", l)
	}
	s.toUpstream(w, r, &p, "ehr", q, fail)
}

// toUpstream saves p for leg and redirects the browser to that AS.
func (s *Server) toUpstream(w http.ResponseWriter, r *http.Request, p *pending, leg string, q url.Values, fail func(*authkit.Error)) {
	up := s.upstream(leg)
	p.Leg, p.Verifier = leg, authkit.RandomString(48)
	key := authkit.RandomString(24)
	b, _ := json.Marshal(p)
	if err := s.store.Put(r.Context(), bucketPending, key, b, s.cfg.Now().Add(pendingLife)); err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "save pending authorization", "err", err)
		fail(authkit.ErrServerError)
		return
	}
	q.Set("response_type", "code")
	q.Set("client_id", up.ClientID)
	q.Set("redirect_uri", s.CallbackURL())
	q.Set("state", key)
	q.Set("code_challenge", authkit.S256(p.Verifier))
	q.Set("code_challenge_method", "S256")
	authkit.Redirect(w, r, up.AuthorizeURL, q)
}

func (s *Server) upstream(leg string) Upstream {
	if leg == "ehr" {
		return s.cfg.EHR
	}
	return s.cfg.Other
}

// otherScope is what the broker asks OtherAS for: the app's scopes
// without those only the EHR can give.
func otherScope(scope string) string {
	var out []string
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "launch-token", "offline_access", "online_access", "launch/encounter":
			continue
		}
		out = append(out, sc)
	}
	return strings.Join(out, " ")
}

// handleCallback receives each AS's authorization response (RFC 6749
// §4.1.2, RFC 9207 iss checked).
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// A response parameter may appear once (RFC 6749 §3.1): with two iss
	// or a malformed one dropped, the iss check below would see only
	// what the lenient parser kept. Such a response ends the flow; the
	// lenient reading only finds which flow.
	q, perr := authkit.ParseValues(r.URL.RawQuery)
	if perr != nil {
		q = r.URL.Query()
	}
	b, err := s.store.Take(ctx, bucketPending, q.Get("state"))
	var p pending
	if err != nil || json.Unmarshal(b, &p) != nil {
		s.errorPage(w, http.StatusBadRequest, "This sign-in has expired or was already completed. Start again from the app.")
		return
	}
	trace.Attribute(ctx, p.Flow)
	ctx = trace.WithFlow(ctx, p.Flow)
	fail := func(e *authkit.Error) { authkit.RedirectError(w, r, p.RedirectURI, e, p.State, s.cfg.Issuer) }
	up := s.upstream(p.Leg)
	if perr != nil {
		fail(authkit.ErrInvalidRequest.With("an authorization server behind the broker sent a malformed response"))
		return
	}
	if q.Get("iss") != up.Issuer {
		// A response from another AS than the one this leg went to: a
		// mix-up attempt (RFC 9700 §4.4). Stop.
		fail(authkit.ErrAccessDenied.With("the authorization response came from an unexpected issuer"))
		return
	}
	var tok map[string]any
	var upErr *authkit.Error
	if e := q.Get("error"); e != "" {
		upErr = &authkit.Error{Code: e, Description: q.Get("error_description")}
	} else {
		tok, upErr = s.exchange(ctx, up, q.Get("code"), p.Verifier)
	}
	if p.Leg == "ehr" {
		if upErr != nil {
			fail(upErr)
			return
		}
		lt, _ := tok["launch_token"].(string)
		p.EHRToken, _ = json.Marshal(tok)
		if lt == "" {
			s.finish(w, r, &p, nil, &authkit.Error{Code: "invalid_request", Description: "the EHR did not grant launch-token: no context to pass to the other server"})
			return
		}
		next := url.Values{"launch": {lt}, "aud": {s.cfg.Other.FHIRBase}, "scope": {otherScope(p.Scope)}}
		s.toUpstream(w, r.WithContext(ctx), &p, "other", next, fail)
		return
	}
	s.finish(w, r, &p, tok, upErr)
}

// finish issues the broker's own code for the combined response.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, p *pending, other map[string]any, otherErr *authkit.Error) {
	ctx := r.Context()
	resp := map[string]any{}
	_ = json.Unmarshal(p.EHRToken, &resp)
	// Bound to the broker's own registrations: useless to the app.
	delete(resp, "refresh_token")
	delete(resp, "launch_token")
	if other != nil {
		entry := map[string]any{"resource": s.cfg.Other.FHIRBase}
		for _, k := range []string{"access_token", "token_type", "expires_in", "scope", "patient", "fhirContext"} {
			if v, ok := other[k]; ok {
				entry[k] = v
			}
		}
		resp["additional_tokens"] = []any{entry}
	}
	if otherErr != nil {
		e := map[string]any{"resource": s.cfg.Other.FHIRBase, "error": otherErr.Code}
		if otherErr.Description != "" {
			e["error_description"] = otherErr.Description
		}
		resp["additional_token_errors"] = []any{e}
	}
	code := authkit.RandomString(32)
	b, _ := json.Marshal(issued{ClientID: p.ClientID, RedirectURI: p.RedirectURI, Challenge: p.Challenge, Response: resp})
	if err := s.store.Put(ctx, bucketCode, authkit.Hash(code), b, s.cfg.Now().Add(codeLife)); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "store code", "err", err)
		authkit.RedirectError(w, r, p.RedirectURI, authkit.ErrServerError, p.State, s.cfg.Issuer)
		return
	}
	q := url.Values{"code": {code}, "iss": {s.cfg.Issuer}}
	if p.State != "" {
		q.Set("state", p.State)
	}
	authkit.Redirect(w, r, p.RedirectURI, q)
}

// exchange redeems an upstream code (client_secret_basic). An error the AS
// names is passed on; anything else is temporarily_unavailable.
func (s *Server) exchange(ctx context.Context, up Upstream, code, verifier string) (map[string]any, *authkit.Error) {
	form := url.Values{"grant_type": {authkit.GrantAuthorizationCode}, "code": {code}, "redirect_uri": {s.CallbackURL()}, "code_verifier": {verifier}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, up.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, authkit.ErrServerError
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(up.ClientID), url.QueryEscape(up.ClientSecret))
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "upstream token request", "token_url", up.TokenURL, "err", err)
		return nil, authkit.ErrTemporarilyUnavail.With("an authorization server behind the broker did not answer")
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, authkit.ErrTemporarilyUnavail.With("an authorization server behind the broker gave an unreadable answer")
	}
	if resp.StatusCode != http.StatusOK {
		e, _ := body["error"].(string)
		d, _ := body["error_description"].(string)
		if e == "" {
			return nil, authkit.ErrTemporarilyUnavail.With("an authorization server behind the broker failed")
		}
		return nil, &authkit.Error{Code: e, Description: d, Status: http.StatusBadRequest}
	}
	if at, _ := body["access_token"].(string); at == "" {
		return nil, authkit.ErrTemporarilyUnavail.With("an authorization server behind the broker issued no access token")
	}
	return body, nil
}

// handleToken is the broker's token endpoint (RFC 6749 §4.1.3): code +
// PKCE, client authentication for confidential apps.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		authkit.WriteError(w, authkit.ErrInvalidRequest.With("use POST"), false)
		return
	}
	form, err := authkit.ParseForm(r, false)
	if err != nil {
		authkit.WriteError(w, err, false)
		return
	}
	c, basic, aerr := s.authenticate(r, form)
	if aerr != nil {
		authkit.WriteError(w, aerr, basic)
		return
	}
	if gt := form.Get("grant_type"); gt != authkit.GrantAuthorizationCode {
		authkit.WriteError(w, authkit.ErrUnsupportedGrantType.With("only authorization_code is supported"), basic)
		return
	}
	b, err := s.store.Take(r.Context(), bucketCode, authkit.Hash(form.Get("code")))
	var is issued
	if err != nil || json.Unmarshal(b, &is) != nil {
		authkit.WriteError(w, authkit.ErrInvalidGrant.With("code is invalid, expired or already used"), basic)
		return
	}
	switch {
	case is.ClientID != c.ID:
		err = authkit.ErrInvalidGrant.With("code was issued to another client")
	case is.RedirectURI != form.Get("redirect_uri"):
		err = authkit.ErrInvalidGrant.With("redirect_uri does not match the authorization request")
	case !authkit.VerifyPKCE(is.Challenge, form.Get("code_verifier")):
		err = authkit.ErrInvalidGrant.With("code_verifier does not match the code_challenge")
	}
	if err != nil {
		authkit.WriteError(w, err, basic)
		return
	}
	authkit.WriteJSON(w, http.StatusOK, is.Response)
}

// authenticate identifies the client: a public one by client_id, a
// confidential one by client_secret_basic or client_secret_post.
func (s *Server) authenticate(r *http.Request, form url.Values) (Client, bool, *authkit.Error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	bad := authkit.ErrInvalidClient.With("client authentication failed")
	c, ok := s.clients[id]
	if !ok {
		return Client{}, basic, bad
	}
	if c.Secret == "" {
		if secret != "" || basic {
			return Client{}, basic, bad
		}
		return c, false, nil
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return Client{}, basic, bad
	}
	return c, basic, nil
}
