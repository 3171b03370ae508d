package ehr

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
)

// JWT typ headers tell the kinds of token apart.
const (
	typAccess      = "at+jwt"
	typLaunchToken = "launch-token+jwt"
	typIDToken     = "JWT"
)

// grantData is what a code or refresh token stands for.
type grantData struct {
	ClientID    string   `json:"client_id"`
	Username    string   `json:"username,omitempty"`
	Scopes      string   `json:"scopes"`
	PatientID   string   `json:"patient,omitempty"`
	EncounterID string   `json:"encounter,omitempty"`
	Nonce       string   `json:"nonce,omitempty"`
	AuthTime    int64    `json:"auth_time,omitempty"`
	LaunchAud   []string `json:"launch_aud,omitempty"`
	EHRLaunch   bool     `json:"ehr_launch,omitempty"`
	Family      string   `json:"family,omitempty"`
	// Aud is the access token's audience; empty means FHIRBase alone.
	Aud []string `json:"aud,omitempty"`
}

type refreshRecord struct {
	grantData
	Used bool `json:"used,omitempty"`
}

// usedCode is the replay marker of a code: what its first use issues.
type usedCode struct {
	Family    string `json:"family"`
	JTI       string `json:"jti"`
	LaunchJTI string `json:"launch_jti,omitempty"`
}

// FHIRContext is one SMART 2.2 fhirContext entry.
type FHIRContext struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Role       string      `json:"role,omitempty"`
}

// RoleLaunchFullURL marks a fhirContext entry naming a resource on another
// server by full URL (flows.md Decisions).
const RoleLaunchFullURL = "urn:sim:launch-full-url"

