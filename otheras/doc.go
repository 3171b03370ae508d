// Package otheras is the Other organisation's authorization server
// (OtherAS): SMART App Launch 2.2 discovery, authorize (standalone launch
// with its own login and patient picker, and the draft's second launch
// with launch=<launch-token>), consent, the token endpoint
// (authorization_code with PKCE S256, refresh_token with rotation),
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
//   - A code replay revokes what its first use issued; the replay marker
//     is written before the code is taken, so a racing replay is caught.
//   - Refresh tokens are issued, and the refresh_token grant accepted,
//     only for clients registered with the refresh_token grant type. An
//     id_token is issued whenever openid is granted with a user.
//   - Dynamic registration never creates Backend Services clients and
//     narrows a client's scope to RegistrationCeiling.
//   - Access tokens are RS256 JWTs (typ at+jwt, aud = the Other FHIR base)
//     signed with keys published at /auth/jwks. Client assertions to the
//     EHR AS are signed with a separate key, published at
//     /auth/client-jwks and returned by PublicJWKS.
package otheras
