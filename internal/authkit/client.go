package authkit

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smart-sim/sim/internal/scope"
)

// Token endpoint authentication methods.
const (
	AuthNone          = "none"
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
)

// Grant types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Client is a registered client (RFC 7591 metadata plus sim's own fields).
type Client struct {
	ID           string          `json:"client_id"`
	Secret       string          `json:"-"` // plaintext, only when configuring; stored hashed
	SecretHash   string          `json:"secret_hash,omitempty"`
	AuthMethod   string          `json:"token_endpoint_auth_method"`
	RedirectURIs []string        `json:"redirect_uris,omitempty"`
	GrantTypes   []string        `json:"grant_types,omitempty"`
	Scope        string          `json:"scope,omitempty"` // the most it may be granted; "" = no limit
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	JWKSURI      string          `json:"jwks_uri,omitempty"`
	SoftwareID   string          `json:"software_id,omitempty"`
	Name         string          `json:"client_name,omitempty"`
	LaunchURI    string          `json:"launch_uri,omitempty"`
	// Introspector lets the client introspect tokens issued to other
	// clients (partner authorization servers).
	Introspector bool `json:"introspector,omitempty"`
	// Issuer is set for a partner authorization server: launch-tokens
	// addressed to this issuer may be introspected by this client.
	Issuer   string    `json:"issuer,omitempty"`
	IssuedAt time.Time `json:"issued_at"`
}

// Public reports whether the client has no credentials.
func (c *Client) Public() bool { return c.AuthMethod == AuthNone }

// HasGrant reports whether the client registered grant type g.
func (c *Client) HasGrant(g string) bool { return slices.Contains(c.GrantTypes, g) }

// HasRedirect reports an exact match with a registered redirect URI.
func (c *Client) HasRedirect(u string) bool { return slices.Contains(c.RedirectURIs, u) }

// AllowedScopes returns the registered scope limit (nil: no limit).
func (c *Client) AllowedScopes() scope.Set {
	if c.Scope == "" {
		return nil
	}
	s, _ := scope.Parse(c.Scope)
	return s
}

// Registry holds clients: in memory, written through to a Store.
type Registry struct {
	store  Store
	now    func() time.Time
	mu     sync.RWMutex
	byID   map[string]*Client
	Closed bool // refuse dynamic registration
	// OpenBackend lets dynamic registration create Backend Services
	// clients (client_credentials, system/ scopes). Off by default: such
	// clients come from configuration.
	OpenBackend bool
	// ScopeCeiling is the most a dynamically registered client may be
	// granted: its registered scope is the requested scope narrowed to the
	// ceiling (system/ scopes pass when OpenBackend), or the ceiling when
	// it asks for none. "" = no ceiling.
	ScopeCeiling string
}

const clientBucket = "clients"

// NewRegistry loads the clients kept in store.
func NewRegistry(ctx context.Context, store Store, now func() time.Time) (*Registry, error) {
	if now == nil {
		now = time.Now
	}
	r := &Registry{store: store, now: now, byID: map[string]*Client{}}
	items, err := store.List(ctx, clientBucket)
	if err != nil {
		return nil, fmt.Errorf("load clients: %w", err)
	}
	for _, it := range items {
		var c Client
		if err := json.Unmarshal(it.Value, &c); err != nil {
			return nil, fmt.Errorf("decode client %s: %w", it.Key, err)
		}
		r.byID[c.ID] = &c
	}
	return r, nil
}

// Get returns the client with id.
func (r *Registry) Get(id string) (*Client, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.byID[id]
	return c, ok
}

// Put validates and stores c (created or replaced), hashing Secret.
func (r *Registry) Put(ctx context.Context, c Client) (*Client, error) {
	if c.ID == "" {
		return nil, ErrInvalidClientMeta.With("client_id is required")
	}
	if err := Validate(&c); err != nil {
		return nil, err
	}
	if c.Secret != "" {
		c.SecretHash = Hash(c.Secret)
		c.Secret = ""
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = r.now()
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode client: %w", err)
	}
	if err := r.store.Put(ctx, clientBucket, c.ID, b, time.Time{}); err != nil {
		return nil, fmt.Errorf("store client: %w", err)
	}
	r.mu.Lock()
	r.byID[c.ID] = &c
	r.mu.Unlock()
	return &c, nil
}

