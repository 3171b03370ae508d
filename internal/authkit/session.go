package authkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Session is a browser's sign-in at an authorization server.
type Session struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	AuthTime int64  `json:"auth_time"`
}

// Sessions keeps sign-in sessions in a Store under a cookie. Every server
// uses its own cookie name: cookies are not isolated by port (RFC 6265
// §8.5).
type Sessions struct {
	Store  Store
	Cookie string        // cookie name
	Issuer string        // the cookie's path is the issuer's; https issuers get Secure cookies
	Life   time.Duration // a sign-in's lifetime
	// BindLife is how long a session that signs nobody in is kept: one
	// that only binds pending authorization requests to the browser needs
	// to live as long as a request does. 0: Life.
	BindLife time.Duration
	Now      func() time.Time
}

// SessionBucket is the Store bucket of sign-in sessions.
const SessionBucket = "session"

// MaxSessions is how many sessions an authorization server keeps in
// memory (MemStore.Limit): beyond it the oldest sign-in ends, and that
// browser signs in again. Sessions last hours, so under sustained load
// (every load flow is a new browser) they would otherwise pile up.
const MaxSessions = 10_000

// Load returns the session the request's cookie names.
func (s *Sessions) Load(ctx context.Context, r *http.Request) (*Session, bool) {
	c, err := r.Cookie(s.Cookie)
	if err != nil || c.Value == "" {
		return nil, false
	}
	b, err := s.Store.Get(ctx, SessionBucket, c.Value)
	if err != nil {
		return nil, false
	}
	var sess Session
	if json.Unmarshal(b, &sess) != nil {
		return nil, false
	}
	return &sess, true
}

// Save stores sess for Life from now, or for BindLife when it signs
// nobody in (no Username).
func (s *Sessions) Save(ctx context.Context, sess *Session) error {
	b, _ := json.Marshal(sess)
	life := s.Life
	if sess.Username == "" && s.BindLife > 0 {
		life = s.BindLife
	}
	if err := s.Store.Put(ctx, SessionBucket, sess.ID, b, s.Now().Add(life)); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// SetCookie names the session id in the browser (HttpOnly, SameSite=Lax).
func (s *Sessions) SetCookie(w http.ResponseWriter, id string) {
	path := PathOf(s.Issuer)
	if path == "" {
		path = "/"
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.Cookie, Value: id, Path: path,
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: strings.HasPrefix(s.Issuer, "https://"),
	})
}

