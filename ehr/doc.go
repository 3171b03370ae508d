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
//     is recognised for that one authorization request, so no login page
//     is shown (the consent page still is). The launch signs nobody in to
//     the browser session: a later request from the same browser is
//     treated as if the launch had not happened.
//   - A patient (portal) user never gets user/ or system/ scopes: they are
//     dropped once the user is known (not rewritten to patient/; the
//     granted scope in the token response says so). The user's own Patient
//     becomes the grant's patient whatever was asked, an EHR launch for
//     another patient is refused with access_denied, and the access token
//     is confined to that Patient (authkit.Access.PatientSubject) even
//     when it holds no patient/ scope. A patient user without a Patient
//     record gets no patient data at all.
//   - Access tokens are JWTs (typ at+jwt, aud = FHIRBase, jti) signed HS256
//     under a secret key persisted with the server and never published:
//     only this AS checks them (VerifyAccess, VerifyAccessAt,
//     introspection), and an RSA signature would cost a millisecond per
//     token. They are checked against an in-memory revocation set
//     (persisted) and cached after the first verification. id_tokens and
//     launch-tokens are RS256 under the keys published at /auth/jwks, so
//     that apps and partner ASes can check them.
//   - A refresh token family names the servers its access tokens are for
//     by role (this EHR's FHIR server, Governed[i]), not by URL: a refresh
//     after a restart on other ports is for the servers' current bases,
//     and so are the fhirContext full URLs and fhirUser of its answer.
//   - The introspection permission is the scope "introspect", granted by
//     client_credentials only to clients registered as introspectors
//     (partner authorization servers). A bearer token carrying it may
//     introspect any access token, and launch-tokens addressed to its
//     partner issuer; refresh tokens only of its own client. A
//     confidential client authenticating as at the token endpoint sees
//     only tokens issued to itself.
//   - Dynamic registration (RFC 7591) refuses client_credentials and
//     system/ scopes with invalid_client_metadata unless
//     Config.OpenBackendRegistration: Backend Services clients come from
//     configuration (Clients, Partners). A registered client's scope is
//     narrowed to RegistrationCeiling (the ceiling itself when it asks for
//     none).
//   - A code replay revokes everything its first use issued: the access
//     token, the refresh family and the launch-token (which then
//     introspects as inactive). Their ids are derived from the code under
//     a key of the server, so a replay names them again. The code is
//     marked used before it is taken, so a racing replay is caught too, and
//     the mark is kept for the code's lifetime from that use (a later
//     replay is refused as unknown).
//   - Refresh tokens are issued, and the refresh_token grant accepted, only
//     for clients registered with the refresh_token grant type;
//     offline_access and online_access are not granted to others.
//   - An id_token is issued whenever openid is granted with a user.
//   - Client assertions (private_key_jwt) must name their key with kid.
//   - A launch-token introspects with token_type "launch-token"; the first
//     introspection by a caller in its aud consumes it.
//   - Revoking a token of another client answers 200 and revokes nothing
//     (RFC 7009 does not name an error; this never tells a valid token from
//     an invalid one).
//   - online_access yields a refresh token like offline_access (sim has no
//     user sessions to bind it to); both rotate.
//   - Registration metadata launch_uri (sim extension) is the app's EHR
//     launch URL.
//   - Direction C (Config.Governed, capability auth-multi-aud-token): an
//     authorization request names the FHIR servers its token is for with
//     aud and/or RFC 8707 resource parameters; the token's aud holds every
//     named server this AS governs (its own FHIR base and the Governed
//     ones), and aud may be left out when a resource names one. A resource
//     that is neither governed nor a partner's server is invalid_target.
//     The consent page says that the EHR grants access to data it does
//     not hold and names the organisation. The patient's id on each
//     governed server (Governed.ResolvePatient) travels in the access
//     token's patient_at claim ({base: id}) and, when it differs from the
//     EHR id, in fhirContext as a full-URL entry (role
//     urn:sim:launch-full-url). VerifyAccessAt(base) is the check for a
//     governed server: it confines a patient-level token to the id in
//     patient_at for that base; with none, patient/ scopes grant nothing
//     there (user/ scopes still apply: that is what governing means).
package ehr
