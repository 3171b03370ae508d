package authkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionType is the client_assertion_type of private_key_jwt (RFC 7523).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionAlgs are the signature algorithms accepted in client
// assertions (SMART client-confidential-asymmetric: RS384 and ES384 SHALL,
// RS256 and ES256 as well). "none" and HMAC are never accepted.
var AssertionAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384, jose.RS256, jose.ES256}

// MaxAssertionLifetime bounds exp - now of a client assertion.
const MaxAssertionLifetime = 5 * time.Minute

// clockSkew is tolerated on assertion times.
const clockSkew = 30 * time.Second

// ClientAuthenticator authenticates clients at the token, introspection
// and revocation endpoints (RFC 6749 §2.3, RFC 7523, SMART
// client-confidential-asymmetric).
type ClientAuthenticator struct {
	Registry *Registry
	// Audiences an assertion's aud may name: the token endpoint URL and
	// the issuer.
	Audiences  []string
	HTTPClient *http.Client
	Replay     Store // jti single-use until exp
	Now        func() time.Time

	mu     sync.Mutex
	remote map[string]*remoteKeys
}

type remoteKeys struct {
	set     *jose.JSONWebKeySet
	fetched time.Time // wall clock, for refetch rate limiting
}

// jwksTTL is how long a fetched jwks_uri document is used; an unknown kid
// refetches sooner, but at most once per jwksRefetchGap.
const (
	jwksTTL        = 5 * time.Minute
	jwksRefetchGap = 5 * time.Second
)

// Authenticated is the outcome of client authentication.
type Authenticated struct {
	Client *Client
	Method string // none, client_secret_basic, client_secret_post, private_key_jwt
	// Basic is true when the request carried HTTP Basic credentials (an
	// invalid_client answer then needs WWW-Authenticate).
	Basic bool
}

func (a *ClientAuthenticator) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

// Authenticate finds and checks the client of a token-style request.
// requireCredentials refuses public clients (introspection, Backend
// Services). Errors are *Error values (invalid_client, invalid_request).
func (a *ClientAuthenticator) Authenticate(ctx context.Context, r *http.Request, form url.Values, requireCredentials bool) (Authenticated, error) {
	user, pass, basic := r.BasicAuth()
	assertionType := form.Get("client_assertion_type")
	assertion := form.Get("client_assertion")
	secret := form.Get("client_secret")
	formID := form.Get("client_id")
	methods := 0
	for _, b := range []bool{basic, assertionType != "" || assertion != "", secret != ""} {
		if b {
			methods++
		}
	}
	if methods > 1 {
		return Authenticated{Basic: basic}, ErrInvalidRequest.With("use exactly one client authentication method")
	}
	switch {
	case basic:
		id, err1 := url.QueryUnescape(user)
		sec, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return Authenticated{Basic: true}, ErrInvalidClient.With("malformed basic credentials")
		}
		if formID != "" && formID != id {
			return Authenticated{Basic: true}, ErrInvalidClient.With("client_id does not match the credentials")
		}
		c, ok := a.Registry.Get(id)
		if !ok || c.AuthMethod != AuthSecretBasic || !c.CheckSecret(sec) {
			return Authenticated{Basic: true}, ErrInvalidClient.With("client authentication failed")
		}
		return Authenticated{Client: c, Method: AuthSecretBasic, Basic: true}, nil
	case assertionType != "" || assertion != "":
		if assertionType != AssertionType || assertion == "" {
			return Authenticated{}, ErrInvalidClient.With("unsupported client_assertion_type")
		}
		c, err := a.verifyAssertion(ctx, assertion, formID)
		if err != nil {
			return Authenticated{}, err
		}
		return Authenticated{Client: c, Method: AuthPrivateKeyJWT}, nil
	case secret != "":
		c, ok := a.Registry.Get(formID)
		if !ok || c.AuthMethod != AuthSecretPost || !c.CheckSecret(secret) {
			return Authenticated{}, ErrInvalidClient.With("client authentication failed")
		}
		return Authenticated{Client: c, Method: AuthSecretPost}, nil
	default:
		if formID == "" {
			return Authenticated{}, ErrInvalidClient.With("client authentication required")
		}
		c, ok := a.Registry.Get(formID)
		if !ok || !c.Public() {
			return Authenticated{}, ErrInvalidClient.With("client authentication failed")
		}
		if requireCredentials {
			return Authenticated{}, ErrInvalidClient.With("this endpoint needs a confidential client")
		}
		return Authenticated{Client: c, Method: AuthNone}, nil
	}
}

// assertionClaims are the RFC 7523 §3 claims.
type assertionClaims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience jwt.Audience     `json:"aud"`
	Expiry   *jwt.NumericDate `json:"exp"`
	IssuedAt *jwt.NumericDate `json:"iat"`
	NotBef   *jwt.NumericDate `json:"nbf"`
	ID       string           `json:"jti"`
}