// Binding ties a pending authorization request to the browser that
// started it (Session, the session cookie's value) and to the forms shown
// for it (CSRF). Request types embed it.
type Binding struct {
	ID      string    `json:"id"`
	Session string    `json:"session"`
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"expires"`
}

// Bind returns the binding of a request that embeds it.
func (b *Binding) Bind() *Binding { return b }

// Bound is a pending request type (one embedding Binding).
type Bound interface{ Bind() *Binding }

// PageError is what a page shows when a pending request cannot go on.
type PageError struct {
	Status           int
	Heading, Message string
}

// PendingRequests keeps authorization requests between the login,
// picker and consent pages.
type PendingRequests struct {
	Store    Store
	Sessions *Sessions // whose cookie binds a request to its browser
}

const requestBucket = "authz_request"

// Save stores req (which must marshal to JSON) until its Expires.
func (p *PendingRequests) Save(ctx context.Context, req Bound) error {
	b, _ := json.Marshal(req)
	bd := req.Bind()
	if err := p.Store.Put(ctx, requestBucket, bd.ID, b, bd.Expires); err != nil {
		return fmt.Errorf("save authorization request: %w", err)
	}
	return nil
}

// Delete forgets the request id.
func (p *PendingRequests) Delete(ctx context.Context, id string) {
	_ = p.Store.Delete(ctx, requestBucket, id)
}

// Open reads a page request: GET, or POST with its form (scope
// repeatable). It loads the pending request named by ?req into req and
// checks that the browser's session cookie is the request's and, for a
// POST, that the form's csrf field matches. req is filled whenever the
// request was found, even when the checks fail (a non-nil PageError).
func (p *PendingRequests) Open(r *http.Request, req Bound) (url.Values, *PageError) {
	var form url.Values
	switch r.Method {
	case http.MethodPost:
		f, err := ParseForm(r, false, "scope")
		if err != nil {
			return nil, &PageError{http.StatusBadRequest, "Invalid request", "The form could not be read."}
		}
		form = f
	case http.MethodGet:
	default:
		return nil, &PageError{http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST."}
	}
	b, err := p.Store.Get(r.Context(), requestBucket, r.URL.Query().Get("req"))
	if err != nil || json.Unmarshal(b, req) != nil {
		return nil, &PageError{http.StatusBadRequest, "This sign-in has expired", "Start again from the app."}
	}
	bd := req.Bind()
	c, err := r.Cookie(p.Sessions.Cookie)
	if err != nil || c.Value != bd.Session {
		return nil, &PageError{http.StatusForbidden, "Session mismatch", "This sign-in was started in another browser session. Start again from the app."}
	}
	if form != nil && !EqualConst(form.Get("csrf"), bd.CSRF) {
		return nil, &PageError{http.StatusForbidden, "Form expired", "The form could not be verified. Start again from the app."}
	}
	return form, nil
}

// EqualConst compares a presented secret with the expected one in
// constant time (through their hashes); an empty a never matches.
func EqualConst(a, b string) bool {
	return a != "" && Hash(a) == Hash(b)
}

// PathOf is the path of an absolute URL, without a trailing slash ("" for
// the root); anything that is not an absolute URL is returned unchanged.
func PathOf(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return strings.TrimRight(rest[j:], "/")
	}
	return ""
}

// AuthorizeRequest is what every authorization request must carry (RFC
// 6749 §4.1.1, SMART App Launch 2.2 with PKCE S256), checked by
// ReadAuthorize.
type AuthorizeRequest struct {
	Form        url.Values
	Client      *Client
	RedirectURI string
	State       string
	Challenge   string // PKCE S256 code_challenge
}

// ReadAuthorize reads an authorization request (GET or POST). Problems
// with the method, the form, client_id or redirect_uri are shown to the
// user (a PageError: RFC 6749 §4.1.2.1 forbids redirecting them); after
// that, an unauthorized client, a bad response_type or missing PKCE is an
// *Error for RedirectError, with ar set.
func ReadAuthorize(r *http.Request, clients *Registry, repeatable ...string) (ar *AuthorizeRequest, show *PageError, redirect *Error) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return nil, &PageError{http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST."}, nil
	}
	form, err := ParseForm(r, true, repeatable...)
	if err != nil {
		return nil, &PageError{http.StatusBadRequest, "Invalid request", "The authorization request is malformed."}, nil
	}
	client, ok := clients.Get(form.Get("client_id"))
	if !ok {
		return nil, &PageError{http.StatusBadRequest, "Unknown app", "The app's client_id is not registered here."}, nil
	}
	uri := form.Get("redirect_uri")
	if uri == "" || !client.HasRedirect(uri) {
		return nil, &PageError{http.StatusBadRequest, "Invalid redirect", "The redirect_uri does not exactly match one registered for this app."}, nil
	}
	ar = &AuthorizeRequest{Form: form, Client: client, RedirectURI: uri, State: form.Get("state"), Challenge: form.Get("code_challenge")}
	if !client.HasGrant(GrantAuthorizationCode) {
		return ar, nil, ErrUnauthorizedClient.With("client is not registered for authorization_code")
	}
	switch form.Get("response_type") {
	case "code":
	case "":
		return ar, nil, ErrInvalidRequest.With("response_type is required")
	default:
		return ar, nil, ErrUnsupportedRespType.With("only response_type=code is supported")
	}
	if form.Get("code_challenge_method") != "S256" {
		return ar, nil, ErrInvalidRequest.With("PKCE with code_challenge_method=S256 is required")
	}
	if !ValidChallenge(ar.Challenge) {
		return ar, nil, ErrInvalidRequest.With("code_challenge must be an S256 challenge")
	}
	return ar, nil, nil
}
