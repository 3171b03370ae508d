// Package trace records the exchanges between the parties of a simulated
// ecosystem (App, User, EHR FHIR, EHR AS, Other FHIR, OtherAS, Brands) as
// events grouped into flows, so that scenario reports, sequence diagrams and
// the console can show who asked whom for what, and what was decided.
//
// Events never carry secrets: whoever records an exchange redacts tokens,
// codes, secrets and assertions first (Redact helps); JWT claims may be kept
// decoded.
//
// Recording is meant to stay on under load: a JSON body without a secret
// member at its top level (a FHIR resource) is kept as sent, without being
// decoded; the claims of a bearer token seen again are not decoded again;
// and a flow keeps at most its newest 1000 events.
package trace
