package otheras

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/scope"
)

// RFC 8693 names (flows.md direction B).
const (
	GrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeIDToken is the subject_token_type of an EHR id_token and of
	// a launch-token, told apart by the JWT typ header (flows.md Decisions).
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
)

// ExchangeResponse is the RFC 8693 §2.2.1 answer: the token response
// (access_token, token_type, expires_in, scope, patient, fhirContext)
// plus issued_token_type.
type ExchangeResponse struct {
	*TokenResponse
	IssuedTokenType string `json:"issued_token_type"`
}

// subjectErr is the error code of a subject token that is invalid or
// unacceptable (inactive, expired, replayed, untrusted issuer, wrong
// audience, another app): RFC 8693 §2.2.2 says it MUST be invalid_request.
var subjectErr = authkit.ErrInvalidRequest

// subjectKind is what a subject_token turned out to be.
type subjectKind string

const (
	subjectLaunchToken subjectKind = "launch-token"
	subjectIDToken     subjectKind = "id_token"
	subjectAccessToken subjectKind = "access token"
)

// exchangeRequest is a syntactically valid token-exchange request.
type exchangeRequest struct {
	Subject string
	Kind    subjectKind
	Token   *jwt.JSONWebToken // the parsed, not yet verified, subject
	Scopes  scope.Set         // as requested
}

// parseExchange checks the RFC 8693 §2.1 parameters of form (client
// authentication is done). It calls nobody; every error is an
// *authkit.Error.
func (s *Server) parseExchange(form url.Values) (*exchangeRequest, *authkit.Error) {
	one := func(name string) (string, *authkit.Error) {
		switch vs := form[name]; len(vs) {
		case 0:
			return "", nil
		case 1:
			return vs[0], nil
		default:
			return "", authkit.ErrInvalidRequest.With("parameter " + name + " repeated")
		}
	}
	get := map[string]string{}
	for _, name := range []string{"subject_token", "subject_token_type", "requested_token_type", "scope", "actor_token", "actor_token_type"} {
		v, err := one(name)
		if err != nil {
			return nil, err
		}
		get[name] = v
	}
	if _, ok := form["actor_token"]; ok {
		return nil, authkit.ErrInvalidRequest.With("actor_token is not supported: this server issues tokens for the subject only (no delegation)")
	}
	if _, ok := form["actor_token_type"]; ok {
		return nil, authkit.ErrInvalidRequest.With("actor_token_type without actor_token")
	}
	raw, typ := get["subject_token"], get["subject_token_type"]
	switch {
	case raw == "":
		return nil, authkit.ErrInvalidRequest.With("subject_token is required")
	case typ == "":
		return nil, authkit.ErrInvalidRequest.With("subject_token_type is required")
	case typ != TokenTypeIDToken && typ != TokenTypeAccessToken:
		return nil, authkit.ErrInvalidRequest.With("subject_token_type must be " + TokenTypeIDToken + " (id_token or launch-token) or " + TokenTypeAccessToken)
	}
	if rt, ok := form["requested_token_type"]; ok && rt[0] != TokenTypeAccessToken {
		return nil, authkit.ErrInvalidRequest.With("requested_token_type: only " + TokenTypeAccessToken + " is issued")
	}
	for _, r := range form["resource"] {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" || !authkit.SameBase(r, s.cfg.FHIRBase) {
			return nil, authkit.ErrInvalidTarget.With("resource must be " + s.cfg.FHIRBase + ", the only server this authorization server governs")
		}
	}
	for _, a := range form["audience"] {
		if !authkit.SameBase(a, s.cfg.FHIRBase) && !authkit.SameBase(a, s.cfg.Issuer) {
			return nil, authkit.ErrInvalidTarget.With("audience must be " + s.cfg.FHIRBase + " or " + s.cfg.Issuer)
		}
	}
	if get["scope"] == "" {
		return nil, authkit.ErrInvalidScope.With("scope is required")
	}
	set, err := scope.Parse(get["scope"])
	if err != nil || len(set) == 0 {
		return nil, authkit.ErrInvalidScope.With("scope is malformed")
	}
	if len(raw) > maxLaunchToken || strings.Count(raw, ".") != 2 {
		return nil, subjectErr.With("subject_token is not a JWT issued by a trusted EHR")
	}
	// EHR access tokens may be HS256 under the EHR AS's own secret key
	// (only it can check them, by introspection); everything else is RS256.
	tok, perr := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.HS256})
	if perr != nil || len(tok.Headers) != 1 {
		return nil, subjectErr.With("subject_token is not a JWT signed with RS256")
	}
	jt, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string)
	jt = strings.TrimPrefix(strings.ToLower(jt), "application/")
	req := &exchangeRequest{Subject: raw, Token: tok, Scopes: set}
	switch {
	case typ == TokenTypeIDToken && jt == authkit.TypLaunchToken:
		req.Kind = subjectLaunchToken
	case typ == TokenTypeIDToken && (jt == "jwt" || jt == ""):
		req.Kind = subjectIDToken
	case typ == TokenTypeAccessToken && jt == authkit.TypAccess:
		req.Kind = subjectAccessToken
	case typ == TokenTypeIDToken:
		return nil, authkit.ErrInvalidRequest.With("subject_token is not an id_token or launch-token (subject_token_type does not match the token)")
	default:
		return nil, authkit.ErrInvalidRequest.With("subject_token is not an access token (subject_token_type does not match the token)")
	}
	if tok.Headers[0].Algorithm != string(jose.RS256) && req.Kind != subjectAccessToken {
		return nil, subjectErr.With("subject_token is not a JWT signed with RS256")
	}
	return req, nil
}