type accessClaims struct {
	Iss       string   `json:"iss"`
	Sub       string   `json:"sub"`
	Aud       []string `json:"aud"`
	Exp       int64    `json:"exp"`
	Iat       int64    `json:"iat"`
	Jti       string   `json:"jti"`
	ClientID  string   `json:"client_id"`
	Scope     string   `json:"scope"`
	Patient   string   `json:"patient,omitempty"`
	Encounter string   `json:"encounter,omitempty"`
	FHIRUser  string   `json:"fhirUser,omitempty"`
	Family    string   `json:"fam,omitempty"`
	IDIss     bool     `json:"oid,omitempty"` // an id_token accompanied it
	// PatientUser: the subject is a patient user, confined to Patient.
	PatientUser bool `json:"patient_user,omitempty"`
	// PatientAt is the patient's id on each governed server in aud where
	// it was found (direction C): that server confines the token to it.
	PatientAt map[string]string `json:"patient_at,omitempty"`
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

type launchTokenClaims struct {
	Iss         string        `json:"iss"`
	Sub         string        `json:"sub"`
	Aud         []string      `json:"aud"`
	Azp         string        `json:"azp"`
	SoftwareID  string        `json:"software_id,omitempty"`
	Iat         int64         `json:"iat"`
	Exp         int64         `json:"exp"`
	Jti         string        `json:"jti"`
	FHIRUser    string        `json:"fhirUser,omitempty"`
	FHIRContext []FHIRContext `json:"fhirContext"`
}

// TokenResponse is the token endpoint's success body (RFC 6749 §5.1 with
// SMART's launch context and the draft's launch_token).
type TokenResponse struct {
	AccessToken       string        `json:"access_token"`
	TokenType         string        `json:"token_type"`
	ExpiresIn         int64         `json:"expires_in"`
	Scope             string        `json:"scope"`
	IDToken           string        `json:"id_token,omitempty"`
	RefreshToken      string        `json:"refresh_token,omitempty"`
	Patient           string        `json:"patient,omitempty"`
	Encounter         string        `json:"encounter,omitempty"`
	FHIRContext       []FHIRContext `json:"fhirContext,omitempty"`
	NeedPatientBanner *bool         `json:"need_patient_banner,omitempty"`
	SmartStyleURL     string        `json:"smart_style_url,omitempty"`
	LaunchToken       string        `json:"launch_token,omitempty"`
}

func decodeSegment(seg string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(seg)
}

// handleToken is the token endpoint (RFC 6749 §3.2, §4.1.3, §6; SMART
// Backend Services). Every answer is no-store.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
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
	var resp *TokenResponse
	switch gt := form.Get("grant_type"); gt {
	case authkit.GrantAuthorizationCode:
		resp, err = s.grantCode(ctx, who.Client, form)
	case authkit.GrantRefreshToken:
		resp, err = s.grantRefresh(ctx, who.Client, form)
	case authkit.GrantClientCredentials:
		resp, err = s.grantClientCredentials(ctx, who.Client, form)
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

func (s *Server) grantCode(ctx context.Context, c *authkit.Client, form map[string][]string) (*TokenResponse, error) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if !c.HasGrant(authkit.GrantAuthorizationCode) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for authorization_code")
	}
	code, redirect, verifier := get("code"), get("redirect_uri"), get("code_verifier")
	if code == "" || redirect == "" || verifier == "" {
		return nil, authkit.ErrInvalidRequest.With("code, redirect_uri and code_verifier are required")
	}
	key := authkit.Hash(code)
	errUsed := authkit.ErrInvalidGrant.With("code is invalid, expired or already used")
	// The replay marker names what this use will issue and is written
	// before the code is taken: a replay, even one racing this use, finds
	// it and revokes all of it (RFC 6749 §4.1.2).
	used := usedCode{Family: authkit.RandomString(16), JTI: authkit.RandomString(16), LaunchJTI: authkit.RandomString(16)}
	ub, _ := json.Marshal(used)
	if err := s.ephemeral.Add(ctx, bucketUsedCode, key, ub, s.cfg.Now().Add(max(s.cfg.Lifetimes.Access, s.cfg.Lifetimes.Refresh))); err != nil {
		if !errors.Is(err, authkit.ErrExists) {
			return nil, fmt.Errorf("record code use: %w", err)
		}
		s.revokeReplayed(ctx, key)
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
	return s.issue(ctx, c, rec.grantData, used.JTI, used.LaunchJTI)
}

// revokeReplayed revokes everything the first use of a replayed code
// issued: the refresh family, the access token and the launch-token.
func (s *Server) revokeReplayed(ctx context.Context, key string) {
	ub, err := s.ephemeral.Get(ctx, bucketUsedCode, key)
	if err != nil {
		return
	}
	var u usedCode
	if json.Unmarshal(ub, &u) != nil {
		return
	}
	now := s.cfg.Now()
	s.revokeFamily(ctx, u.Family)
	s.revokeJTI(ctx, u.JTI, now.Add(s.cfg.Lifetimes.Access))
	if u.LaunchJTI != "" {
		s.revokeJTI(ctx, u.LaunchJTI, now.Add(s.cfg.Lifetimes.LaunchToken))
		_ = s.ephemeral.Put(ctx, bucketLTUsed, u.LaunchJTI, []byte{1}, now.Add(s.cfg.Lifetimes.LaunchToken*2))
	}
}

func (s *Server) grantRefresh(ctx context.Context, c *authkit.Client, form map[string][]string) (*TokenResponse, error) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if !c.HasGrant(authkit.GrantRefreshToken) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for refresh_token")
	}
	tok := get("refresh_token")
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
	issueScopes := granted
	if sc := get("scope"); sc != "" {
		asked, err := scope.Parse(sc)
		if err != nil {
			return nil, authkit.ErrInvalidScope.With("scope is malformed")
		}
		if !asked.Subset(granted) {
			return nil, authkit.ErrInvalidScope.With("scope exceeds the original grant")
		}
		issueScopes = asked
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
	g := rec.grantData
	resp, err := s.issueWith(ctx, c, g, issueScopes, authkit.RandomString(16), "")
	return resp, err
}

