package fhirstore

import (
	"context"
	"net/url"
)

// Interaction names a FHIR RESTful interaction, as passed to Grant.Allows.
type Interaction string

// The interactions the server implements.
const (
	InteractionRead    Interaction = "read"
	InteractionVRead   Interaction = "vread"
	InteractionHistory Interaction = "history"
	InteractionSearch  Interaction = "search"
	InteractionCreate  Interaction = "create"
	InteractionUpdate  Interaction = "update"
	InteractionDelete  Interaction = "delete"
)

// TokenVerifier checks a bearer access token for this server (signature or
// introspection, expiry, audience) and returns what it grants. It is
// implemented outside this package, by the wiring, over the issuing
// authorization server.
type TokenVerifier interface {
	Verify(ctx context.Context, bearer string) (Grant, error)
}

// Grant is what a verified access token allows.
type Grant interface {
	// Patient is "" unless the token is confined to one patient's
	// compartment (patient-level scopes).
	Patient() string
	// Allows reports whether the token's scopes (SMART v1 or v2) permit the
	// interaction on the type with these search parameters.
	Allows(resourceType string, interaction Interaction, params url.Values) bool
}

// SecurityURIs are the OAuth endpoints advertised in the CapabilityStatement
// through the SMART oauth-uris extension. Empty ones are left out.
type SecurityURIs struct {
	Authorize  string
	Token      string
	Register   string
	Manage     string
	Introspect string
	Revoke     string
}