// exchangeable keeps the requested scopes a token exchange may grant
// this client: patient- and user-level resource scopes, launch/patient
// and fhirUser. The rest (openid, offline_access, launch, system/...) is
// dropped silently, as at authorize: the answer's scope says what was
// granted.
func exchangeable(c *authkit.Client, requested scope.Set) scope.Set {
	limit := c.AllowedScopes()
	return requested.Filter(func(sc scope.Scope) bool {
		switch {
		case sc.IsResource():
			if sc.Level == scope.System {
				return false
			}
		case sc.Raw == "launch/patient", sc.Raw == "fhirUser":
		default:
			return false
		}
		return limit == nil || limit.Covers(sc)
	})
}

func isPatientScope(sc scope.Scope) bool {
	return sc.Raw == "launch/patient" || sc.IsResource() && sc.Level == scope.Patient
}

func isUserScope(sc scope.Scope) bool {
	return sc.Raw == "fhirUser" || sc.IsResource() && sc.Level == scope.User
}

// grantExchange is the RFC 8693 token exchange (flows.md direction B): a
// confidential app trades a launch-token, an EHR id_token or an EHR
// access token for an access token at the Other FHIR server. No consent
// screen: OtherAS decides from the resolved context and its own policy.
func (s *Server) grantExchange(ctx context.Context, c *authkit.Client, form url.Values) (*ExchangeResponse, error) {
	ctx, flow := flowOf(ctx)
	if c.Public() {
		s.decide(flow, "token exchange", "refused: "+c.ID+" is a public client; token exchange is for confidential clients", true)
		return nil, authkit.ErrUnauthorizedClient.With("token exchange needs a confidential client")
	}
	req, perr := s.parseExchange(form)
	if perr != nil {
		s.decide(flow, "token exchange", "refused: "+perr.Description, true)
		return nil, perr
	}
	set := exchangeable(c, req.Scopes)
	if !slices.ContainsFunc(set, scope.Scope.IsResource) {
		s.decide(flow, "token exchange", "refused: no requested scope can be granted by token exchange", true)
		return nil, authkit.ErrInvalidScope.With("no requested scope can be granted by token exchange")
	}
	s.decide(flow, "token exchange", fmt.Sprintf("%s exchanges a %s for an access token to %s", c.ID, req.Kind, s.cfg.FHIRBase), false)
	wantPatient := slices.ContainsFunc(set, isPatientScope)
	var lc *launchContext
	var aerr *authkit.Error
	switch req.Kind {
	case subjectLaunchToken:
		lc, aerr = s.resolveLaunch(ctx, flow, c, req.Subject, wantPatient)
		if aerr != nil && aerr.Code == authkit.ErrInvalidRequest.Code {
			aerr = subjectErr.With(strings.Replace(aerr.Description, "launch is not", "subject_token is not", 1))
		}
	default:
		lc, aerr = s.resolveSubject(ctx, flow, c, req, wantPatient)
	}
	if aerr != nil {
		return nil, aerr
	}

	// The user: the Other user with the EHR subject as username, as in
	// direction A. Unknown here: no user-level scope and no fhirUser.
	username, userRefusal := "", ""
	if lc.Sub == "" {
		userRefusal = "the subject token names no user"
	} else if u, err := s.cfg.Users.Lookup(ctx, lc.Sub); err == nil {
		username = u.Username
		s.decide(flow, "user", "the EHR user is Other user "+u.Username, false)
	} else if errors.Is(err, ErrNotFound) {
		userRefusal = "the EHR user has no account at " + s.cfg.OrgName
	} else {
		s.logError(ctx, "look up exchange user", err)
		return nil, authkit.ErrServerError
	}
	if lc.PatientID == "" && lc.Refusal == "" {
		lc.Refusal = "the subject token names no patient"
	}
	var refusals []string
	granted := set.Filter(func(sc scope.Scope) bool {
		why := ""
		switch {
		case isPatientScope(sc) && lc.PatientID == "":
			why = lc.Refusal
		case isUserScope(sc) && username == "":
			why = userRefusal
		default:
			return true
		}
		s.decide(flow, "scope refused", "refused "+sc.Raw+": "+why, true)
		if !slices.Contains(refusals, why) {
			refusals = append(refusals, why)
		}
		return false
	})
	if !slices.ContainsFunc(granted, scope.Scope.IsResource) {
		why := "no requested scope can be granted: " + strings.Join(refusals, "; ")
		s.decide(flow, "token exchange", "refused: "+why, true)
		return nil, authkit.ErrInvalidScope.With(why)
	}
	g := grantData{ClientID: c.ID, Username: username, Scopes: granted.String(), Launch: req.Kind == subjectLaunchToken, Flow: flow}
	if lc.PatientID != "" && slices.ContainsFunc(granted, isPatientScope) {
		g.PatientID, g.EHRPatient = lc.PatientID, lc.EHRPatient
	}
	resp, err := s.issue(ctx, c, g, granted, authkit.RandomString(16), true)
	if err != nil {
		return nil, err
	}
	s.decide(flow, "token exchange", "issued an access token for "+s.cfg.FHIRBase+" with scope "+granted.String(), false)
	return &ExchangeResponse{TokenResponse: resp, IssuedTokenType: TokenTypeAccessToken}, nil
}