var errAssertion = ErrInvalidClient.With("client assertion rejected")

func (a *ClientAuthenticator) verifyAssertion(ctx context.Context, assertion, formID string) (*Client, error) {
	tok, err := jwt.ParseSigned(assertion, AssertionAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return nil, ErrInvalidClient.With("client assertion is not a JWT signed with RS384, ES384, RS256 or ES256")
	}
	var unverified assertionClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, errAssertion
	}
	if unverified.Issuer == "" || unverified.Issuer != unverified.Subject {
		return nil, ErrInvalidClient.With("client assertion iss and sub must both be the client_id")
	}
	if formID != "" && formID != unverified.Issuer {
		return nil, ErrInvalidClient.With("client_id does not match the assertion")
	}
	c, ok := a.Registry.Get(unverified.Issuer)
	if !ok || c.AuthMethod != AuthPrivateKeyJWT {
		return nil, errAssertion
	}
	h := tok.Headers[0]
	if h.KeyID == "" {
		// SMART client-confidential-asymmetric: the header SHALL carry kid.
		return nil, ErrInvalidClient.With("client assertion needs a kid header")
	}
	keys, err := a.clientKeys(ctx, c, h.KeyID)
	if err != nil {
		return nil, ErrInvalidClient.With("client keys unavailable")
	}
	var claims assertionClaims
	verified := false
	for _, k := range keys {
		if k.KeyID != h.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if tok.Claims(k.Key, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, ErrInvalidClient.With("client assertion signature does not verify with the registered keys")
	}
	now := a.now()
	if claims.Expiry == nil || claims.ID == "" {
		return nil, ErrInvalidClient.With("client assertion needs exp and jti")
	}
	exp := claims.Expiry.Time()
	if !now.Before(exp.Add(clockSkew)) {
		return nil, ErrInvalidClient.With("client assertion expired")
	}
	if exp.Sub(now) > MaxAssertionLifetime+clockSkew {
		return nil, ErrInvalidClient.With("client assertion exp is more than five minutes ahead")
	}
	if claims.NotBef != nil && claims.NotBef.Time().After(now.Add(clockSkew)) {
		return nil, ErrInvalidClient.With("client assertion not yet valid")
	}
	if claims.IssuedAt != nil && claims.IssuedAt.Time().After(now.Add(clockSkew)) {
		return nil, ErrInvalidClient.With("client assertion issued in the future")
	}
	audOK := false
	for _, aud := range claims.Audience {
		if slices.Contains(a.Audiences, aud) {
			audOK = true
		}
	}
	if !audOK {
		return nil, ErrInvalidClient.With("client assertion aud must be the token endpoint URL")
	}
	if err := a.Replay.Add(ctx, "assertion_jti", c.ID+"\x00"+claims.ID, []byte{1}, exp.Add(clockSkew)); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, ErrInvalidClient.With("client assertion jti already used")
		}
		return nil, fmt.Errorf("record assertion jti: %w", err)
	}
	return c, nil
}

// clientKeys returns the client's registered public keys; for a jwks_uri
// they are fetched with HTTPClient, cached, and refetched (rate limited)
// when kid is unknown.
func (a *ClientAuthenticator) clientKeys(ctx context.Context, c *Client, kid string) ([]jose.JSONWebKey, error) {
	if len(c.JWKS) > 0 {
		set, err := publicKeySet(c.JWKS)
		if err != nil {
			return nil, err
		}
		return set.Keys, nil
	}
	if c.JWKSURI == "" {
		return nil, errors.New("no keys registered")
	}
	a.mu.Lock()
	if a.remote == nil {
		a.remote = map[string]*remoteKeys{}
	}
	cached := a.remote[c.ID+"\x00"+c.JWKSURI]
	a.mu.Unlock()
	wall := time.Now()
	fresh := cached != nil && wall.Sub(cached.fetched) < jwksTTL
	if fresh && (kid == "" || len(cached.set.Key(kid)) > 0) {
		return cached.set.Keys, nil
	}
	if cached != nil && wall.Sub(cached.fetched) < jwksRefetchGap {
		return cached.set.Keys, nil
	}
	set, err := a.fetchJWKS(ctx, c.JWKSURI)
	if err != nil {
		if cached != nil {
			return cached.set.Keys, nil
		}
		return nil, err
	}
	a.mu.Lock()
	a.remote[c.ID+"\x00"+c.JWKSURI] = &remoteKeys{set: set, fetched: wall}
	a.mu.Unlock()
	return set.Keys, nil
}

func (a *ClientAuthenticator) fetchJWKS(ctx context.Context, uri string) (*jose.JSONWebKeySet, error) {
	hc := a.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	if !json.Valid(body) {
		return nil, errors.New("fetch jwks: not JSON")
	}
	return publicKeySet(body)
}
