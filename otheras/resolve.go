package otheras

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smart-sim/sim/internal/authkit"
)

// Launch-token shape (flows.md A.4 and Decisions).
const (
	// RoleLaunchFullURL marks a fhirContext entry naming a resource on
	// another server by full URL.
	RoleLaunchFullURL = "urn:sim:launch-full-url"
	systemURI         = "urn:ietf:rfc:3986"
	maxLaunchToken    = 8192
)

// fhirContext is one SMART 2.2 fhirContext entry.
type fhirContext struct {
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Role       string      `json:"role,omitempty"`
}

type launchTokenClaims struct {
	Iss         string        `json:"iss"`
	Sub         string        `json:"sub"`
	Aud         jwt.Audience  `json:"aud"`
	Azp         string        `json:"azp"`
	SoftwareID  string        `json:"software_id"`
	Iat         int64         `json:"iat"`
	Exp         int64         `json:"exp"`
	Jti         string        `json:"jti"`
	FHIRUser    string        `json:"fhirUser"`
	FHIRContext []fhirContext `json:"fhirContext"`
}

// launchContext is what a resolved launch-token gives the authorization.
type launchContext struct {
	Issuer     string
	Sub        string
	FHIRUser   string // EHR full URL
	EHRPatient string // EHR Patient full URL, "" when none in context
	PatientID  string // matched Other patient, "" when refused
	MatchNote  string // how the patient was matched
	Refusal    string // why patient context is refused ("" when matched or not asked)
}

// resolveLaunch checks a launch-token and resolves its context for client
// (flows.md A.7). Every refusal is an *authkit.Error; EHR trouble is
// temporarily_unavailable.
func (s *Server) resolveLaunch(ctx context.Context, flow string, client *authkit.Client, raw string, wantPatient bool) (*launchContext, *authkit.Error) {
	refuse := func(label, why string) *authkit.Error {
		s.decide(flow, label, why, true)
		return authkit.ErrInvalidRequest.With(why)
	}
	if len(raw) > maxLaunchToken || strings.Count(raw, ".") != 2 {
		return nil, refuse("launch-token?", "launch is not a launch-token")
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, refuse("launch-token?", "launch is not a launch-token signed with RS256")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, authkit.TypLaunchToken) {
		return nil, refuse("launch-token?", "launch is not a launch-token (an id_token or access token is never accepted as launch)")
	}
	// The claims are read before the signature is checked only to find
	// the issuer; they are acted on once the signature over these very
	// bytes verifies.
	var c launchTokenClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return nil, refuse("launch-token?", "launch-token claims are unreadable")
	}
	ehr := s.ehrs[strings.TrimRight(c.Iss, "/")]
	if ehr == nil || c.Iss != ehr.cfg.Issuer {
		// No call is made to an issuer we do not trust.
		return nil, refuse("issuer trusted?", "launch-token issuer is not a trusted EHR")
	}
	s.decide(flow, "issuer trusted?", "launch-token issuer "+ehr.cfg.Issuer+" is trusted", false)
	fail := func(err error) *authkit.Error {
		if errors.Is(err, errUpstream) {
			s.logError(ctx, "resolve launch-token", err)
			s.decide(flow, "EHR reachable?", "the trusted EHR did not answer in time or failed: the authorization fails closed", true)
			return authkit.ErrTemporarilyUnavail.With("the EHR that issued the launch-token is not reachable")
		}
		s.logError(ctx, "resolve launch-token", err)
		return authkit.ErrServerError
	}
	key, err := ehr.verificationKey(ctx, h.KeyID)
	if errors.Is(err, errUnknownKey) {
		return nil, refuse("signature valid?", "launch-token is not signed with a key of its issuer")
	}
	if err != nil {
		return nil, fail(err)
	}
	if _, err := jws.Verify(key); err != nil {
		return nil, refuse("signature valid?", "launch-token signature does not verify")
	}
	now := s.cfg.Now()
	switch {
	case c.Jti == "" || c.Exp == 0:
		return nil, refuse("launch-token valid?", "launch-token lacks jti or exp")
	case now.Unix() >= c.Exp:
		return nil, refuse("launch-token valid?", "launch-token expired")
	case !slices.Contains([]string(c.Aud), s.cfg.Issuer):
		return nil, refuse("launch-token valid?", "launch-token is not addressed to this authorization server")
	case client.SoftwareID == "" || c.SoftwareID != client.SoftwareID:
		return nil, refuse("same app?", "launch-token was issued to another app (software_id differs)")
	}
	// Single use here too, so that racing authorizations with one token
	// never both proceed, whatever the EHR answers.
	if err := s.ltUsed.Use(c.Iss+"\x00"+c.Jti, launchMarkExpiry(c.Exp)); err != nil {
		return nil, refuse("launch-token unused?", "launch-token was already used")
	}
	in, err := ehr.introspect(ctx, raw)
	if err != nil {
		return nil, fail(err)
	}
	switch {
	case !in.Active:
		return nil, refuse("launch-token active?", "the EHR says the launch-token is not active (expired, used or not for this server)")
	case in.TokenType != "" && in.TokenType != "launch-token":
		return nil, refuse("launch-token active?", "the EHR says this is not a launch-token")
	case in.SoftwareID != client.SoftwareID || in.ClientID != c.Azp || in.Sub != c.Sub:
		return nil, refuse("same app?", "launch-token was issued to another app (software_id differs)")
	case in.Exp != 0 && now.Unix() >= in.Exp:
		return nil, refuse("launch-token active?", "launch-token expired")
	}
	s.decide(flow, "launch-token active?", fmt.Sprintf("the EHR confirms the launch-token (app %s, user %s)", in.ClientID, in.Sub), false)
	lc := &launchContext{Issuer: ehr.cfg.Issuer, Sub: in.Sub, FHIRUser: in.FHIRUser}
	ctxs := in.FHIRContext
	if len(ctxs) == 0 {
		ctxs = c.FHIRContext
	}
	for _, fc := range ctxs {
		if fc.Type == "Patient" && fc.Identifier != nil && fc.Identifier.System == systemURI {
			lc.EHRPatient = fc.Identifier.Value
			break
		}
	}
	if !wantPatient {
		return lc, nil
	}
	if lc.EHRPatient == "" {
		lc.Refusal = "the launch context names no patient"
		return lc, nil
	}
	return s.matchEHRPatient(ctx, flow, ehr, lc, fail)
}