// subjectClaims are the claims OtherAS reads from an EHR id_token or
// access token.
type subjectClaims struct {
	Iss      string       `json:"iss"`
	Sub      string       `json:"sub"`
	Aud      jwt.Audience `json:"aud"`
	Exp      int64        `json:"exp"`
	ClientID string       `json:"client_id"` // access tokens
}

// resolveSubject checks an EHR id_token or access token and resolves its
// context for client: trusted issuer (no call to any other), RS256
// signature against the issuer's JWKS (an HS256 EHR access token is left
// to the introspection), expiry, then introspection at the
// EHR AS with the backend token for liveness and the app it was issued to
// (its software_id must be client's), then, for an access token with a
// patient, the patient match of direction A.
func (s *Server) resolveSubject(ctx context.Context, flow string, client *authkit.Client, req *exchangeRequest, wantPatient bool) (*launchContext, *authkit.Error) {
	kind := string(req.Kind)
	refuse := func(label, why string) *authkit.Error {
		s.decide(flow, label, why, true)
		return subjectErr.With(why)
	}
	fail := func(err error) *authkit.Error {
		s.logError(ctx, "resolve subject token", err)
		if errors.Is(err, errUpstream) {
			s.decide(flow, "EHR reachable?", "the trusted EHR did not answer in time or failed: the exchange fails closed", true)
			return authkit.ErrTemporarilyUnavail.With("the EHR that issued the subject token is not reachable")
		}
		return authkit.ErrServerError
	}
	var unverified subjectClaims
	if err := req.Token.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, refuse("subject token?", "subject_token claims are unreadable")
	}
	ehr := s.ehrs[strings.TrimRight(unverified.Iss, "/")]
	if ehr == nil || unverified.Iss != ehr.cfg.Issuer {
		// No call is made to an issuer we do not trust.
		return nil, refuse("issuer trusted?", kind+" issuer is not a trusted EHR")
	}
	s.decide(flow, "issuer trusted?", kind+" issuer "+ehr.cfg.Issuer+" is trusted", false)
	var c subjectClaims
	if req.Kind == subjectAccessToken && req.Token.Headers[0].Algorithm == string(jose.HS256) {
		// Signed with the EHR AS's secret key: only it can check the
		// token, and its introspection answer below is what counts.
		s.decide(flow, "signature valid?", kind+" is checked by its issuer (introspection)", false)
		c = unverified
	} else {
		key, err := ehr.verificationKey(ctx, req.Token.Headers[0].KeyID)
		if errors.Is(err, errUnknownKey) {
			return nil, refuse("signature valid?", kind+" is not signed with a key of its issuer")
		}
		if err != nil {
			return nil, fail(err)
		}
		if err := req.Token.Claims(key, &c); err != nil {
			return nil, refuse("signature valid?", kind+" signature does not verify")
		}
	}
	now := s.cfg.Now().Unix()
	switch {
	case c.Iss != ehr.cfg.Issuer:
		return nil, refuse(kind+" valid?", kind+" issuer changed")
	case c.Exp == 0 || now >= c.Exp:
		return nil, refuse(kind+" valid?", kind+" expired")
	case len(c.Aud) == 0:
		return nil, refuse(kind+" valid?", kind+" has no audience")
	case req.Kind == subjectAccessToken && c.ClientID == "":
		return nil, refuse(kind+" valid?", "access token names no client")
	}
	in, err := ehr.introspect(ctx, req.Subject)
	if err != nil {
		return nil, fail(err)
	}
	wantType, issuedTo := "bearer", c.ClientID
	if req.Kind == subjectIDToken {
		wantType, issuedTo = "id_token", c.Aud[0]
	}
	switch {
	case !in.Active:
		return nil, refuse(kind+" active?", "the EHR says the "+kind+" is not active (expired, revoked or unknown)")
	case !strings.EqualFold(in.TokenType, wantType):
		return nil, refuse(kind+" active?", "the EHR says this is not an "+kind)
	case in.Iss != "" && strings.TrimRight(in.Iss, "/") != ehr.cfg.Issuer:
		return nil, refuse(kind+" active?", "the EHR names another issuer for the "+kind)
	case client.SoftwareID == "" || in.SoftwareID != client.SoftwareID || in.ClientID != issuedTo || in.Sub != c.Sub:
		return nil, refuse("same app?", kind+" was issued to another app (software_id differs)")
	case in.Exp != 0 && now >= in.Exp:
		return nil, refuse(kind+" active?", kind+" expired")
	}
	s.decide(flow, kind+" active?", fmt.Sprintf("the EHR confirms the %s (app %s, user %s)", kind, in.ClientID, in.Sub), false)
	lc := &launchContext{Issuer: ehr.cfg.Issuer, Sub: in.Sub, FHIRUser: in.FHIRUser}
	if req.Kind == subjectIDToken {
		lc.Refusal = "an id_token carries no patient context"
		return lc, nil
	}
	switch {
	case in.Patient != "":
		lc.EHRPatient = ehr.cfg.FHIRBase + "/Patient/" + in.Patient
	default:
		for _, fc := range in.FHIRContext {
			if id, ok := strings.CutPrefix(fc.Reference, "Patient/"); ok {
				lc.EHRPatient = ehr.cfg.FHIRBase + "/Patient/" + id
				break
			}
		}
	}
	if !wantPatient {
		return lc, nil
	}
	if lc.EHRPatient == "" {
		lc.Refusal = "the EHR access token has no patient context"
		return lc, nil
	}
	return s.matchEHRPatient(ctx, flow, ehr, lc, fail)
}
