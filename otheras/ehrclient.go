package otheras

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/httpkit"
)

// errUpstream marks a failure to talk to an EHR (down, slow, 5xx,
// unreadable): the authorization fails closed with temporarily_unavailable.
var errUpstream = errors.New("trusted EHR unavailable")

// backendScope is what OtherAS asks the EHR AS for (ehr registers partners
// with exactly this limit).
const backendScope = "system/Patient.rs system/Practitioner.rs introspect"

// ehrClient talks to one trusted EHR AS and its FHIR server: discovery,
// JWKS, a cached Backend Services token, introspection and Patient reads.
type ehrClient struct {
	cfg TrustedEHR
	s   *Server

	mu       sync.Mutex
	meta     *ehrMeta
	metaAt   time.Time
	keys     map[string]any // kid -> what checks its signatures (verificationKeys)
	keysAt   time.Time      // wall clock, refetch rate limit
	token    string
	tokenExp time.Time
	inflight *tokenCall
}

type ehrMeta struct {
	Issuer     string `json:"issuer"`
	Token      string `json:"token_endpoint"`
	Introspect string `json:"introspection_endpoint"`
	JWKS       string `json:"jwks_uri"`
}

type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

const (
	metaTTL        = 10 * time.Minute
	keysTTL        = 5 * time.Minute
	keysRefetchGap = 2 * time.Second
	maxBody        = 1 << 20
)

// do sends req with the configured timeout and decodes a 200 JSON answer
// into out. Transport failures, timeouts and 5xx wrap errUpstream.
func (c *ehrClient) do(ctx context.Context, req *http.Request, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.s.cfg.Timeout)
	defer cancel()
	req = req.WithContext(ctx)
	req.Header.Set("Accept", "application/json")
	resp, err := c.s.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w: %w", req.Method, req.URL.Path, errUpstream, err)
	}
	defer resp.Body.Close()
	body, err := httpkit.ReadBody(resp, maxBody)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read %s: %w: %w", req.URL.Path, errUpstream, err)
	}
	if resp.StatusCode >= 500 {
		return resp.StatusCode, fmt.Errorf("%s %s: %w: status %d", req.Method, req.URL.Path, errUpstream, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode %s: %w: %w", req.URL.Path, errUpstream, err)
	}
	return resp.StatusCode, nil
}

func (c *ehrClient) get(ctx context.Context, u string, out any) (int, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	return c.do(ctx, req, out)
}

func (c *ehrClient) post(ctx context.Context, u string, form url.Values, bearer string, out any) (int, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return c.do(ctx, req, out)
}

// metadata discovers the EHR AS from its FHIR base and checks that it
// names the trusted issuer (mix-up defence) and endpoints under it.
func (c *ehrClient) metadata(ctx context.Context) (*ehrMeta, error) {
	now := c.s.cfg.Now()
	c.mu.Lock()
	m, at := c.meta, c.metaAt
	c.mu.Unlock()
	if m != nil && now.Sub(at) < metaTTL {
		return m, nil
	}
	var doc ehrMeta
	st, err := c.get(ctx, c.cfg.FHIRBase+"/.well-known/smart-configuration", &doc)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("smart-configuration: %w: status %d", errUpstream, st)
	}
	if strings.TrimRight(doc.Issuer, "/") != c.cfg.Issuer {
		return nil, fmt.Errorf("smart-configuration names issuer %q: %w", doc.Issuer, errUpstream)
	}
	for _, u := range []string{doc.Token, doc.Introspect, doc.JWKS} {
		if !strings.HasPrefix(u, c.cfg.Issuer+"/") {
			return nil, fmt.Errorf("smart-configuration endpoint outside the issuer: %w", errUpstream)
		}
	}
	c.mu.Lock()
	c.meta, c.metaAt = &doc, now
	c.mu.Unlock()
	return &doc, nil
}

// verificationKey returns what checks signatures by the EHR's key kid,
// for go-jose's Verify and Claims, refetching the JWKS (rate limited) when
// the kid is unknown.
func (c *ehrClient) verificationKey(ctx context.Context, kid string) (any, error) {
	c.mu.Lock()
	keys, at := c.keys, c.keysAt
	c.mu.Unlock()
	wall := time.Now()
	if keys != nil {
		if k, ok := keys[kid]; ok && wall.Sub(at) < keysTTL {
			return k, nil
		}
		if wall.Sub(at) < keysRefetchGap {
			return nil, errUnknownKey
		}
	}
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	var fresh jose.JSONWebKeySet
	st, err := c.get(ctx, m.JWKS, &fresh)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("jwks: %w: status %d", errUpstream, st)
	}
	keys = verificationKeys(fresh)
	c.mu.Lock()
	c.keys, c.keysAt = keys, wall
	c.mu.Unlock()
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, errUnknownKey
}

var errUnknownKey = errors.New("unknown signing key")

// verificationKeys prepares each key of a fetched JWKS once, by kid (the
// first key wins a repeated kid): an RSA key becomes a verifier through
// rsasign (libcrypto where available), any other key stays as it is.
func verificationKeys(set jose.JSONWebKeySet) map[string]any {
	keys := make(map[string]any, len(set.Keys))
	for _, jwk := range set.Keys {
		if _, seen := keys[jwk.KeyID]; seen {
			continue
		}
		keys[jwk.KeyID] = jwk.Key
		if pub, isRSA := jwk.Key.(*rsa.PublicKey); isRSA {
			if v, err := authkit.RS256Verifier(pub); err == nil {
				keys[jwk.KeyID] = v
			}
		}
	}
	return keys
}

