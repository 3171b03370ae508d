// Package otheras is the Other organisation's authorization server
// (OtherAS): SMART App Launch 2.2 discovery, authorize (standalone launch
// with its own login and patient picker, and the draft's second launch
// with launch=<launch-token>), consent, the token endpoint
// (authorization_code with PKCE S256, refresh_token with rotation, and
// RFC 8693 token exchange: flows.md direction B),
// introspection (RFC 7662), revocation (RFC 7009), registration (RFC 7591)
// and access-token verification for the Other FHIR API.
//
// A launch-token is resolved before anything is shown (flows.md A.7): its
// issuer must be a configured trusted EHR AS (an untrusted issuer is
// refused without any call to it); its RS256 signature is checked against
// that issuer's JWKS; OtherAS introspects it at the EHR AS with a cached
// Backend Services token (private_key_jwt, fetched once for concurrent
// launches) and, when patient-level scopes are asked, reads the EHR Patient
// and looks for the same person in its own Directory by the configured
// identifier systems, in order. OtherAS trusts the EHR for context only:
// what the app gets at the Other FHIR server is decided here.
//
// Documented choices:
//   - A launch-token is consumed at OtherAS on first use, before the EHR AS
//     is asked: a second authorization with it is refused even when the
//     first failed (the EHR AS consumes it too on introspection).
//   - The backend token is only ever sent to the trusted EHR's own
//     endpoints and FHIR base: a fhirContext URL outside that base is not
//     fetched.
//   - Identifier matching tries MatchSystems in order; the first system
//     with any hit decides: one Other record is a match, several are
//     ambiguous (refused, weaker systems are not tried). With no
//     MatchSystems configured nothing matches.
//   - Refused patient context refuses every patient/ scope and
//     launch/patient. When nothing but launch and launch/patient would be
//     left, the answer is access_denied.
//   - The user of a launch-token is the Other user with the token's sub as
//     username; when there is none (or RequireLogin, or prompt=login), the
//     login page is shown, and a known launch user must sign in as
//     themselves. Being recognised from a launch-token signs nobody in to
//     OtherAS for later requests.
//   - prompt=none is answered with interaction_required: OtherAS keeps no
//     remembered consent.
//   - Any failure talking to the EHR (down, slow, 5xx, unreadable answer)
//     fails closed with temporarily_unavailable; never a code.
//   - A code replay revokes what its first use issued (whose ids are
//     derived from the code under a key of the server); the code is marked
//     used before it is taken, so a racing replay is caught, and the mark
//     is kept for the code's lifetime from that use.
//   - Refresh tokens are issued, and the refresh_token grant accepted,
//     only for clients registered with the refresh_token grant type. An
//     id_token is issued whenever openid is granted with a user.
//   - Dynamic registration never creates Backend Services clients and
//     narrows a client's scope to RegistrationCeiling.
//   - Token exchange (grant_type urn:ietf:params:oauth:grant-type:token-exchange,
//     see exchange.go) is for confidential clients only: any client that
//     authenticates at the token endpoint may use it (client registration
//     has no token-exchange grant type to register); a public client gets
//     unauthorized_client (RFC 6749 §5.2: it is identified, not
//     authenticated, and this grant is not open to it). subject_token_type
//     is urn:ietf:params:oauth:token-type:id_token for an EHR id_token or a
//     launch-token (told apart by the JWT typ launch-token+jwt) or
//     ...:token-type:access_token for an EHR access token (typ at+jwt);
//     anything else, a type that does not match the token, actor_token,
//     or a requested_token_type other than access_token is
//     invalid_request. resource (repeatable) must be the Other FHIR base
//     and audience that base or this issuer, else invalid_target.
//   - A subject token that is invalid or unacceptable (untrusted issuer,
//     bad signature, expired, inactive at the EHR, replayed launch-token,
//     launch-token for another AS, issued to another app) is
//     invalid_request, as RFC 8693 §2.2.2 requires; EHR trouble is
//     temporarily_unavailable, as at authorize.
//   - Every subject is checked locally first: its iss must be a trusted
//     EHR (no call is made otherwise) and its RS256 signature must verify
//     against that EHR's JWKS. Then it is introspected at the EHR AS with
//     the backend token. A launch-token goes through exactly the checks of
//     direction A (and is consumed). An access token and an id_token are
//     not consumed; the EHR's introspection answers partners about both
//     with client_id and software_id (for an id_token, client_id is its
//     aud): the id_token alone cannot say which app it belongs to, so a
//     local check would let any confidential client exchange a leaked
//     id_token. The software_id must be the requesting client's.
//   - An exchange grants only patient/ and user/ resource scopes,
//     launch/patient and fhirUser; openid, profile, launch,
//     offline_access and system/ scopes are dropped silently (no id_token,
//     no refresh token: the app exchanges again). Patient scopes need a
//     matched patient (launch-token or access token with a patient, matched
//     as in direction A; an id_token has none); user scopes and fhirUser
//     need the EHR user to be an Other user (same username). Refused
//     scopes are traced; when nothing but launch/patient or fhirUser is
//     left the answer is invalid_scope, naming the reasons. A missing
//     scope parameter is invalid_scope too (no default scope).
//   - Patient scopes from an exchange do not need a user known here: the
//     context is confined to the matched patient, the app is the same
//     software, and what it may read is decided by OtherAS's own policy.
//   - Access tokens are JWTs (typ at+jwt, aud = the Other FHIR base) signed
//     HS256 under a secret key persisted with the server: only OtherAS
//     checks them, and an RSA signature would cost a millisecond per token.
//     id_tokens are RS256 under the keys published at /auth/jwks. An EHR
//     access token presented for exchange is checked by introspection at
//     the EHR AS (it may be HS256 too). Client assertions to the
//     EHR AS are signed with a separate key, published at
//     /auth/client-jwks and returned by PublicJWKS.
//   - A refresh token family names the EHR patient by the trusted EHR
//     (TrustedIssuers[i]) and a relative reference, not by URL, and its
//     access tokens are for the current FHIRBase: a refresh after a
//     restart on other ports names the servers' current URLs.
package otheras
