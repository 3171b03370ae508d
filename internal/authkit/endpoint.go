package authkit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
)

// Grant answers one grant_type at the token endpoint for an
// authenticated client: a response body, or an error (an *Error is the
// client's; any other error is logged and answered server_error).
type Grant func(ctx context.Context, c *Client, form url.Values) (any, error)

// GrantOf adapts a grant returning its own response type.
func GrantOf[T any](f func(ctx context.Context, c *Client, form url.Values) (T, error)) Grant {
	return func(ctx context.Context, c *Client, form url.Values) (any, error) { return f(ctx, c, form) }
}

// TokenEndpoint is the token endpoint (RFC 6749 §3.2): POST only, the form
// parsed once, the client authenticated, then the Grant for grant_type.
// Every answer is no-store (§5.1).
type TokenEndpoint struct {
	Auth       *ClientAuthenticator
	Grants     map[string]Grant
	Repeatable []string // form parameters that may repeat (RFC 8707 resource, ...)
	Logger     *slog.Logger
}

func (t *TokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	who, form, ok := ReadClientRequest(w, r, t.Auth, false, t.Repeatable...)
	if !ok {
		return
	}
	var resp any
	var err error
	gt := form.Get("grant_type")
	switch grant, known := t.Grants[gt]; {
	case gt == "":
		err = ErrInvalidRequest.With("grant_type is required")
	case !known:
		err = ErrUnsupportedGrantType.With("grant_type not supported")
	default:
		resp, err = grant(ctx, who.Client, form)
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) && t.Logger != nil {
			t.Logger.ErrorContext(ctx, "token", "err", err)
		}
		WriteError(w, err, who.Basic)
		return
	}
	WriteJSON(w, http.StatusOK, resp)
}

// ReadClientRequest reads a POST to a client endpoint (token,
// revocation): the form, then client authentication (credentials
// required when requireCredentials). ok false means the error was
// written.
func ReadClientRequest(w http.ResponseWriter, r *http.Request, auth *ClientAuthenticator, requireCredentials bool, repeatable ...string) (Authenticated, url.Values, bool) {
	form, ok := ReadPost(w, r, repeatable...)
	if !ok {
		return Authenticated{}, nil, false
	}
	who, err := auth.Authenticate(r.Context(), r, form, requireCredentials)
	if err != nil {
		WriteError(w, err, who.Basic)
		return who, nil, false
	}
	return who, form, true
}

// ReadPost reads the form of a POST to an OAuth endpoint; anything else
// is invalid_request (with Allow: POST). ok false means the error was
// written.
func ReadPost(w http.ResponseWriter, r *http.Request, repeatable ...string) (url.Values, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		WriteError(w, ErrInvalidRequest.With("use POST"), false)
		return nil, false
	}
	form, err := ParseForm(r, false, repeatable...)
	if err != nil {
		WriteError(w, err, false)
		return nil, false
	}
	return form, true
}

// WriteIntrospectAuthError answers an introspection request whose client
// authentication failed (RFC 7662 §2.1: 401): a malformed request stays
// invalid_request.
func WriteIntrospectAuthError(w http.ResponseWriter, err error, basic bool) {
	if e := AsError(err); e.Code == ErrInvalidRequest.Code {
		WriteError(w, err, basic)
		return
	}
	if !basic {
		w.Header().Set("WWW-Authenticate", `Bearer realm="introspect"`)
	}
	WriteError(w, ErrInvalidClient.With("authentication required"), basic)
}

// WriteJSONCached writes a public, cacheable JSON document (discovery,
// styles): CORS open, cached for a minute.
func WriteJSONCached(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	writeCacheable(w, b)
}

// StaticJSON is a document that never changes while its server runs (a
// discovery document, the style sheet): encoded by the first request,
// served from those bytes afterwards with WriteJSONCached's headers.
type StaticJSON struct {
	once sync.Once
	b    []byte
	err  error
}

// Serve writes the document, calling build the first time only.
func (d *StaticJSON) Serve(w http.ResponseWriter, build func() any) {
	d.once.Do(func() { d.b, d.err = json.MarshalIndent(build(), "", "  ") })
	if d.err != nil {
		http.Error(w, "Internal server error.", http.StatusInternalServerError)
		return
	}
	writeCacheable(w, d.b)
}

func writeCacheable(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(b)
}

// SecurityURIs are the OAuth endpoints for a CapabilityStatement's SMART
// security extension (http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris).
type SecurityURIs struct {
	Authorize, Token, Register, Manage, Introspect, Revoke string
}

// EndpointsOf returns the endpoint URLs of an issuer laid out as sim's
// ASes are ({issuer}/authorize, ...). Manage is empty: sim has no grant
// management page.
func EndpointsOf(issuer string) SecurityURIs {
	return SecurityURIs{
		Authorize:  issuer + "/authorize",
		Token:      issuer + "/token",
		Register:   issuer + "/register",
		Introspect: issuer + "/introspect",
		Revoke:     issuer + "/revoke",
	}
}

// Metadata describes an AS for its discovery documents; its endpoints are
// laid out as EndpointsOf says, its keys are at {issuer}/jwks.
type Metadata struct {
	Issuer       string
	Scopes       []string // scopes_supported
	GrantTypes   []string // grant_types_supported
	Capabilities []string // SMART capabilities
}

// TokenAuthMethods and AssertionAlgNames are what both ASes accept at the
// token endpoint.
var (
	TokenAuthMethods  = []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthNone}
	AssertionAlgNames = []string{"RS384", "ES384", "RS256", "ES256"}
)

// SMARTConfiguration is the common part of {fhir}/.well-known/smart-configuration
// (SMART App Launch 2.2 conformance page); callers add their own fields.
func (m Metadata) SMARTConfiguration() map[string]any {
	e := EndpointsOf(m.Issuer)
	return map[string]any{
		"issuer":                                m.Issuer,
		"jwks_uri":                              m.Issuer + "/jwks",
		"authorization_endpoint":                e.Authorize,
		"token_endpoint":                        e.Token,
		"token_endpoint_auth_methods_supported": TokenAuthMethods,
		"token_endpoint_auth_signing_alg_values_supported": AssertionAlgNames,
		"grant_types_supported":                            m.GrantTypes,
		"registration_endpoint":                            e.Register,
		"scopes_supported":                                 m.Scopes,
		"response_types_supported":                         []string{"code"},
		"introspection_endpoint":                           e.Introspect,
		"revocation_endpoint":                              e.Revoke,
		"code_challenge_methods_supported":                 []string{"S256"},
		"capabilities":                                     m.Capabilities,
		"authorization_response_iss_parameter_supported":   true,
	}
}

// OpenIDConfiguration is the common part of OpenID Connect Discovery 1.0
// metadata; callers add their own fields.
func (m Metadata) OpenIDConfiguration() map[string]any {
	e := EndpointsOf(m.Issuer)
	return map[string]any{
		"issuer":                                           m.Issuer,
		"authorization_endpoint":                           e.Authorize,
		"token_endpoint":                                   e.Token,
		"jwks_uri":                                         m.Issuer + "/jwks",
		"registration_endpoint":                            e.Register,
		"introspection_endpoint":                           e.Introspect,
		"revocation_endpoint":                              e.Revoke,
		"scopes_supported":                                 m.Scopes,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            m.GrantTypes,
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"token_endpoint_auth_methods_supported":            TokenAuthMethods,
		"token_endpoint_auth_signing_alg_values_supported": AssertionAlgNames,
		"claims_supported":                                 []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "name", "preferred_username"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"authorization_response_iss_parameter_supported":   true,
	}
}
