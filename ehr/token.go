package ehr

import (
	"context"
	"encoding/base64"
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
	// AudRoles names the servers the access token is for by role, never
	// by URL (see audRoles), so that a refresh after a restart on other
	// ports is for the servers' current bases. Empty means FHIRBase alone.
	AudRoles []string `json:"aud_roles,omitempty"`
	// Aud is the audience by URL, as grants stored before AudRoles name
	// it; read only (see audBases).
	Aud []string `json:"aud,omitempty"`
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

// grantCode is the authorization_code grant (RFC 6749 §4.1.3, PKCE).
func (s *Server) grantCode(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	if !c.HasGrant(authkit.GrantAuthorizationCode) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for authorization_code")
	}
	code, redirect, verifier := form.Get("code"), form.Get("redirect_uri"), form.Get("code_verifier")
	if code == "" || redirect == "" || verifier == "" {
		return nil, authkit.ErrInvalidRequest.With("code, redirect_uri and code_verifier are required")
	}
	// A replay revokes all the first use issued (RFC 6749 §4.1.2).
	var rec codeRecord
	used, err := s.codes.Redeem(ctx, code, &rec, func(first authkit.CodeUse) { s.revokeReplayed(ctx, first) })
	if err != nil {
		return nil, err
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
func (s *Server) revokeReplayed(ctx context.Context, u authkit.CodeUse) {
	now := s.cfg.Now()
	s.revocations.RevokeFamily(ctx, u.Family)
	s.revocations.RevokeJTI(ctx, u.JTI, now.Add(s.cfg.Lifetimes.Access))
	// Whether or not the first use issued a launch-token: its id is
	// revoked and consumed, so the partner's introspection answers
	// inactive until a launch-token (issued before now) has expired.
	s.revocations.RevokeJTI(ctx, u.LaunchJTI, now.Add(s.cfg.Lifetimes.LaunchToken))
	s.ltUsed.Mark(u.LaunchJTI, now.Add(s.cfg.Lifetimes.LaunchToken))
}

// grantRefresh is the refresh_token grant (RFC 6749 §6) with rotation.
func (s *Server) grantRefresh(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	var g grantData
	set, err := s.refresh.Grant(ctx, c, form, &g)
	if err != nil {
		return nil, err
	}
	return s.issueWith(ctx, c, g, set, authkit.RandomString(16), "")
}

func (s *Server) grantClientCredentials(ctx context.Context, c *authkit.Client, form url.Values) (*TokenResponse, error) {
	if !c.HasGrant(authkit.GrantClientCredentials) {
		return nil, authkit.ErrUnauthorizedClient.With("client is not registered for client_credentials")
	}
	asked, err := scope.Parse(form.Get("scope"))
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
	at, err := s.signer.SignMAC(claims, authkit.TypAccess)
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
	aud := s.audBases(g)
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
	at, err := s.signer.SignMAC(claims, authkit.TypAccess)
	if err != nil {
		return nil, err
	}
	resp.AccessToken = at
	if withID {
		idc := authkit.IDClaims{
			Iss: s.cfg.Issuer, Sub: g.Username, Aud: c.ID, Exp: now.Add(life).Unix(), Iat: now.Unix(),
			AuthTime: g.AuthTime, FHIRUser: fhirUser,
		}
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
	// Rotation keeps the original grant: a down-scoped refresh still gets
	// a refresh token for the full grant (RFC 6749 §6).
	if grant, _ := scope.Parse(g.Scopes); c.HasGrant(authkit.GrantRefreshToken) && (grant.Has("offline_access") || grant.Has("online_access")) {
		rec := g
		// The launch-token is issued at the code exchange only, so its
		// partner audience is not kept.
		rec.Nonce, rec.LaunchAud = "", nil
		if resp.RefreshToken, err = s.refresh.Issue(ctx, rec); err != nil {
			return nil, err
		}
	}
	if first && set.Has("launch-token") && len(g.LaunchAud) > 0 {
		if resp.LaunchToken, err = s.launchToken(c, g, user, now, launchJTI); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// Audience roles: this AS's own FHIR server, and Config.Governed[i].
const (
	roleSelf     = "self"
	roleGoverned = "governed:"
)

// audRoles names the FHIR bases of an access token's audience by role
// (roleSelf, roleGoverned+index), which survive a restart on other ports.
func (s *Server) audRoles(bases []string) []string {
	var out []string
	for _, b := range bases {
		if authkit.SameBase(b, s.cfg.FHIRBase) {
			out = append(out, roleSelf)
			continue
		}
		for i, g := range s.cfg.Governed {
			if authkit.SameBase(b, g.FHIRBase) {
				out = append(out, roleGoverned+strconv.Itoa(i))
				break
			}
		}
	}
	return out
}

// audBases is the access-token audience of a grant with the servers'
// current FHIR bases. A grant stored by URL (before roles) keeps the
// bases that are still configured; with none left it is for FHIRBase.
func (s *Server) audBases(g grantData) []string {
	var out []string
	add := func(b string) {
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	for _, r := range g.AudRoles {
		if r == roleSelf {
			add(s.cfg.FHIRBase)
		} else if i, err := strconv.Atoi(strings.TrimPrefix(r, roleGoverned)); err == nil && strings.HasPrefix(r, roleGoverned) && i >= 0 && i < len(s.cfg.Governed) {
			add(s.cfg.Governed[i].FHIRBase)
		}
	}
	if len(g.AudRoles) == 0 {
		for _, b := range g.Aud {
			if authkit.SameBase(b, s.cfg.FHIRBase) {
				add(s.cfg.FHIRBase)
			} else if gv, ok := s.governed(b); ok {
				add(gv.FHIRBase)
			}
		}
	}
	if len(out) == 0 {
		out = []string{s.cfg.FHIRBase}
	}
	return out
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
	return s.signer.Sign(claims, authkit.TypLaunchToken)
}
