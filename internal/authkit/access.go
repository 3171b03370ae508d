package authkit

import (
	"net/url"
	"time"

	"github.com/smart-sim/sim/internal/scope"
)

// Access is what a verified access token grants. It satisfies the
// resource server's grant seam: Patient() and Allows().
type Access struct {
	TokenID     string
	ClientID    string
	Subject     string
	FHIRUser    string // absolute URL, "" when none
	PatientID   string // launch patient, "" when none
	EncounterID string
	// PatientSubject marks a token whose user is a patient (portal user):
	// it is confined to PatientID whatever its scopes, and grants nothing
	// when PatientID is empty.
	PatientSubject bool
	Scopes         scope.Set
	Audience       []string
	IssuedAt       time.Time
	Expires        time.Time
}

// Patient returns the patient the token is confined to: the launch patient
// when the grant holds at least one patient/ scope, and always the user's
// own Patient when the subject is a patient user. Then every interaction
// (user/ and system/ scopes included) stays in that patient's compartment,
// which never widens what patient/ scopes alone would give. Without a
// launch patient, patient/ scopes grant nothing.
func (a *Access) Patient() string {
	if a == nil || a.PatientID == "" {
		return ""
	}
	if a.PatientSubject || a.Scopes.HasLevel(scope.Patient) {
		return a.PatientID
	}
	return ""
}

var (
	confinedLevels   = []scope.Level{scope.Patient, scope.User, scope.System}
	unconfinedLevels = []scope.Level{scope.User, scope.System}
)

// Allows reports whether the granted scopes allow interaction ("read",
// "vread", "history", "search", "create", "update", "delete") on
// resourceType with the request's search params (see package scope for
// the rules, granular query scopes included).
func (a *Access) Allows(resourceType, interaction string, params url.Values) bool {
	if a == nil || a.PatientSubject && a.PatientID == "" {
		return false
	}
	if a.Patient() != "" {
		return a.Scopes.Allows(confinedLevels, resourceType, interaction, params)
	}
	return a.Scopes.Allows(unconfinedLevels, resourceType, interaction, params)
}