func (s *Server) grantClientCredentials(ctx context.Context, c *authkit.Client, form map[string][]string) (*TokenResponse, error) {
	if !c.HasGrant(authkit.GrantClientCredentials) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for client_credentials")
	}
	raw := ""
	if v := form["scope"]; len(v) > 0 {
		raw = v[0]
	}
	asked, err := scope.Parse(raw)
	if err != nil {
		return nil, authkit.ErrInvalidScope.With("scope is malformed")
	}
	limit := c.AllowedScopes()
	granted := asked.Filter(func(sc scope.Scope) bool {
		ok := sc.IsResource() && sc.Level == scope.System || sc.Raw == ScopeIntrospect && c.Introspector
		return ok && (limit == nil || limit.Covers(sc))
	})
	if len(granted) == 0 {
		return nil, authkit.ErrInvalidScope.With("no grantable system scope requested")
	}
	now := s.cfg.Now()
	life := s.cfg.Lifetimes.Backend
	claims := accessClaims{
		Iss: s.cfg.Issuer, Sub: c.ID, Aud: []string{s.cfg.FHIRBase},
		Exp: now.Add(life).Unix(), Iat: now.Unix(), Jti: authkit.RandomString(16),
		ClientID: c.ID, Scope: granted.String(),
	}
	at, err := s.signer.SignMAC(claims, typAccess)
	if err != nil {
		return nil, err
	}
	return &TokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(life / time.Second), Scope: granted.String()}, nil
}

func (s *Server) issue(ctx context.Context, c *authkit.Client, g grantData, jti, launchJTI string) (*TokenResponse, error) {
	set, _ := scope.Parse(g.Scopes)
	return s.issueWith(ctx, c, g, set, jti, launchJTI)
}

func (s *Server) absolute(ref string) string {
	if ref == "" {
		return ""
	}
	return s.cfg.FHIRBase + "/" + ref
}

