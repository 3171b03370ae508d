package otheras

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
)

// grantData is what a code or refresh token stands for.
type grantData struct {
	ClientID   string `json:"client_id"`
	Username   string `json:"username,omitempty"`
	Scopes     string `json:"scopes"`
	PatientID  string `json:"patient,omitempty"`
	EHRPatient string `json:"ehr_patient,omitempty"`
	// EHRRole and EHRRef name the EHR patient in a refresh family by the
	// trusted EHR (roleTrusted+index) and a relative reference, never by
	// URL, so a refresh after a restart on other ports names the EHR's
	// current FHIR base. EHRPatient is empty then.
	EHRRole  string `json:"ehr_role,omitempty"`
	EHRRef   string `json:"ehr_ref,omitempty"`
	Launch   bool   `json:"launch,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
	AuthTime int64  `json:"auth_time,omitempty"`
	Family   string `json:"family,omitempty"`
	Flow     string `json:"flow,omitempty"`
}

type codeRecord struct {
	grantData
	RedirectURI string `json:"redirect_uri"`
	Challenge   string `json:"challenge"`
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
	rec := codeRecord{
		grantData: grantData{
			ClientID: req.ClientID, Username: req.Username, Scopes: granted.String(),
			PatientID: req.PatientID, EHRPatient: req.EHRPatient, Launch: req.Launch,
			Nonce: req.Nonce, AuthTime: req.AuthTime, Flow: req.Flow,
		},
		RedirectURI: req.RedirectURI, Challenge: req.Challenge,
	}
	code, err := s.codes.Issue(ctx, rec)
	if err != nil {
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

func (s *Server) grantCode(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	if !c.HasGrant(authkit.GrantAuthorizationCode) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for authorization_code")
	}
	code, redirect, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	if code == "" || redirect == "" || verifier == "" {
		return nil, authkit.ErrInvalidRequest.With("code, redirect_uri and code_verifier are required")
	}
	// A replay revokes all the first use issued (RFC 6749 §4.1.2): the
	// access token it issued, before now, expires before now + Access.
	var rec codeRecord
	revoke := func(first authkit.CodeUse) {
		s.revocations.RevokeFamily(ctx, first.Family)
		s.revocations.RevokeJTI(ctx, first.JTI, s.cfg.Now().Add(s.cfg.Lifetimes.Access))
	}
	used, err := s.codes.Redeem(ctx, code, &rec, revoke)
	if err != nil {
		return nil, err
	}
	withFlow(ctx, rec.Flow)
	rec.Family = used.Family
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
	return s.issue(ctx, c, rec.grantData, set, used.JTI, true)
}

// grantRefresh is the refresh_token grant (RFC 6749 §6) with rotation.
func (s *Server) grantRefresh(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	var g grantData
	set, err := s.refresh.Grant(ctx, c, form, &g)
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, c, g, set, authkit.RandomString(16), false)
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
	ehrPatient := s.ehrPatientURL(g)
	if ehrPatient != "" {
		resp.FHIRContext = append(resp.FHIRContext, fhirContext{Type: "Patient", Identifier: &Identifier{System: systemURI, Value: ehrPatient}, Role: RoleLaunchFullURL})
	}
	claims := accessClaims{
		Iss: s.cfg.Issuer, Sub: g.Username, Aud: []string{s.cfg.FHIRBase},
		Exp: now.Add(life).Unix(), Iat: now.Unix(), Jti: jti, ClientID: c.ID,
		Scope: set.String(), Patient: patient, EHRPatient: ehrPatient, FHIRUser: fhirUser, Family: g.Family,
	}
	at, err := s.signer.SignMAC(claims, authkit.TypAccess)
	if err != nil {
		return nil, err
	}
	resp.AccessToken = at
	if set.Has("openid") && g.Username != "" {
		idc := authkit.IDClaims{Iss: s.cfg.Issuer, Sub: g.Username, Aud: c.ID, Exp: now.Add(life).Unix(), Iat: now.Unix(), AuthTime: g.AuthTime, FHIRUser: fhirUser}
		if first {
			idc.Nonce = g.Nonce
		}
		if set.Has("profile") {
			idc.Name, idc.Username = user.DisplayName, user.Username
		}
		if resp.IDToken, err = s.signer.Sign(idc, authkit.TypIDToken); err != nil {
			return nil, err
		}
	}
	if grant, _ := scope.Parse(g.Scopes); c.HasGrant(authkit.GrantRefreshToken) && (grant.Has("offline_access") || grant.Has("online_access")) {
		rec := g
		rec.Nonce = ""
		if role, ref := s.ehrRef(ehrPatient); role != "" {
			rec.EHRRole, rec.EHRRef, rec.EHRPatient = role, ref, ""
		}
		if resp.RefreshToken, err = s.refresh.Issue(ctx, rec); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// roleTrusted names Config.TrustedIssuers[i] in a stored grant.
const roleTrusted = "trusted:"

// ehrRef splits the full URL of a resource on a trusted EHR's FHIR server
// into the EHR's role and the relative reference; role is "" for a URL on
// no trusted EHR's server.
func (s *Server) ehrRef(full string) (role, ref string) {
	for i, t := range s.cfg.TrustedIssuers {
		if t.FHIRBase == "" {
			continue
		}
		if rel, ok := strings.CutPrefix(full, strings.TrimSuffix(t.FHIRBase, "/")+"/"); ok && rel != "" {
			return roleTrusted + strconv.Itoa(i), rel
		}
	}
	return "", ""
}

// ehrPatientURL is the EHR patient's full URL under the trusted EHR's
// current FHIR base.
func (s *Server) ehrPatientURL(g grantData) string {
	if g.EHRRole == "" {
		return g.EHRPatient
	}
	i, err := strconv.Atoi(strings.TrimPrefix(g.EHRRole, roleTrusted))
	if err != nil || !strings.HasPrefix(g.EHRRole, roleTrusted) || i < 0 || i >= len(s.cfg.TrustedIssuers) {
		return ""
	}
	return strings.TrimSuffix(s.cfg.TrustedIssuers[i].FHIRBase, "/") + "/" + g.EHRRef
}

// ErrInvalidToken is what VerifyAccess returns for any bearer that is not a
// live OtherAS access token for the Other FHIR server.
var ErrInvalidToken = errors.New("invalid access token")

// VerifyAccess checks a bearer token for the Other FHIR API: an HS256
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
	if err != nil || v.Type != authkit.TypAccess {
		return nil, nil, ErrInvalidToken
	}
	if c.Iss != s.cfg.Issuer || !slices.Contains(c.Aud, s.cfg.FHIRBase) || c.Jti == "" || c.Exp == 0 {
		return nil, nil, ErrInvalidToken
	}
	if !s.cfg.Now().Before(timeUnix(c.Exp)) || s.revocations.Revoked(c.Jti, c.Family) {
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
	form, ok := authkit.ReadPost(w, r)
	if !ok {
		return
	}
	who, err := s.auth.Authenticate(ctx, r, form, true)
	if err != nil {
		authkit.WriteIntrospectAuthError(w, err, who.Basic)
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
	return s.refresh.Introspect(ctx, tok, clientID, s.cfg.Issuer)
}

// handleRevoke is RFC 7009 for access and refresh tokens; revoking a
// refresh token revokes its whole family. Another client's token: 200,
// nothing revoked.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	s.refresh.ServeRevoke(w, r, s.auth, s.VerifyAccess)
}
