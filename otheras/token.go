package otheras

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
)

// JWT typ headers.
const (
	typAccess  = "at+jwt"
	typIDToken = "JWT"
)

// grantData is what a code or refresh token stands for.
type grantData struct {
	ClientID   string `json:"client_id"`
	Username   string `json:"username,omitempty"`
	Scopes     string `json:"scopes"`
	PatientID  string `json:"patient,omitempty"`
	EHRPatient string `json:"ehr_patient,omitempty"`
	Launch     bool   `json:"launch,omitempty"`
	Nonce      string `json:"nonce,omitempty"`
	AuthTime   int64  `json:"auth_time,omitempty"`
	Family     string `json:"family,omitempty"`
	Flow       string `json:"flow,omitempty"`
}

type codeRecord struct {
	grantData
	RedirectURI string `json:"redirect_uri"`
	Challenge   string `json:"challenge"`
}

type refreshRecord struct {
	grantData
	Used bool `json:"used,omitempty"`
}

type usedCode struct {
	Family string `json:"family"`
	JTI    string `json:"jti"`
	Exp    int64  `json:"exp"`
}

type accessClaims struct {
	Iss        string   `json:"iss"`
	Sub        string   `json:"sub"`
	Aud        []string `json:"aud"`
	Exp        int64    `json:"exp"`
	Iat        int64    `json:"iat"`
	Jti        string   `json:"jti"`
	ClientID   string   `json:"client_id"`
	Scope      string   `json:"scope"`
	Patient    string   `json:"patient,omitempty"`
	EHRPatient string   `json:"ehr_patient,omitempty"`
	FHIRUser   string   `json:"fhirUser,omitempty"`
	Family     string   `json:"fam,omitempty"`
}

