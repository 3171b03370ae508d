// Package broker is the authorization proxy of flows.md direction D: an
// authorization server in front of the EHR AS and OtherAS. The app runs one
// plain SMART authorization (code + PKCE S256) against the broker; the
// broker, a confidential client of both ASes registered with one
// software_id, chains them behind the scenes by redirecting the user's
// browser through each and receiving their codes at its own callback:
//
//  1. app → broker authorize (client_id, redirect_uri, state, PKCE, scope,
//     optional launch from an EHR launch made for the broker's EHR client);
//  2. broker → EHR AS authorize with the app's scope plus launch-token,
//     aud = EHR FHIR base, resource = Other FHIR base, launch passed on;
//     the user logs in / approves at the EHR; code back to the broker, which
//     checks iss (RFC 9207) and exchanges it (client_secret_basic);
//  3. broker → OtherAS authorize with launch=<launch_token>, aud = Other
//     FHIR base, the app's resource scopes; the user approves at OtherAS;
//     code back, checked and exchanged;
//  4. broker → app redirect with its own single-use code (+ state, iss);
//     the app posts it to the broker's token endpoint and gets one token
//     response carrying a token per server.
//
// Discovery: the broker has no FHIR server, so it is found from its
// issuer: {issuer}/.well-known/smart-configuration (the SMART shape, with
// the capability "sim-brokered-tokens") and
// {issuer}/.well-known/openid-configuration (RFC 8414 / OpenID shape)
// serve the same document. Its field "brokered_resources" lists the FHIR
// bases the broker gets tokens for.
//
// The token response is the EHR's token response (access_token for the
// EHR FHIR server, patient, encounter, fhirContext, id_token, scope, ...)
// without refresh_token and launch_token (both are bound to the broker's
// own registrations), plus
//
//	"additional_tokens": [{"resource": "<Other FHIR base>", "access_token": ...,
//	  "token_type": "Bearer", "expires_in": ..., "scope": ..., "patient": ...,
//	  "fhirContext": [...]}]
//
// one entry per other server that answered with a token, and
//
//	"additional_token_errors": [{"resource": ..., "error": ..., "error_description": ...}]
//
// for each that refused (e.g. access_denied when only patient scopes were
// asked for a patient OtherAS cannot find). A refusal at the EHR ends the
// flow with that error at the app.
//
// What every party must trust (nothing in SMART specifies a broker):
//   - the app trusts the broker with its whole authorization: the broker
//     holds both access tokens and could read everything either grants;
//   - the EHR AS and OtherAS trust the broker as a client acting for the
//     app (the same software_id): they see the broker, not the app, and
//     cannot tell which app (or how many apps) the broker serves;
//   - the user trusts that the two consent pages she sees are for the app
//     she started: they name the broker's registration;
//   - OtherAS still decides what the app gets at Other (launch-token,
//     introspection, patient matching, its own consent), so the broker
//     cannot widen access; it can only be trusted not to misuse it.
//
// Choices: codes live 60 s and are single-use; pending authorizations 15
// minutes; an upstream authorization response with a repeated or
// malformed parameter, or an iss other than the leg's AS, ends the flow
// with an error at the app; everything is in memory (a restart forgets
// pending flows). Clients are configured (no dynamic registration): public ones with PKCE,
// confidential-symmetric ones with client_secret_basic or _post.
package broker
