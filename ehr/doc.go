// Package ehr is the EHR's authorization server (EHR AS): SMART App Launch
// 2.2 discovery, authorize (EHR and standalone launch, login, patient
// picker, consent), the token endpoint (authorization_code with PKCE S256,
// refresh_token with rotation, client_credentials for Backend Services),
// the draft launch-token, token introspection (RFC 7662 + SMART), revocation
// (RFC 7009), dynamic registration (RFC 7591), EHR launch contexts, the
// User-access Brands bundle, and access-token verification for the EHR
// FHIR API.
//
// Documented choices:
//   - aud at authorize must equal FHIRBase; one trailing slash is ignored on
//     either side.
//   - An EHR launch carries its user: the user named in the launch context
//     is treated as signed in to the EHR, so no login page is shown (the
//     consent page still is).
//   - Access tokens are RS256 JWTs (typ at+jwt, aud = FHIRBase, jti) checked
//     against an in-memory revocation set (persisted) and cached after the
//     first verification.
//   - The introspection permission is the scope "introspect", granted by
//     client_credentials only to clients registered as introspectors
//     (partner authorization servers). A bearer token carrying it may
//     introspect any access token, and launch-tokens addressed to its
//     partner issuer. A confidential client authenticating as at the token
//     endpoint sees only tokens issued to itself.
//   - A launch-token introspects with token_type "launch-token"; the first
//     introspection by a caller in its aud consumes it.
//   - Revoking a token of another client answers 200 and revokes nothing
//     (RFC 7009 does not name an error; this never tells a valid token from
//     an invalid one).
//   - online_access yields a refresh token like offline_access (sim has no
//     user sessions to bind it to); both rotate.
//   - Registration metadata launch_uri (sim extension) is the app's EHR
//     launch URL.
package ehr
