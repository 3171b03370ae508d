package authkit

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// Error is an OAuth 2.0 error (RFC 6749 §4.1.2.1, §5.2; RFC 7591 §3.2.2;
// RFC 8707). Its Description is shown to the client, so it never carries
// internal error text.
type Error struct {
	Code        string
	Description string
	Status      int
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Is matches on Code, so errors.Is(err, ErrInvalidGrant) holds after With.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// With returns a copy with a description; sentinels are never changed.
func (e *Error) With(description string) *Error {
	c := *e
	c.Description = description
	return &c
}

// Error codes as sentinels with their token-endpoint status.
var (
	ErrInvalidRequest       = &Error{Code: "invalid_request", Status: http.StatusBadRequest}
	ErrInvalidClient        = &Error{Code: "invalid_client", Status: http.StatusUnauthorized}
	ErrInvalidGrant         = &Error{Code: "invalid_grant", Status: http.StatusBadRequest}
	ErrUnauthorizedClient   = &Error{Code: "unauthorized_client", Status: http.StatusBadRequest}
	ErrUnsupportedGrantType = &Error{Code: "unsupported_grant_type", Status: http.StatusBadRequest}
	ErrInvalidScope         = &Error{Code: "invalid_scope", Status: http.StatusBadRequest}
	ErrAccessDenied         = &Error{Code: "access_denied", Status: http.StatusForbidden}
	ErrUnsupportedRespType  = &Error{Code: "unsupported_response_type", Status: http.StatusBadRequest}
	ErrServerError          = &Error{Code: "server_error", Status: http.StatusInternalServerError}
	ErrTemporarilyUnavail   = &Error{Code: "temporarily_unavailable", Status: http.StatusServiceUnavailable}
	ErrInvalidTarget        = &Error{Code: "invalid_target", Status: http.StatusBadRequest}
	ErrLoginRequired        = &Error{Code: "login_required", Status: http.StatusBadRequest}
	ErrConsentRequired      = &Error{Code: "consent_required", Status: http.StatusBadRequest}
	ErrInteractionRequired  = &Error{Code: "interaction_required", Status: http.StatusBadRequest}
	ErrInvalidRedirectURI   = &Error{Code: "invalid_redirect_uri", Status: http.StatusBadRequest}
	ErrInvalidClientMeta    = &Error{Code: "invalid_client_metadata", Status: http.StatusBadRequest}
	ErrInvalidToken         = &Error{Code: "invalid_token", Status: http.StatusUnauthorized}
	ErrUnsupportedTokenType = &Error{Code: "unsupported_token_type", Status: http.StatusBadRequest}
)

// AsError converts any error to an *Error; unknown errors become a bare
// server_error so their text never reaches a client.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrServerError
}

// NoStore sets the headers RFC 6749 §5.1 requires on token responses.
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// WriteJSON writes v as a no-store JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	NoStore(w)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// WriteError writes err as an RFC 6749 §5.2 JSON error. invalid_client
// always answers 401, with WWW-Authenticate when the client tried HTTP
// Basic (basic true).
func WriteError(w http.ResponseWriter, err error, basic bool) {
	e := AsError(err)
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	if e.Code == ErrInvalidClient.Code {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="token", charset="UTF-8"`)
		}
		status = http.StatusUnauthorized
	}
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	WriteJSON(w, status, body)
}

// RedirectError sends the browser back to redirectURI with the error, state
// and iss (RFC 6749 §4.1.2.1, RFC 9207).
func RedirectError(w http.ResponseWriter, r *http.Request, redirectURI string, err error, state, iss string) {
	e := AsError(err)
	q := url.Values{"error": {e.Code}}
	if e.Description != "" {
		q.Set("error_description", e.Description)
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", iss)
	Redirect(w, r, redirectURI, q)
}

// Redirect sends a 303 to base with q merged into its query.
func Redirect(w http.ResponseWriter, r *http.Request, base string, q url.Values) {
	u, err := url.Parse(base)
	if err != nil {
		http.Error(w, "bad redirect", http.StatusInternalServerError)
		return
	}
	existing := u.Query()
	for k, vs := range q {
		existing[k] = vs
	}
	u.RawQuery = existing.Encode()
	NoStore(w)
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}