type idClaims struct {
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Aud      string `json:"aud"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	FHIRUser string `json:"fhirUser,omitempty"`
	Name     string `json:"name,omitempty"`
	Username string `json:"preferred_username,omitempty"`
}

// TokenResponse is the token endpoint's success body (RFC 6749 §5.1 with
// SMART's launch context).
type TokenResponse struct {
	AccessToken       string        `json:"access_token"`
	TokenType         string        `json:"token_type"`
	ExpiresIn         int64         `json:"expires_in"`
	Scope             string        `json:"scope"`
	IDToken           string        `json:"id_token,omitempty"`
	RefreshToken      string        `json:"refresh_token,omitempty"`
	Patient           string        `json:"patient,omitempty"`
	FHIRContext       []fhirContext `json:"fhirContext,omitempty"`
	NeedPatientBanner *bool         `json:"need_patient_banner,omitempty"`
	SmartStyleURL     string        `json:"smart_style_url,omitempty"`
}

func timeUnix(n int64) time.Time { return time.Unix(n, 0) }

func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, req *authRequest, granted scope.Set) {
	ctx := r.Context()
	code := authkit.RandomString(32)
	rec := codeRecord{
		grantData: grantData{
			ClientID: req.ClientID, Username: req.Username, Scopes: granted.String(),
			PatientID: req.PatientID, EHRPatient: req.EHRPatient, Launch: req.Launch,
			Nonce: req.Nonce, AuthTime: req.AuthTime, Flow: req.Flow,
		},
		RedirectURI: req.RedirectURI, Challenge: req.Challenge,
	}
	b, _ := json.Marshal(rec)
	if err := s.ephemeral.Put(ctx, bucketCode, authkit.Hash(code), b, s.cfg.Now().Add(s.cfg.Lifetimes.Code)); err != nil {
		s.logError(ctx, "store code", err)
		authkit.RedirectError(w, r, req.RedirectURI, authkit.ErrServerError, req.State, s.cfg.Issuer)
		return
	}
	q := url.Values{"code": {code}, "iss": {s.cfg.Issuer}}
	if req.State != "" {
		q.Set("state", req.State)
	}
	authkit.Redirect(w, r, req.RedirectURI, q)
}

// handleToken is the token endpoint (RFC 6749 §3.2, §4.1.3, §6). Every
// answer is no-store.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		authkit.WriteError(w, authkit.ErrInvalidRequest.With("use POST"), false)
		return
	}
	// RFC 8693 §2.1 and RFC 8707 allow several resource and audience
	// parameters; only token exchange reads them.
	form, err := authkit.ParseForm(r, false, "resource", "audience")
	if err != nil {
		authkit.WriteError(w, err, false)
		return
	}
	who, err := s.auth.Authenticate(ctx, r, form, false)
	if err != nil {
		authkit.WriteError(w, err, who.Basic)
		return
	}
	var resp any
	switch form.Get("grant_type") {
	case authkit.GrantAuthorizationCode:
		resp, err = s.grantCode(ctx, who.Client, form)
	case authkit.GrantRefreshToken:
		resp, err = s.grantRefresh(ctx, who.Client, form)
	case GrantTokenExchange:
		resp, err = s.grantExchange(ctx, who.Client, form)
	case "":
		err = authkit.ErrInvalidRequest.With("grant_type is required")
	default:
		err = authkit.ErrUnsupportedGrantType.With("grant_type not supported")
	}
	if err != nil {
		var e *authkit.Error
		if !errors.As(err, &e) {
			s.logError(ctx, "token", err)
		}
		authkit.WriteError(w, err, who.Basic)
		return
	}
	authkit.WriteJSON(w, http.StatusOK, resp)
}

func (s *Server) grantCode(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	if !c.HasGrant(authkit.GrantAuthorizationCode) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for authorization_code")
	}
	code, redirect, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	if code == "" || redirect == "" || verifier == "" {
		return nil, authkit.ErrInvalidRequest.With("code, redirect_uri and code_verifier are required")
	}
	key := authkit.Hash(code)
	errUsed := authkit.ErrInvalidGrant.With("code is invalid, expired or already used")
	now := s.cfg.Now()
	// The replay marker names what this use will issue and is written
	// before the code is taken: a replay, even one racing this use, finds
	// it and revokes all of it (RFC 6749 §4.1.2).
	used := usedCode{Family: authkit.RandomString(16), JTI: authkit.RandomString(16), Exp: now.Add(s.cfg.Lifetimes.Access).Unix()}
	ub, _ := json.Marshal(used)
	if err := s.ephemeral.Add(ctx, bucketUsedCode, key, ub, now.Add(max(s.cfg.Lifetimes.Access, s.cfg.Lifetimes.Refresh))); err != nil {
		if !errors.Is(err, authkit.ErrExists) {
			return nil, fmt.Errorf("record code use: %w", err)
		}
		if pb, err := s.ephemeral.Get(ctx, bucketUsedCode, key); err == nil {
			var u usedCode
			if json.Unmarshal(pb, &u) == nil {
				s.revokeFamily(ctx, u.Family)
				s.revokeJTI(ctx, u.JTI, timeUnix(u.Exp))
			}
		}
		return nil, errUsed
	}
	b, err := s.ephemeral.Take(ctx, bucketCode, key)
	if err != nil {
		// Unknown or expired: nothing was issued, forget the marker.
		_ = s.ephemeral.Delete(ctx, bucketUsedCode, key)
		return nil, errUsed
	}
	var rec codeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode code: %w", err)
	}
	withFlow(ctx, rec.Flow)
	rec.Family = used.Family
	jti := used.JTI
	if rec.ClientID != c.ID {
		return nil, authkit.ErrInvalidGrant.With("code was issued to another client")
	}
	if rec.RedirectURI != redirect {
		return nil, authkit.ErrInvalidGrant.With("redirect_uri does not match the authorization request")
	}
	if !authkit.VerifyPKCE(rec.Challenge, verifier) {
		return nil, authkit.ErrInvalidGrant.With("code_verifier does not match the code_challenge")
	}
	set, _ := scope.Parse(rec.Scopes)
	return s.issue(ctx, c, rec.grantData, set, jti, true)
}

func (s *Server) grantRefresh(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	if !c.HasGrant(authkit.GrantRefreshToken) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for refresh_token")
	}
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, authkit.ErrInvalidRequest.With("refresh_token is required")
	}
	key := authkit.Hash(tok)
	b, err := s.durable.Get(ctx, bucketRefresh, key)
	if err != nil {
		return nil, authkit.ErrInvalidGrant.With("refresh token is invalid or expired")
	}
	var rec refreshRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode refresh token: %w", err)
	}
	if rec.ClientID != c.ID {
		return nil, authkit.ErrInvalidGrant.With("refresh token was issued to another client")
	}
	if s.familyRevoked(rec.Family) {
		return nil, authkit.ErrInvalidGrant.With("refresh token was revoked")
	}
	if rec.Used {
		// Reuse of a rotated token: someone else has it. Revoke the family.
		s.revokeFamily(ctx, rec.Family)
		return nil, authkit.ErrInvalidGrant.With("refresh token was already used")
	}
	granted, _ := scope.Parse(rec.Scopes)
	issue := granted
	if sc := form.Get("scope"); sc != "" {
		asked, err := scope.Parse(sc)
		if err != nil {
			return nil, authkit.ErrInvalidScope.With("scope is malformed")
		}
		if !asked.Subset(granted) {
			return nil, authkit.ErrInvalidScope.With("scope exceeds the original grant")
		}
		issue = asked
	}
	used := rec
	used.Used = true
	nb, _ := json.Marshal(used)
	if err := s.durable.Swap(ctx, bucketRefresh, key, b, nb, s.cfg.Now().Add(s.cfg.Lifetimes.Refresh)); err != nil {
		if errors.Is(err, authkit.ErrConflict) {
			s.revokeFamily(ctx, rec.Family)
			return nil, authkit.ErrInvalidGrant.With("refresh token was already used")
		}
		return nil, authkit.ErrInvalidGrant.With("refresh token is invalid or expired")
	}
	return s.issue(ctx, c, rec.grantData, issue, authkit.RandomString(16), false)
}

// issue mints the token response for a user grant. The access token is
// for the Other FHIR server only; patient is the Other id and the EHR
// patient travels as a full-URL fhirContext entry (flows.md Decisions).
func (s *Server) issue(ctx context.Context, c *authkit.Client, g grantData, set scope.Set, jti string, first bool) (*TokenResponse, error) {
	now := s.cfg.Now()
	life := s.cfg.Lifetimes.Access
	var user User
	if g.Username != "" {
		u, err := s.cfg.Users.Lookup(ctx, g.Username)
		if err != nil {
			return nil, authkit.ErrInvalidGrant.With("the user is no longer known")
		}
		user = u
	}
	fhirUser := ""
	if set.Has("fhirUser") && user.FHIRUser != "" {
		fhirUser = s.cfg.FHIRBase + "/" + user.FHIRUser
	}
	resp := &TokenResponse{TokenType: "Bearer", ExpiresIn: int64(life / time.Second), Scope: set.String()}
	patient := ""
	if g.PatientID != "" && (set.Has("launch/patient") || set.Has("launch") || set.HasLevel(scope.Patient)) {
		patient = g.PatientID
		resp.Patient = patient
		resp.FHIRContext = append(resp.FHIRContext, fhirContext{Reference: "Patient/" + patient})
		banner := !g.Launch
		resp.NeedPatientBanner = &banner
		resp.SmartStyleURL = s.url("/smart-style.json")
	}
	if g.EHRPatient != "" {
		resp.FHIRContext = append(resp.FHIRContext, fhirContext{Type: "Patient", Identifier: &Identifier{System: systemURI, Value: g.EHRPatient}, Role: RoleLaunchFullURL})
	}
	claims := accessClaims{
		Iss: s.cfg.Issuer, Sub: g.Username, Aud: []string{s.cfg.FHIRBase},
		Exp: now.Add(life).Unix(), Iat: now.Unix(), Jti: jti, ClientID: c.ID,
		Scope: set.String(), Patient: patient, EHRPatient: g.EHRPatient, FHIRUser: fhirUser, Family: g.Family,
	}
	at, err := s.signer.SignMAC(claims, typAccess)
	if err != nil {
		return nil, err
	}
	resp.AccessToken = at
	if set.Has("openid") && g.Username != "" {
		idc := idClaims{Iss: s.cfg.Issuer, Sub: g.Username, Aud: c.ID, Exp: now.Add(life).Unix(), Iat: now.Unix(), AuthTime: g.AuthTime, FHIRUser: fhirUser}
		if first {
			idc.Nonce = g.Nonce
		}
		if set.Has("profile") {
			idc.Name, idc.Username = user.DisplayName, user.Username
		}
		if resp.IDToken, err = s.signer.Sign(idc, typIDToken); err != nil {
			return nil, err
		}
	}
	if grant, _ := scope.Parse(g.Scopes); c.HasGrant(authkit.GrantRefreshToken) && (grant.Has("offline_access") || grant.Has("online_access")) {
		rt := authkit.RandomString(32)
		rec := refreshRecord{grantData: g}
		rec.Nonce = ""
		b, _ := json.Marshal(rec)
		if err := s.durable.Put(ctx, bucketRefresh, authkit.Hash(rt), b, now.Add(s.cfg.Lifetimes.Refresh)); err != nil {
			return nil, fmt.Errorf("store refresh token: %w", err)
		}
		resp.RefreshToken = rt
	}
	return resp, nil
}

func (s *Server) revokeFamily(ctx context.Context, fam string) {
	if fam == "" {
		return
	}
	exp := s.cfg.Now().Add(max(s.cfg.Lifetimes.Refresh, s.cfg.Lifetimes.Access))
	s.revMu.Lock()
	s.revokedFam[fam] = exp
	s.revMu.Unlock()
	if err := s.durable.Put(ctx, bucketRevokedFam, fam, []byte{1}, exp); err != nil {
		s.logError(ctx, "persist family revocation", err)
	}
}

func (s *Server) revokeJTI(ctx context.Context, jti string, exp time.Time) {
	if jti == "" {
		return
	}
	s.revMu.Lock()
	s.revokedJTI[jti] = exp
	s.revMu.Unlock()
	if err := s.durable.Put(ctx, bucketRevokedJTI, jti, []byte{1}, exp); err != nil {
		s.logError(ctx, "persist revocation", err)
	}
}

func (s *Server) familyRevoked(fam string) bool {
	if fam == "" {
		return false
	}
	s.revMu.RLock()
	defer s.revMu.RUnlock()
	_, ok := s.revokedFam[fam]
	return ok
}

func (s *Server) revoked(jti, fam string) bool {
	s.revMu.RLock()
	defer s.revMu.RUnlock()
	if _, ok := s.revokedJTI[jti]; ok {
		return true
	}
	_, ok := s.revokedFam[fam]
	return fam != "" && ok
}

// ErrInvalidToken is what VerifyAccess returns for any bearer that is not a
// live OtherAS access token for the Other FHIR server.
var ErrInvalidToken = errors.New("invalid access token")

// VerifyAccess checks a bearer token for the Other FHIR API: an RS256
// at+jwt from this issuer, aud = FHIRBase, not expired, not revoked. EHR
// access tokens, id_tokens, launch-tokens and refresh tokens are refused.
func (s *Server) VerifyAccess(ctx context.Context, bearer string) (*authkit.Access, error) {
	a, _, err := s.parseAccess(bearer)
	return a, err
}

func (s *Server) parseAccess(bearer string) (*authkit.Access, *accessClaims, error) {
	if bearer == "" || len(bearer) > 8192 || strings.Count(bearer, ".") != 2 {
		return nil, nil, ErrInvalidToken
	}
	var c accessClaims
	v, err := s.signer.Verify(bearer, &c)
	if err != nil || v.Type != typAccess {
		return nil, nil, ErrInvalidToken
	}
	if c.Iss != s.cfg.Issuer || !slices.Contains(c.Aud, s.cfg.FHIRBase) || c.Jti == "" || c.Exp == 0 {
		return nil, nil, ErrInvalidToken
	}
	if !s.cfg.Now().Before(timeUnix(c.Exp)) || s.revoked(c.Jti, c.Family) {
		return nil, nil, ErrInvalidToken
	}
	set, err := scope.Parse(c.Scope)
	if err != nil {
		return nil, nil, ErrInvalidToken
	}
	return &authkit.Access{
		TokenID: c.Jti, ClientID: c.ClientID, Subject: c.Sub, FHIRUser: c.FHIRUser,
		PatientID: c.Patient, Scopes: set, Audience: c.Aud,
		IssuedAt: timeUnix(c.Iat), Expires: timeUnix(c.Exp),
	}, &c, nil
}

var inactive = map[string]any{"active": false}

// handleIntrospect is RFC 7662 for OtherAS's own tokens: a confidential
// client, authenticated as at the token endpoint, about its own tokens.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
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
	who, err := s.auth.Authenticate(ctx, r, form, true)
	if err != nil {
		if e := authkit.AsError(err); e.Code == authkit.ErrInvalidRequest.Code {
			authkit.WriteError(w, err, who.Basic)
			return
		}
		if !who.Basic {
			w.Header().Set("WWW-Authenticate", `Bearer realm="introspect"`)
		}
		authkit.WriteError(w, authkit.ErrInvalidClient.With("authentication required"), who.Basic)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		authkit.WriteError(w, authkit.ErrInvalidRequest.With("token is required"), false)
		return
	}
	authkit.WriteJSON(w, http.StatusOK, s.introspect(ctx, who.Client.ID, tok))
}

func (s *Server) introspect(ctx context.Context, clientID, tok string) map[string]any {
	if a, c, err := s.parseAccess(tok); err == nil {
		if a.ClientID != clientID {
			return inactive
		}
		out := map[string]any{
			"active": true, "token_type": "Bearer", "scope": a.Scopes.String(), "client_id": a.ClientID,
			"exp": a.Expires.Unix(), "iat": a.IssuedAt.Unix(), "iss": s.cfg.Issuer, "sub": a.Subject, "aud": a.Audience,
		}
		if a.FHIRUser != "" {
			out["fhirUser"] = a.FHIRUser
		}
		var ctxs []fhirContext
		if a.PatientID != "" {
			out["patient"] = a.PatientID
			ctxs = append(ctxs, fhirContext{Reference: "Patient/" + a.PatientID})
		}
		if c.EHRPatient != "" {
			ctxs = append(ctxs, fhirContext{Type: "Patient", Identifier: &Identifier{System: systemURI, Value: c.EHRPatient}, Role: RoleLaunchFullURL})
		}
		if len(ctxs) > 0 {
			out["fhirContext"] = ctxs
		}
		return out
	}
	b, err := s.durable.Get(ctx, bucketRefresh, authkit.Hash(tok))
	if err != nil {
		return inactive
	}
	var rec refreshRecord
	if json.Unmarshal(b, &rec) != nil || rec.Used || s.familyRevoked(rec.Family) || rec.ClientID != clientID {
		return inactive
	}
	out := map[string]any{"active": true, "token_type": "refresh_token", "client_id": rec.ClientID, "scope": rec.Scopes, "iss": s.cfg.Issuer}
	if rec.Username != "" {
		out["sub"] = rec.Username
	}
	return out
}

// handleRevoke is RFC 7009 for access and refresh tokens; revoking a
// refresh token revokes its whole family. Another client's token: 200,
// nothing revoked.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
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
	who, err := s.auth.Authenticate(ctx, r, form, false)
	if err != nil {
		authkit.WriteError(w, err, who.Basic)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		authkit.WriteError(w, authkit.ErrInvalidRequest.With("token is required"), false)
		return
	}
	if a, _, err := s.parseAccess(tok); err == nil {
		if a.ClientID == who.Client.ID {
			s.revokeJTI(ctx, a.TokenID, a.Expires)
		}
	} else if b, err := s.durable.Get(ctx, bucketRefresh, authkit.Hash(tok)); err == nil {
		var rec refreshRecord
		if json.Unmarshal(b, &rec) == nil && rec.ClientID == who.Client.ID {
			s.revokeFamily(ctx, rec.Family)
			_ = s.durable.Delete(ctx, bucketRefresh, authkit.Hash(tok))
		}
	}
	authkit.NoStore(w)
	w.WriteHeader(http.StatusOK)
}