// Validate checks client metadata (RFC 7591 §2) and fills defaults.
// Backend Services (client_credentials) needs private_key_jwt, as SMART
// requires asymmetric authentication for it.
func Validate(c *Client) error {
	if c.AuthMethod == "" {
		c.AuthMethod = AuthSecretBasic // RFC 7591 §2 default
	}
	switch c.AuthMethod {
	case AuthNone, AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT:
	default:
		return ErrInvalidClientMeta.With("unsupported token_endpoint_auth_method")
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantAuthorizationCode}
	}
	for _, g := range c.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken:
		case GrantClientCredentials:
			if c.AuthMethod != AuthPrivateKeyJWT {
				return ErrInvalidClientMeta.With("client_credentials needs private_key_jwt (SMART Backend Services)")
			}
		default:
			return ErrInvalidClientMeta.With("unsupported grant type")
		}
	}
	if c.HasGrant(GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return ErrInvalidRedirectURI.With("redirect_uris is required for authorization_code")
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return err
		}
	}
	if c.LaunchURI != "" {
		if u, err := url.Parse(c.LaunchURI); err != nil || !u.IsAbs() || u.Fragment != "" {
			return ErrInvalidClientMeta.With("launch_uri must be an absolute URL without fragment")
		}
	}
	if c.Scope != "" {
		if _, err := scope.Parse(c.Scope); err != nil {
			return ErrInvalidClientMeta.With("scope is malformed")
		}
	}
	if len(c.JWKS) > 0 && c.JWKSURI != "" {
		return ErrInvalidClientMeta.With("use jwks or jwks_uri, not both")
	}
	if len(c.JWKS) > 0 {
		if _, err := publicKeySet(c.JWKS); err != nil {
			return ErrInvalidClientMeta.With("jwks is not a usable public key set")
		}
	}
	if c.JWKSURI != "" {
		if u, err := url.Parse(c.JWKSURI); err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") {
			return ErrInvalidClientMeta.With("jwks_uri must be an absolute http(s) URL")
		}
	}
	if c.AuthMethod == AuthPrivateKeyJWT && len(c.JWKS) == 0 && c.JWKSURI == "" {
		return ErrInvalidClientMeta.With("private_key_jwt needs jwks or jwks_uri")
	}
	return nil
}

func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" && u.Opaque == "" && u.Path == "" {
		return ErrInvalidRedirectURI.With("redirect URIs must be absolute")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return ErrInvalidRedirectURI.With("redirect URIs must not have a fragment")
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "vbscript", "file":
		return ErrInvalidRedirectURI.With("redirect URI scheme not allowed")
	}
	return nil
}

// publicKeySet parses a JWKS and keeps only asymmetric signature keys.
func publicKeySet(raw []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	out := &jose.JSONWebKeySet{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.Valid() {
			continue
		}
		if _, sym := k.Key.([]byte); sym {
			continue
		}
		pub := k.Public()
		if !pub.Valid() {
			continue
		}
		out.Keys = append(out.Keys, pub)
	}
	if len(out.Keys) == 0 {
		return nil, errors.New("no asymmetric signature keys")
	}
	return out, nil
}

// registrationRequest is the RFC 7591 §2 metadata sim reads.
type registrationRequest struct {
	RedirectURIs  []string        `json:"redirect_uris"`
	AuthMethod    string          `json:"token_endpoint_auth_method"`
	GrantTypes    []string        `json:"grant_types"`
	ResponseTypes []string        `json:"response_types"`
	Scope         string          `json:"scope"`
	JWKS          json.RawMessage `json:"jwks"`
	JWKSURI       string          `json:"jwks_uri"`
	SoftwareID    string          `json:"software_id"`
	ClientName    string          `json:"client_name"`
	LaunchURI     string          `json:"launch_uri"`
}

// RegistrationResponse is RFC 7591 §3.2.1.
type RegistrationResponse struct {
	ClientID              string          `json:"client_id"`
	ClientSecret          string          `json:"client_secret,omitempty"`
	ClientSecretExpiresAt *int64          `json:"client_secret_expires_at,omitempty"`
	ClientIDIssuedAt      int64           `json:"client_id_issued_at"`
	RedirectURIs          []string        `json:"redirect_uris,omitempty"`
	AuthMethod            string          `json:"token_endpoint_auth_method"`
	GrantTypes            []string        `json:"grant_types"`
	ResponseTypes         []string        `json:"response_types,omitempty"`
	Scope                 string          `json:"scope,omitempty"`
	JWKS                  json.RawMessage `json:"jwks,omitempty"`
	JWKSURI               string          `json:"jwks_uri,omitempty"`
	SoftwareID            string          `json:"software_id,omitempty"`
	ClientName            string          `json:"client_name,omitempty"`
	LaunchURI             string          `json:"launch_uri,omitempty"`
}