// matchEHRPatient reads lc's EHR patient with the backend token and looks
// for the same person in the Other directory (flows.md A.7.4–5): it sets
// lc.PatientID, or lc.Refusal with the reason. fail maps EHR trouble to the
// caller's error.
func (s *Server) matchEHRPatient(ctx context.Context, flow string, ehr *ehrClient, lc *launchContext, fail func(error) *authkit.Error) (*launchContext, *authkit.Error) {
	p, err := ehr.readPatient(ctx, lc.EHRPatient)
	if errors.Is(err, errPatientGone) {
		lc.Refusal = "the EHR patient could not be read"
		return lc, nil
	}
	if err != nil {
		return nil, fail(err)
	}
	rec, note, why, err := s.match(ctx, p)
	if err != nil {
		s.logError(ctx, "match patient", err)
		return nil, authkit.ErrServerError
	}
	if rec == nil {
		lc.Refusal = why
		s.decide(flow, "patient match", "no match for "+lc.EHRPatient+": "+why, true)
		return lc, nil
	}
	lc.PatientID, lc.MatchNote = rec.ID, note
	s.decide(flow, "patient match", lc.EHRPatient+" is Other Patient/"+rec.ID+" ("+note+")", false)
	return lc, nil
}

// match looks for the EHR patient in the Other directory by MatchSystems,
// in order (see package doc). rec nil: why says why not.
func (s *Server) match(ctx context.Context, p *fhirPatient) (rec *PatientRecord, note, why string, err error) {
	if len(s.cfg.MatchSystems) == 0 {
		return nil, "", "no identifier systems are configured for matching", nil
	}
	for _, system := range s.cfg.MatchSystems {
		hits := map[string]PatientRecord{}
		var via Identifier
		for _, id := range p.Identifier {
			if id.System != system || id.Value == "" {
				continue
			}
			recs, err := s.cfg.Directory.FindByIdentifier(ctx, system, id.Value)
			if err != nil {
				return nil, "", "", fmt.Errorf("find by identifier: %w", err)
			}
			if len(recs) > 0 && via.Value == "" || len(recs) > 1 {
				via = id
			}
			for _, r := range recs {
				hits[r.ID] = r
			}
		}
		switch {
		case len(hits) == 0:
			continue
		case len(hits) > 1:
			return nil, "", fmt.Sprintf("%d records share identifier %s|%s", len(hits), via.System, via.Value), nil
		}
		var only PatientRecord
		for _, r := range hits {
			only = r
		}
		if s.cfg.ConfirmDemographics && !sameDemographics(p, only) {
			return nil, "", fmt.Sprintf("identifier %s|%s found a record whose name or birth date differs", via.System, via.Value), nil
		}
		return &only, "matched by identifier " + via.System + "|" + via.Value, "", nil
	}
	return nil, "", "patient not found in Other's directory", nil
}

func sameDemographics(p *fhirPatient, r PatientRecord) bool {
	if p.BirthDate == "" || p.BirthDate != r.BirthDate {
		return false
	}
	for _, n := range p.Name {
		if n.Family != "" && strings.EqualFold(n.Family, r.Family) {
			return true
		}
	}
	return false
}

// launchMarkExpiry is when the single-use mark of a launch-token that
// expires at exp (unix seconds) may go: a minute after the token, and
// never wrapped into the past by an exp near the int64 limit.
func launchMarkExpiry(exp int64) time.Time {
	return time.Unix(min(exp, math.MaxInt64-60)+60, 0)
}