// issueWith mints the token response for a user grant. launchJTI is set
// at the code exchange only (launch_token and id_token nonce only then);
// it is the jti of the launch-token, known beforehand so that a code
// replay can revoke it.
func (s *Server) issueWith(ctx context.Context, c *authkit.Client, g grantData, set scope.Set, jti, launchJTI string) (*TokenResponse, error) {
	now := s.cfg.Now()
	life := s.cfg.Lifetimes.Access
	first := launchJTI != ""
	var user User
	if g.Username != "" {
		u, err := s.cfg.Users.Lookup(ctx, g.Username)
		if err != nil {
			return nil, authkit.ErrInvalidGrant.With("the user is no longer known")
		}
		user = u
	}
	patientUser := user.Kind == PatientUser
	if patientUser {
		// Checked again here (a refresh outlives the consent): a patient
		// user's grant is their own record only.
		if g.PatientID != user.PatientID {
			return nil, authkit.ErrInvalidGrant.With("the grant is not for the user's own record")
		}
		set = forPatientUser(set, user.PatientID)
	}
	fhirUser := ""
	if set.Has("fhirUser") {
		fhirUser = s.absolute(user.FHIRUser)
	}
	resp := &TokenResponse{TokenType: "Bearer", ExpiresIn: int64(life / time.Second), Scope: set.String()}
	patient := ""
	if g.PatientID != "" && (set.Has("launch/patient") || set.Has("launch") || set.HasLevel(scope.Patient)) {
		patient = g.PatientID
		resp.Patient = patient
		resp.FHIRContext = append(resp.FHIRContext, FHIRContext{Reference: "Patient/" + patient})
	}
	encounter := ""
	if g.EncounterID != "" && (set.Has("launch/encounter") || set.Has("launch")) {
		encounter = g.EncounterID
		resp.Encounter = encounter
		resp.FHIRContext = append(resp.FHIRContext, FHIRContext{Reference: "Encounter/" + encounter})
	}
	if patient != "" {
		banner := !g.EHRLaunch
		resp.NeedPatientBanner = &banner
		resp.SmartStyleURL = s.url("/smart-style.json")
	}
	withID := set.Has("openid") && g.Username != ""
	aud := g.Aud
	if len(aud) == 0 {
		aud = []string{s.cfg.FHIRBase}
	}
	confined := patient
	if patientUser {
		confined = user.PatientID
	}
	patientAt := s.resolveGoverned(ctx, aud, confined)
	if patient != "" {
		for _, base := range aud {
			if id, ok := patientAt[base]; ok && id != patient {
				// The same person under another id: named by full URL,
				// as a resource on another server (flows.md Decisions).
				resp.FHIRContext = append(resp.FHIRContext, FHIRContext{Type: "Patient",
					Identifier: &Identifier{System: "urn:ietf:rfc:3986", Value: base + "/Patient/" + id}, Role: RoleLaunchFullURL})
			}
		}
	}
	claims := accessClaims{
		Iss: s.cfg.Issuer, Sub: g.Username, Aud: slices.Clone(aud), PatientAt: patientAt,
		Exp: now.Add(life).Unix(), Iat: now.Unix(), Jti: jti, ClientID: c.ID,
		Scope: set.String(), Patient: patient, Encounter: encounter, FHIRUser: fhirUser,
		Family: g.Family, IDIss: withID,
	}
	if patientUser {
		// Confined to their own Patient whatever the scopes.
		claims.Patient, claims.PatientUser = user.PatientID, true
	}
	at, err := s.signer.SignMAC(claims, typAccess)
	if err != nil {
		return nil, err
	}
	resp.AccessToken = at
	if withID {
		idc := idClaims{
			Iss: s.cfg.Issuer, Sub: g.Username, Aud: c.ID, Exp: now.Add(life).Unix(), Iat: now.Unix(),
			AuthTime: g.AuthTime, FHIRUser: fhirUser,
		}
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
	// Rotation keeps the original grant: a down-scoped refresh still gets
	// a refresh token for the full grant (RFC 6749 §6).
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
	if first && set.Has("launch-token") && len(g.LaunchAud) > 0 {
		lt, err := s.launchToken(c, g, user, now, launchJTI)
		if err != nil {
			return nil, err
		}
		resp.LaunchToken = lt
	}
	return resp, nil
}

// resolveGoverned finds the patient on each governed server in aud.
func (s *Server) resolveGoverned(ctx context.Context, aud []string, patient string) map[string]string {
	if patient == "" {
		return nil
	}
	var out map[string]string
	for _, base := range aud {
		g, ok := s.governed(base)
		if !ok || g.ResolvePatient == nil {
			continue
		}
		if id, ok := g.ResolvePatient(ctx, patient); ok && id != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[g.FHIRBase] = id
		}
	}
	return out
}

// launchToken mints the draft's launch-token (flows.md A.4).
func (s *Server) launchToken(c *authkit.Client, g grantData, user User, now time.Time, jti string) (string, error) {
	ctxs := []FHIRContext{}
	if g.PatientID != "" {
		ctxs = append(ctxs, FHIRContext{Type: "Patient", Identifier: &Identifier{System: "urn:ietf:rfc:3986", Value: s.absolute("Patient/" + g.PatientID)}, Role: RoleLaunchFullURL})
	}
	if g.EncounterID != "" {
		ctxs = append(ctxs, FHIRContext{Type: "Encounter", Identifier: &Identifier{System: "urn:ietf:rfc:3986", Value: s.absolute("Encounter/" + g.EncounterID)}, Role: RoleLaunchFullURL})
	}
	claims := launchTokenClaims{
		Iss: s.cfg.Issuer, Sub: g.Username, Aud: slices.Clone(g.LaunchAud), Azp: c.ID, SoftwareID: c.SoftwareID,
		Iat: now.Unix(), Exp: now.Add(s.cfg.Lifetimes.LaunchToken).Unix(), Jti: jti,
		FHIRUser: s.absolute(user.FHIRUser), FHIRContext: ctxs,
	}
	return s.signer.Sign(claims, typLaunchToken)
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
	if fam != "" {
		if _, ok := s.revokedFam[fam]; ok {
			return true
		}
	}
	return false
}
