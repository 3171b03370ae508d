package ehr

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
)

// ErrInvalidToken is what VerifyAccess returns for any bearer that is not a
// live access token for this FHIR server.
var ErrInvalidToken = errors.New("invalid access token")

// maxCache bounds the verified-token cache (about 2 KB an entry): an app
// presents its token on every request, so a few thousand cover every app
// in use; under load, where each flow's token is new, it keeps the memory
// flat.
const maxCache = 4096

// VerifyAccess checks a bearer token for the EHR FHIR API: an HS256
// at+jwt from this issuer, aud = FHIRBase, not expired, not revoked.
// launch-tokens, id_tokens, refresh tokens and tokens for another server
// are refused. Verified tokens are cached, so a repeat costs a map lookup
// plus the expiry and revocation checks.
func (s *Server) VerifyAccess(ctx context.Context, bearer string) (*authkit.Access, error) {
	return s.verifyAt(bearer, s.cfg.FHIRBase)
}

// VerifyAccessAt returns the bearer check for a governed FHIR server
// (direction C): the token's aud must hold base, and a patient-level token
// is confined to the patient's id on that server (the patient_at claim),
// never to the EHR id; without one, patient/ scopes grant nothing there.
// The encounter is the EHR's and is dropped. Any other base: every token
// is refused.
func (s *Server) VerifyAccessAt(base string) func(ctx context.Context, bearer string) (*authkit.Access, error) {
	base = strings.TrimSuffix(base, "/")
	if authkit.SameBase(base, s.cfg.FHIRBase) {
		return s.VerifyAccess
	}
	_, ok := s.governed(base)
	return func(ctx context.Context, bearer string) (*authkit.Access, error) {
		if !ok {
			return nil, ErrInvalidToken
		}
		return s.verifyAt(bearer, base)
	}
}

func (s *Server) verifyAt(bearer, base string) (*authkit.Access, error) {
	if bearer == "" || len(bearer) > 8192 {
		return nil, ErrInvalidToken
	}
	now := s.cfg.Now()
	s.cacheMu.RLock()
	e, ok := s.accessCache[bearer]
	s.cacheMu.RUnlock()
	if !ok {
		var err error
		e, err = s.parseAccess(bearer)
		if err != nil {
			return nil, err
		}
		s.cacheMu.Lock()
		if len(s.accessCache) >= maxCache {
			clear(s.accessCache)
		}
		s.accessCache[bearer] = e
		s.cacheMu.Unlock()
	}
	if !now.Before(e.access.Expires) {
		return nil, ErrInvalidToken
	}
	if s.revocations.Revoked(e.access.TokenID, e.family) {
		return nil, ErrInvalidToken
	}
	if !slices.Contains(e.access.Audience, base) {
		return nil, ErrInvalidToken
	}
	if base == s.cfg.FHIRBase {
		return e.access, nil
	}
	a := *e.access
	a.PatientID, a.EncounterID = e.patientAt[base], ""
	return &a, nil
}

// cachedAccess is a verified token; family is its refresh family ("" for
// Backend Services tokens).
type cachedAccess struct {
	access    *authkit.Access
	family    string
	patientAt map[string]string
}

// parseAccess verifies signature and static claims.
func (s *Server) parseAccess(bearer string) (*cachedAccess, error) {
	var c accessClaims
	v, err := s.signer.Verify(bearer, &c)
	if err != nil || v.Type != authkit.TypAccess {
		return nil, ErrInvalidToken
	}
	if c.Iss != s.cfg.Issuer || len(c.Aud) == 0 || c.Jti == "" || c.Exp == 0 {
		return nil, ErrInvalidToken
	}
	set, err := scope.Parse(c.Scope)
	if err != nil {
		return nil, ErrInvalidToken
	}
	return &cachedAccess{family: c.Family, patientAt: c.PatientAt, access: &authkit.Access{
		TokenID: c.Jti, ClientID: c.ClientID, Subject: c.Sub, FHIRUser: c.FHIRUser,
		PatientID: c.Patient, EncounterID: c.Encounter, PatientSubject: c.PatientUser, Scopes: set, Audience: c.Aud,
		IssuedAt: time.Unix(c.Iat, 0), Expires: time.Unix(c.Exp, 0),
	}}, nil
}