// backendToken returns a Backend Services access token, cached until
// shortly before it expires. Concurrent callers share one fetch.
func (c *ehrClient) backendToken(ctx context.Context) (string, error) {
	now := c.s.cfg.Now()
	c.mu.Lock()
	if c.token != "" && now.Before(c.tokenExp) {
		tok := c.token
		c.mu.Unlock()
		return tok, nil
	}
	call := c.inflight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		c.inflight = call
		c.mu.Unlock()
		// The fetch outlives a canceled first caller: others wait on it.
		go c.fetchToken(context.WithoutCancel(ctx), call)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", fmt.Errorf("backend token: %w: %w", errUpstream, ctx.Err())
	}
}

func (c *ehrClient) fetchToken(ctx context.Context, call *tokenCall) {
	tok, exp, err := c.requestToken(ctx)
	c.mu.Lock()
	if err == nil {
		c.token, c.tokenExp = tok, exp
	}
	c.inflight = nil
	c.mu.Unlock()
	call.token, call.err = tok, err
	close(call.done)
}

// requestToken is SMART Backend Services: client_credentials with a
// private_key_jwt client assertion (RFC 7523) signed with our client key.
func (c *ehrClient) requestToken(ctx context.Context) (string, time.Time, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	now := c.s.cfg.Now()
	assertion, err := c.s.clientKeys.Sign(map[string]any{
		"iss": c.cfg.ClientID, "sub": c.cfg.ClientID, "aud": m.Token,
		"iat": now.Unix(), "exp": now.Add(4 * time.Minute).Unix(), "jti": authkit.RandomString(16),
	}, "JWT")
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign client assertion: %w", err)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	st, err := c.post(ctx, m.Token, url.Values{
		"grant_type": {authkit.GrantClientCredentials}, "scope": {backendScope},
		"client_assertion_type": {authkit.AssertionType}, "client_assertion": {assertion},
	}, "", &resp)
	if err != nil {
		return "", time.Time{}, err
	}
	if st != http.StatusOK || resp.AccessToken == "" || !strings.EqualFold(resp.TokenType, "bearer") {
		return "", time.Time{}, fmt.Errorf("backend token refused (status %d): %w", st, errUpstream)
	}
	life := time.Duration(resp.ExpiresIn) * time.Second
	if life <= 0 {
		life = time.Minute
	}
	// Renew shortly before expiry: a fifth of the lifetime, at most 30 s.
	return resp.AccessToken, now.Add(life - min(life/5, 30*time.Second)), nil
}

// dropToken forgets a token the EHR no longer accepts.
func (c *ehrClient) dropToken(tok string) {
	c.mu.Lock()
	if c.token == tok {
		c.token = ""
	}
	c.mu.Unlock()
}

// introspection is the RFC 7662 answer with SMART's and the draft's fields.
type introspection struct {
	Active      bool          `json:"active"`
	TokenType   string        `json:"token_type"`
	ClientID    string        `json:"client_id"`
	SoftwareID  string        `json:"software_id"`
	Sub         string        `json:"sub"`
	Iss         string        `json:"iss"`
	Exp         int64         `json:"exp"`
	FHIRUser    string        `json:"fhirUser"`
	Patient     string        `json:"patient"`
	FHIRContext []fhirContext `json:"fhirContext"`
}

// introspect asks the EHR AS about a launch-token with the backend token,
// retrying once with a fresh token if the cached one is refused.
func (c *ehrClient) introspect(ctx context.Context, tok string) (*introspection, error) {
	m, err := c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		bt, err := c.backendToken(ctx)
		if err != nil {
			return nil, err
		}
		var out introspection
		st, err := c.post(ctx, m.Introspect, url.Values{"token": {tok}}, bt, &out)
		if err != nil {
			return nil, err
		}
		if st == http.StatusUnauthorized && attempt == 0 {
			c.dropToken(bt)
			continue
		}
		if st != http.StatusOK {
			return nil, fmt.Errorf("introspection status %d: %w", st, errUpstream)
		}
		return &out, nil
	}
}

// fhirPatient is the part of a FHIR R4 Patient matching reads.
type fhirPatient struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id"`
	Identifier   []Identifier `json:"identifier"`
	Name         []struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
	BirthDate string `json:"birthDate"`
}

var errPatientGone = errors.New("EHR patient not readable")

// readPatient GETs a Patient by full URL, which must be on this EHR's FHIR
// base: the backend token never goes anywhere else.
func (c *ehrClient) readPatient(ctx context.Context, fullURL string) (*fhirPatient, error) {
	id, ok := strings.CutPrefix(fullURL, c.cfg.FHIRBase+"/Patient/")
	if !ok || !validID(id) {
		return nil, fmt.Errorf("patient URL %q is not on the trusted EHR: %w", fullURL, errPatientGone)
	}
	for attempt := 0; ; attempt++ {
		bt, err := c.backendToken(ctx)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequest(http.MethodGet, c.cfg.FHIRBase+"/Patient/"+id, nil)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+bt)
		var p fhirPatient
		st, err := c.do(ctx, req, &p)
		if err != nil {
			return nil, err
		}
		if st == http.StatusUnauthorized && attempt == 0 {
			c.dropToken(bt)
			continue
		}
		if st == http.StatusNotFound || st == http.StatusGone || st == http.StatusForbidden {
			return nil, fmt.Errorf("patient read status %d: %w", st, errPatientGone)
		}
		if st != http.StatusOK || p.ResourceType != "Patient" || p.ID != id {
			return nil, fmt.Errorf("patient read status %d: %w", st, errUpstream)
		}
		return &p, nil
	}
}

// validID is FHIR's id syntax.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.') {
			return false
		}
	}
	return true
}
