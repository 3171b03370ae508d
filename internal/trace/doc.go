// Package trace records the exchanges between the parties of a simulated
// ecosystem (App, User, EHR FHIR, EHR AS, Other FHIR, OtherAS, Brands) as
// events grouped into flows, so that scenario reports, sequence diagrams and
// the console can show who asked whom for what, and what was decided.
//
// Events never carry secrets: whoever records an exchange redacts tokens,
// codes, secrets and assertions first (Redact helps); JWT claims may be kept
// decoded.
package trace
