package ehr

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
)

// caller is an authenticated introspection or revocation caller.
type caller struct {
	clientID string
	any      bool   // bearer with the introspect permission: any access token
	partner  string // partner issuer: launch-tokens addressed to it
}

var inactive = map[string]any{"active": false}

// authenticateCaller accepts a bearer token with the introspect scope or
// confidential client credentials. ok false means 401 was written.
func (s *Server) authenticateCaller(w http.ResponseWriter, r *http.Request, form map[string][]string) (caller, bool) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		a, err := s.VerifyAccess(ctx, strings.TrimSpace(h[7:]))
		if err != nil || !a.Scopes.Has(ScopeIntrospect) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			authkit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
			return caller{}, false
		}
		c := caller{clientID: a.ClientID, any: true}
		if cl, ok := s.clients.Get(a.ClientID); ok {
			c.partner = cl.Issuer
		}
		return c, true
	}
	who, err := s.auth.Authenticate(ctx, r, form, true)
	if err != nil {
		authkit.WriteIntrospectAuthError(w, err, who.Basic)
		return caller{}, false
	}
	return caller{clientID: who.Client.ID, partner: who.Client.Issuer}, true
}

// handleIntrospect is RFC 7662 with SMART's token-introspection fields.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, ok := authkit.ReadPost(w, r)
	if !ok {
		return
	}
	who, ok := s.authenticateCaller(w, r, form)
	if !ok {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		authkit.WriteError(w, authkit.ErrInvalidRequest.With("token is required"), false)
		return
	}
	authkit.WriteJSON(w, http.StatusOK, s.introspect(ctx, who, tok))
}

func (s *Server) introspect(ctx context.Context, who caller, tok string) map[string]any {
	if strings.Count(tok, ".") == 2 {
		// One verification; the claims are decoded by the token's type.
		var claims json.RawMessage
		v, err := s.signer.Verify(tok, &claims)
		if err != nil {
			return inactive
		}
		switch v.Type {
		case authkit.TypAccess:
			a, err := s.VerifyAccess(ctx, tok)
			if err != nil || (!who.any && a.ClientID != who.clientID) {
				return inactive
			}
			out := s.describeAccess(a)
			if who.partner != "" {
				s.addSoftwareID(out, a.ClientID)
			}
			return out
		case authkit.TypLaunchToken:
			return s.introspectLaunchToken(who, claims)
		case authkit.TypIDToken:
			return s.introspectIDToken(who, claims)
		}
		return inactive
	}
	// A refresh token. Refresh tokens are for their own client only: the
	// introspect permission of a partner covers access tokens and the
	// launch-tokens addressed to it, never another client's refresh tokens.
	return s.refresh.Introspect(ctx, tok, who.clientID, s.cfg.Issuer)
}

func (s *Server) describeAccess(a *authkit.Access) map[string]any {
	out := map[string]any{
		"active": true, "token_type": "Bearer", "scope": a.Scopes.String(), "client_id": a.ClientID,
		"exp": a.Expires.Unix(), "iat": a.IssuedAt.Unix(), "iss": s.cfg.Issuer, "sub": a.Subject,
		"aud": a.Audience,
	}
	if a.FHIRUser != "" {
		out["fhirUser"] = a.FHIRUser
	}
	var ctxs []FHIRContext
	if a.PatientID != "" {
		out["patient"] = a.PatientID
		ctxs = append(ctxs, FHIRContext{Reference: "Patient/" + a.PatientID})
	}
	if a.EncounterID != "" {
		out["encounter"] = a.EncounterID
		ctxs = append(ctxs, FHIRContext{Reference: "Encounter/" + a.EncounterID})
	}
	if len(ctxs) > 0 {
		out["fhirContext"] = ctxs
	}
	return out
}

// addSoftwareID names the software_id (RFC 7591) of clientID, so that a
// partner OtherAS can tell whether a token belongs to the app asking it
// (apps are linked across ASes by software_id).
func (s *Server) addSoftwareID(out map[string]any, clientID string) {
	if c, ok := s.clients.Get(clientID); ok && c.SoftwareID != "" {
		out["software_id"] = c.SoftwareID
	}
}

// introspectIDToken answers a partner OtherAS about an id_token this AS
// issued (RFC 8693 subject at the partner): which app it was issued to
// (aud, with its software_id) and for whom. id_tokens carry no
// authorization, so nobody else learns anything from this endpoint.
// claims are those of a verified id_token.
func (s *Server) introspectIDToken(who caller, claims json.RawMessage) map[string]any {
	if who.partner == "" {
		return inactive
	}
	var c authkit.IDClaims
	if json.Unmarshal(claims, &c) != nil {
		return inactive
	}
	if c.Iss != s.cfg.Issuer || c.Aud == "" || c.Sub == "" || !s.cfg.Now().Before(time.Unix(c.Exp, 0)) {
		return inactive
	}
	out := map[string]any{
		"active": true, "token_type": "id_token", "client_id": c.Aud,
		"exp": c.Exp, "iat": c.Iat, "iss": c.Iss, "sub": c.Sub, "aud": c.Aud,
	}
	if c.FHIRUser != "" {
		out["fhirUser"] = c.FHIRUser
	}
	s.addSoftwareID(out, c.Aud)
	return out
}

// introspectLaunchToken answers only a caller in the token's aud, and only
// once: the first successful introspection consumes it. claims are those
// of a verified launch-token.
func (s *Server) introspectLaunchToken(who caller, claims json.RawMessage) map[string]any {
	var c launchTokenClaims
	if json.Unmarshal(claims, &c) != nil {
		return inactive
	}
	now := s.cfg.Now()
	if c.Iss != s.cfg.Issuer || c.Jti == "" || now.Unix() >= c.Exp {
		return inactive
	}
	if who.partner == "" || !slices.Contains(c.Aud, who.partner) || s.revocations.Revoked(c.Jti, "") {
		return inactive
	}
	// The single-use mark outlives the token: after its exp the token is
	// refused as expired (checked above), the mark is no longer needed.
	if err := s.ltUsed.Use(c.Jti, time.Unix(c.Exp, 0)); err != nil {
		return inactive
	}
	out := map[string]any{
		"active": true, "token_type": "launch-token", "client_id": c.Azp, "scope": "launch-token",
		"exp": c.Exp, "iat": c.Iat, "iss": c.Iss, "sub": c.Sub, "aud": c.Aud, "fhirContext": c.FHIRContext,
	}
	if c.SoftwareID != "" {
		out["software_id"] = c.SoftwareID
	}
	if c.FHIRUser != "" {
		out["fhirUser"] = c.FHIRUser
	}
	for _, fc := range c.FHIRContext {
		if fc.Identifier == nil {
			continue
		}
		ref := strings.TrimPrefix(fc.Identifier.Value, s.cfg.FHIRBase+"/")
		switch fc.Type {
		case "Patient":
			out["patient"] = strings.TrimPrefix(ref, "Patient/")
		case "Encounter":
			out["encounter"] = strings.TrimPrefix(ref, "Encounter/")
		}
	}
	return out
}

// handleRevoke is RFC 7009 for access and refresh tokens; revoking a
// refresh token revokes its whole family.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	s.refresh.ServeRevoke(w, r, s.auth, s.VerifyAccess)
}