// Register creates a client from RFC 7591 JSON metadata.
func (r *Registry) Register(ctx context.Context, body []byte) (*RegistrationResponse, error) {
	var req registrationRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&req); err != nil {
		return nil, ErrInvalidClientMeta.With("body must be a JSON object of client metadata")
	}
	for _, rt := range req.ResponseTypes {
		if rt != "code" {
			return nil, ErrInvalidClientMeta.With("only response_type code is supported")
		}
	}
	c := Client{
		ID:           RandomString(16),
		AuthMethod:   req.AuthMethod,
		RedirectURIs: req.RedirectURIs,
		GrantTypes:   req.GrantTypes,
		Scope:        req.Scope,
		JWKSURI:      req.JWKSURI,
		SoftwareID:   req.SoftwareID,
		Name:         req.ClientName,
		LaunchURI:    req.LaunchURI,
	}
	if len(req.JWKS) > 0 && string(req.JWKS) != "null" {
		c.JWKS = req.JWKS
	}
	if err := Validate(&c); err != nil {
		return nil, err
	}
	if err := r.limitRegistration(&c); err != nil {
		return nil, err
	}
	var secret string
	if c.AuthMethod == AuthSecretBasic || c.AuthMethod == AuthSecretPost {
		secret = RandomString(32)
		c.Secret = secret
	}
	stored, err := r.Put(ctx, c)
	if err != nil {
		return nil, err
	}
	resp := &RegistrationResponse{
		ClientID:         stored.ID,
		ClientSecret:     secret,
		ClientIDIssuedAt: stored.IssuedAt.Unix(),
		RedirectURIs:     stored.RedirectURIs,
		AuthMethod:       stored.AuthMethod,
		GrantTypes:       stored.GrantTypes,
		Scope:            stored.Scope,
		JWKS:             stored.JWKS,
		JWKSURI:          stored.JWKSURI,
		SoftwareID:       stored.SoftwareID,
		ClientName:       stored.Name,
		LaunchURI:        stored.LaunchURI,
	}
	if stored.HasGrant(GrantAuthorizationCode) {
		resp.ResponseTypes = []string{"code"}
	}
	if secret != "" {
		zero := int64(0)
		resp.ClientSecretExpiresAt = &zero
	}
	return resp, nil
}

// limitRegistration applies what dynamic registration may hand out:
// no Backend Services unless OpenBackend, and the scope ceiling.
func (r *Registry) limitRegistration(c *Client) error {
	asked, err := scope.Parse(c.Scope)
	if err != nil {
		return ErrInvalidClientMeta.With("scope is malformed")
	}
	if !r.OpenBackend {
		if c.HasGrant(GrantClientCredentials) {
			return ErrInvalidClientMeta.With("client_credentials is not open to dynamic registration: Backend Services clients are configured by the server operator")
		}
		if asked.HasLevel(scope.System) {
			return ErrInvalidClientMeta.With("system/ scopes are not open to dynamic registration")
		}
	}
	if r.ScopeCeiling == "" {
		return nil
	}
	ceiling, err := scope.Parse(r.ScopeCeiling)
	if err != nil {
		return fmt.Errorf("registration scope ceiling: %w", err)
	}
	if len(asked) == 0 {
		c.Scope = ceiling.String()
		return nil
	}
	kept := asked.Filter(func(sc scope.Scope) bool {
		return ceiling.Covers(sc) || r.OpenBackend && sc.IsResource() && sc.Level == scope.System
	})
	if len(kept) == 0 {
		return ErrInvalidClientMeta.With("scope asks for nothing this server grants to registered apps")
	}
	c.Scope = kept.String()
	return nil
}

// ServeRegister is the RFC 7591 registration endpoint (POST JSON).
func (r *Registry) ServeRegister(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		WriteError(w, ErrInvalidRequest.With("use POST"), false)
		return
	}
	if r.Closed {
		WriteJSON(w, http.StatusForbidden, map[string]string{"error": "access_denied", "error_description": "dynamic registration is closed"})
		return
	}
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct != "application/json" {
		WriteError(w, ErrInvalidClientMeta.With("body must be application/json"), false)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxFormBytes+1))
	if err != nil || len(body) > MaxFormBytes {
		WriteError(w, ErrInvalidClientMeta.With("body unreadable or too large"), false)
		return
	}
	resp, err := r.Register(req.Context(), body)
	if err != nil {
		WriteError(w, err, false)
		return
	}
	WriteJSON(w, http.StatusCreated, resp)
}

// CheckSecret compares a presented secret with the stored hash.
func (c *Client) CheckSecret(secret string) bool {
	if c.SecretHash == "" || secret == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(Hash(secret)), []byte(c.SecretHash)) == 1
}
