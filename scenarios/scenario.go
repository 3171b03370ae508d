package scenarios

// The scenario file: a world (the default, a world file, or either with
// overrides), extra apps, and flows of steps with expectations and faults.
// LoadScenario/ParseScenario decode it strictly (internal/yamlfile), check
// every reference and expectation, fill in every default, and report each
// problem as file:line:column. The runner executes the result.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/trace"
	"github.com/smart-sim/sim/internal/yamlfile"
)

// Bounds on a scenario file, so that any input gets an answer quickly.
const (
	MaxFlows       = 200
	MaxStepsPerRun = 100 // steps in one flow
	MaxFaults      = 20  // faults in one flow
	MaxMatrixCells = 1000
	// DefaultEachLimit is how many patients `patient: {each: CLASS}` runs
	// when the flow gives no limit.
	DefaultEachLimit = 25
)

// Scenario is a parsed, checked scenario file with every default filled
// in. Build it with LoadScenario or ParseScenario.
type Scenario struct {
	// Name identifies the scenario in reports (default: the file's base
	// name without extension).
	Name string `yaml:"name" doc:"The scenario's name in reports; default: the file name without extension."`
	// Description says what the scenario teaches.
	Description string `yaml:"description" doc:"What the scenario shows or teaches (free text)."`
	// WorldFile is the world file the scenario starts from, as written
	// (relative to the scenario file); empty: the built-in default world.
	WorldFile string `yaml:"world_file" doc:"A world file to start from, relative to this file; default: the built-in default world."`
	// Overrides are world keys given inline under `world:`; they are
	// applied on top of WorldFile (or the default world). The effective
	// result is World.
	Overrides WorldOverrides `yaml:"world" doc:"World keys that override the world file (or the default world): seed, ehr, other, match, overlap, users, apps, lifetimes, strict."`
	// Apps are registered in addition to the world's apps.
	Apps []WorldApp `yaml:"apps" doc:"Apps registered in addition to the world's apps (same keys as a world file's apps)."`
	// Flows are run in order.
	Flows []Flow `yaml:"flows" doc:"The flows to run, in order. Each is one testcase (or one per matrix cell)."`

	// File is the path the scenario was read from.
	File string `yaml:"-"`
	// World is the effective world: file, overrides and the scenario's
	// apps applied, validated. The runner starts the servers from it.
	World *World `yaml:"-"`
}

// WorldOverrides holds the `world:` block until the loader applies it.
type WorldOverrides struct {
	node *yaml.Node
}

// Given reports whether the file had a `world:` block.
func (o WorldOverrides) Given() bool { return o.node != nil }

// DecodeYAMLNode implements yamlfile.NodeDecoder; the block's keys are
// decoded later, onto the world they override.
func (o *WorldOverrides) DecodeYAMLNode(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("found %s, expected a mapping of world keys (seed, ehr, overlap, ...)", yamlfile.Describe(n))
	}
	o.node = n
	return nil
}

// Flow is a sequence of steps run by one user for one patient (or, as a
// matrix, once per patient or class: see PatientSel).
type Flow struct {
	// Name identifies the flow in reports; unique within the scenario.
	Name string `yaml:"name" doc:"The flow's name in reports; unique in the scenario."`
	// Description says what the flow shows.
	Description string `yaml:"description" doc:"What this flow shows (free text)."`
	// Patient selects the EHR patient (or patients) the flow runs for.
	Patient PatientSel `yaml:"patient" doc:"The EHR patient the flow is about: by id, by overlap class, or a matrix (each, classes). Default for flows that launch at the EHR: class shared."`
	// User is the username (from the world) who logs in; default: the
	// world's first clinician.
	User string `yaml:"user" doc:"The username (from the world's users) who logs in; default: the world's first clinician."`
	// Faults are injected while the flow runs.
	Faults []Fault `yaml:"faults" doc:"Faults injected while the flow runs: servers down, slow or failing, clock skew, launch-token and code misuse."`
	// Steps run in order; a step whose expectations fail does not stop
	// the flow, a step that cannot run does.
	Steps []Step `yaml:"steps" doc:"The steps, in order."`
}

// PatientSel picks the flow's EHR patient. At most one of ID, Class, Each
// and Classes is set; after loading, a flow that launches at the EHR has
// one set (Class "shared" by default).
type PatientSel struct {
	// ID is an EHR Patient id.
	ID string `yaml:"id" doc:"An EHR Patient id."`
	// Class picks the first EHR patient of an overlap class (in the
	// generator's order, so the same patient every run).
	Class string `yaml:"class" doc:"The first EHR patient of this overlap class." enum:"shared,other_id_only,ambiguous,absent"`
	// Each makes the flow a matrix: one cell per EHR patient of the class
	// (at most Limit).
	Each string `yaml:"each" doc:"A matrix: run the flow for every EHR patient of this class (at most limit)." enum:"shared,other_id_only,ambiguous,absent"`
	// Classes makes the flow a matrix: one cell per class, each with the
	// first patient of that class.
	Classes []string `yaml:"classes" doc:"A matrix: run the flow once per listed overlap class." enum:"shared,other_id_only,ambiguous,absent"`
	// Limit bounds Each (default DefaultEachLimit, at most MaxMatrixCells).
	Limit int `yaml:"limit" doc:"With each: at most this many patients (default 25, at most 1000)."`
}

// IsMatrix reports whether the flow runs once per cell.
func (p PatientSel) IsMatrix() bool { return p.Each != "" || len(p.Classes) > 0 }

// StepKind names what a step does.
type StepKind string

// The step kinds, as their YAML keys.
const (
	StepEHRLaunch        StepKind = "ehr_launch"
	StepStandaloneLaunch StepKind = "standalone_launch"
	StepOtherLaunch      StepKind = "other_launch"
	StepRefresh          StepKind = "refresh"
	StepRead             StepKind = "read"
	StepBackend          StepKind = "backend"
	StepTokenExchange    StepKind = "token_exchange"
	StepBrokerLaunch     StepKind = "broker_launch"
)

// StepKinds lists every kind in documentation order.
var StepKinds = []StepKind{StepEHRLaunch, StepStandaloneLaunch, StepOtherLaunch, StepRefresh, StepRead, StepBackend, StepTokenExchange, StepBrokerLaunch}

// Step is one thing the app (and its user) does. Exactly one of the kind
// fields is set; Kind says which.
type Step struct {
	// Name identifies the step in templates ({{NAME.value}}) and reports.
	// Default by kind: ehr_launch "ehr", standalone_launch its server,
	// other_launch "other", broker_launch "broker", others their kind.
	// Explicit names are unique in a flow; a default name may repeat and
	// then means the latest step.
	Name string `yaml:"name" doc:"The step's name for {{name.value}} templates and reports; default: ehr, other, broker, refresh, read, backend or token_exchange."`

	EHRLaunch        *EHRLaunch        `yaml:"ehr_launch" doc:"An EHR launch: the EHR opens the app's launch URL for the flow's patient; the app authorizes at the EHR AS."`
	StandaloneLaunch *StandaloneLaunch `yaml:"standalone_launch" doc:"A standalone launch at the EHR AS or OtherAS (the user picks the patient at the EHR)."`
	OtherLaunch      *OtherLaunch      `yaml:"other_launch" doc:"The second SMART launch at OtherAS with launch=<launch-token>."`
	Refresh          *Refresh          `yaml:"refresh" doc:"A refresh_token grant for the tokens of an earlier step."`
	Read             *Read             `yaml:"read" doc:"A FHIR read or search at either server."`
	Backend          *Backend          `yaml:"backend" doc:"A Backend Services (client_credentials with private_key_jwt) token request."`
	TokenExchange    *TokenExchange    `yaml:"token_exchange" doc:"Direction B: an RFC 8693 token exchange at OtherAS's token endpoint (a confidential app trades an EHR launch-token, id_token or access token for an Other access token; no consent screen)."`
	BrokerLaunch     *BrokerLaunch     `yaml:"broker_launch" doc:"Direction D: one SMART launch through the authorization broker, which returns the EHR token plus additional_tokens for the Other server."`

	// Expect is what must hold after the step.
	Expect Expect `yaml:"expect" doc:"What must hold after this step."`
}

// Kind returns which kind the step is ("" if none is set).
func (s *Step) Kind() StepKind {
	switch {
	case s.EHRLaunch != nil:
		return StepEHRLaunch
	case s.StandaloneLaunch != nil:
		return StepStandaloneLaunch
	case s.OtherLaunch != nil:
		return StepOtherLaunch
	case s.Refresh != nil:
		return StepRefresh
	case s.Read != nil:
		return StepRead
	case s.Backend != nil:
		return StepBackend
	case s.TokenExchange != nil:
		return StepTokenExchange
	case s.BrokerLaunch != nil:
		return StepBrokerLaunch
	}
	return ""
}

// Server is the server the step talks to: "ehr" or "other".
func (s *Step) Server() string {
	switch {
	case s.EHRLaunch != nil, s.BrokerLaunch != nil:
		return ServerEHR
	case s.StandaloneLaunch != nil:
		return s.StandaloneLaunch.Server
	case s.OtherLaunch != nil, s.TokenExchange != nil:
		return ServerOther
	case s.Read != nil:
		return s.Read.Server
	case s.Backend != nil:
		return s.Backend.Server
	case s.Refresh != nil:
		return s.Refresh.server
	}
	return ""
}

// RequestedScope is the scope the step asks for (after defaults), or ""
// for steps that request none (reads).
func (s *Step) RequestedScope() string {
	switch {
	case s.EHRLaunch != nil:
		return s.EHRLaunch.Scope
	case s.StandaloneLaunch != nil:
		return s.StandaloneLaunch.Scope
	case s.OtherLaunch != nil:
		return s.OtherLaunch.Scope
	case s.Refresh != nil:
		return s.Refresh.Scope
	case s.Backend != nil:
		return s.Backend.Scope
	case s.TokenExchange != nil:
		return s.TokenExchange.Scope
	case s.BrokerLaunch != nil:
		return s.BrokerLaunch.Scope
	}
	return ""
}

// Servers a step can talk to.
const (
	ServerEHR   = "ehr"
	ServerOther = "other"
)

// UserAction is what the scripted user does on the AS's pages.
type UserAction struct {
	// Login is the username typed on the login page; default: the flow's
	// user.
	Login string `yaml:"login" doc:"The username typed on the login page; default: the flow's user."`
	// Password typed; default: the world's password for Login. A different
	// one makes the login fail (expect error: login_failed).
	Password string `yaml:"password" doc:"The password typed; default: the user's password in the world. A wrong one makes the login fail (expect error: login_failed)."`
	// Decision on the consent page: approve (default) or deny.
	Decision string `yaml:"decision" doc:"What the user does on the consent page: approve (default) or deny (the app gets access_denied)." enum:"approve,deny"`
	// Untick are scopes the user unticks on the consent page.
	Untick []string `yaml:"untick" doc:"Scopes the user unticks on the consent page before approving."`
}

// The consent decisions.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// EHRLaunch: the EHR (control API POST /launches) opens the app's launch
// URL with iss and launch for the flow's patient and user; the app
// authorizes at the EHR AS and redeems the code.
type EHRLaunch struct {
	// App is a client_id registered at the EHR, with a launch_url.
	App string `yaml:"app" doc:"The client_id of an app registered at the EHR (with a launch_url); default: the world's first app."`
	// Scope requested; default: the app's registered scope.
	Scope string `yaml:"scope" doc:"The scopes requested (space-separated); default: the app's registered scope. Include launch-token to get a launch_token."`
	// Resource lists the servers named with RFC 8707 resource parameters
	// ("other" selects the Other FHIR base, addressing the launch-token to
	// OtherAS); default none.
	Resource []string `yaml:"resource" doc:"Servers named with RFC 8707 resource parameters on the EHR authorize request (the launch-token's audience)." enum:"ehr,other"`
	// User is what the user does.
	User UserAction `yaml:"user" doc:"What the user does at the EHR AS."`
}

// StandaloneLaunch: the app starts at an AS without a launch; the user
// logs in and picks the flow's patient (at Other: that patient's Other
// record, so give the flow a patient whose class is shared).
type StandaloneLaunch struct {
	// Server is "ehr" or "other".
	Server string `yaml:"server" doc:"Where the app launches: ehr or other (default ehr)." enum:"ehr,other"`
	App    string `yaml:"app" doc:"The client_id of an app registered at that server; default: the world's first app."`
	// Scope default: the app's scope with launch replaced by launch/patient
	// (and, at Other, without launch-token).
	Scope    string     `yaml:"scope" doc:"The scopes requested; default: the app's scope with launch replaced by launch/patient (at other also without launch-token)."`
	Resource []string   `yaml:"resource" doc:"Servers named with RFC 8707 resource parameters." enum:"ehr,other"`
	User     UserAction `yaml:"user" doc:"What the user does (login, patient picker, consent)."`
}

// OtherLaunch: the app authorizes at OtherAS with launch=<launch-token>.
type OtherLaunch struct {
	App string `yaml:"app" doc:"The client_id of an app registered at Other; default: the app of the step whose launch-token is used."`
	// LaunchToken is the template giving the launch-token; default:
	// "{{S.launch_token}}" for the latest earlier EHR step S.
	LaunchToken string `yaml:"launch_token" doc:"The launch-token presented, as a template; default: {{ehr.launch_token}} of the latest EHR launch."`
	// Scope default: the app's scope without launch-token and the
	// standalone launch scopes.
	Scope string     `yaml:"scope" doc:"The scopes requested at OtherAS; default: the app's scope without launch-token, launch/patient and launch/encounter."`
	User  UserAction `yaml:"user" doc:"What the user does at OtherAS (normally only the consent page)."`
}

// Refresh redeems the refresh token of an earlier step.
type Refresh struct {
	// From is the step whose refresh_token is used; default: the latest
	// earlier step with one.
	From string `yaml:"from" doc:"The step whose refresh_token is used; default: the latest earlier launch."`
	// Scope: optional narrower scope; default: the From step's scope.
	Scope string `yaml:"scope" doc:"A narrower scope to request; default: the original step's scope."`

	server string // From's server, set by the loader
}

// Read is a FHIR request with a bearer token.
type Read struct {
	// Server is "ehr" or "other".
	Server string `yaml:"server" doc:"Which FHIR server: ehr or other." enum:"ehr,other"`
	// Path is relative to the FHIR base, a template: "Patient/{{other.patient}}",
	// "Observation?patient={{ehr.patient}}".
	Path string `yaml:"path" doc:"The request path relative to the FHIR base; templates allowed: Patient/{{other.patient}}."`
	// Token: a step name (its access token), a template ({{ehr.launch_token}}),
	// or "none"; default: the latest earlier step's token for Server.
	Token string `yaml:"token" doc:"The bearer token: a step name (its access_token), a template such as {{ehr.launch_token}}, or none; default: the latest token for this server."`
}

// TokenNone is Read.Token for a request without Authorization.
const TokenNone = "none"

// Backend is a Backend Services token request (client_credentials with a
// private_key_jwt assertion).
type Backend struct {
	Server string `yaml:"server" doc:"Which AS: ehr or other (default ehr)." enum:"ehr,other"`
	App    string `yaml:"app" doc:"A confidential-asymmetric app registered at that server."`
	Scope  string `yaml:"scope" doc:"system/ scopes requested, e.g. system/Patient.rs."`
}

// TokenExchange is direction B: the app posts an RFC 8693 token exchange
// to OtherAS's token endpoint with its client authentication
// (client_secret_basic for confidential-symmetric apps, private_key_jwt
// for confidential-asymmetric ones).
type TokenExchange struct {
	// App is a client_id registered at Other; default: the app of the
	// step the subject token comes from.
	App string `yaml:"app" doc:"A confidential app registered at Other (client_secret_basic or private_key_jwt); default: the app of the step the subject token comes from. A public app gets unauthorized_client."`
	// SubjectToken is a template; default: {{S.launch_token}} of the
	// latest earlier EHR launch S.
	SubjectToken string `yaml:"subject_token" doc:"The subject token, as a template: {{ehr.launch_token}}, {{ehr.id_token}} or {{ehr.access_token}}; default: the launch_token of the latest EHR launch."`
	// SubjectTokenType is id_token or access_token (or their URNs); after
	// loading it is the URN. Default: access_token for an access token
	// subject, else id_token (a launch-token travels as an id_token).
	SubjectTokenType string `yaml:"subject_token_type" doc:"id_token (also for a launch-token) or access_token, or the RFC 8693 URNs urn:ietf:params:oauth:token-type:id_token / ...:access_token; default: from the subject template (access_token for {{S.access_token}}, else id_token)."`
	// Scope requested; default: the app's patient/ and user/ scopes.
	Scope string `yaml:"scope" doc:"Scopes requested at Other; default: the app's patient/ and user/ scopes (an exchange grants only those, launch/patient and fhirUser)."`
	// Resource names servers with RFC 8707 resource parameters.
	Resource []string `yaml:"resource" doc:"Servers named with RFC 8707 resource parameters (OtherAS accepts only other; ehr shows invalid_target)." enum:"ehr,other"`
}

// The RFC 8693 token types a token_exchange step sends.
const (
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// subjectTokenTypeURN turns a subject_token_type as a scenario writes it
// (short name or URN) into the URN; ok is false for anything else.
func subjectTokenTypeURN(s string) (string, bool) {
	switch s {
	case "id_token", TokenTypeIDToken:
		return TokenTypeIDToken, true
	case "access_token", TokenTypeAccessToken:
		return TokenTypeAccessToken, true
	}
	return s, false
}

// BrokerLaunch is direction D: the app runs one SMART launch against the
// authorization broker (broker_issuer in the ready file), which chains
// the EHR AS and OtherAS behind the scenes (the user logs in and consents
// at both) and answers with the EHR's token response plus
// additional_tokens (a token for the Other server) or
// additional_token_errors (what OtherAS refused).
type BrokerLaunch struct {
	// App is a client_id of the world (the broker knows every public and
	// confidential-symmetric app); default: the world's first app.
	App string `yaml:"app" doc:"The client_id of the app (the broker knows the world's public and confidential-symmetric apps); default: the world's first app."`
	// Launch is "ehr" (default: the EHR launches the app's launch URL for
	// the broker's EHR client, and the app passes launch on) or
	// "standalone" (the user picks the patient at the EHR).
	Launch string `yaml:"launch" doc:"ehr (default): the EHR launches the app for the broker's EHR registration and the app passes launch to the broker; standalone: no launch, the user picks the patient at the EHR." enum:"ehr,standalone"`
	// Scope requested at the broker (it adds launch-token for the EHR and
	// asks OtherAS for the rest without launch-token, offline_access,
	// online_access and launch/encounter). Default: the app's scope
	// without launch-token, offline_access and (for an EHR launch)
	// launch/patient; a standalone launch gets launch/patient for launch.
	Scope string `yaml:"scope" doc:"The scopes requested at the broker; default: the app's scope without launch-token and offline_access (standalone: launch replaced by launch/patient). The broker asks OtherAS for the same scopes without launch-token, offline_access, online_access and launch/encounter."`
	// User is what the user does at both ASes (login at the EHR, both
	// consent pages).
	User UserAction `yaml:"user" doc:"What the user does: login at the EHR AS, and the same decision and unticks on both consent pages (EHR AS and OtherAS)."`
}

// The broker_launch launch modes.
const (
	BrokerLaunchEHR        = "ehr"
	BrokerLaunchStandalone = "standalone"
)

// brokerOtherScope is what the broker asks OtherAS for (internal/broker:
// the app's scope without what only the EHR can give).
func brokerOtherScope(scope []string) []string {
	var out []string
	for _, s := range scope {
		switch s {
		case "launch-token", "offline_access", "online_access", "launch/encounter":
			continue
		}
		out = append(out, s)
	}
	return out
}

// Expect is what must hold after a step. Every field is optional; without
// Error the step must succeed.
type Expect struct {
	// Granted scopes must be in the granted scope.
	Granted []string `yaml:"granted" doc:"Scopes that must be granted (each must be requested)."`
	// Refused scopes were requested and must not be granted.
	Refused []string `yaml:"refused" doc:"Requested scopes that must not be granted."`
	// Error is the OAuth error the step must end with (or login_failed,
	// unreachable); without it the step must succeed.
	Error string `yaml:"error" doc:"The error the step must end with: an OAuth error code, login_failed, or unreachable. Without it the step must succeed." enum:"access_denied,invalid_request,invalid_client,invalid_grant,unauthorized_client,unsupported_grant_type,unsupported_response_type,invalid_scope,invalid_target,server_error,temporarily_unavailable,interaction_required,login_required,invalid_token,insufficient_scope,login_failed,unreachable"`
	// Status is the HTTP status of the step's last response (the token
	// endpoint for grants, the FHIR server for reads).
	Status int `yaml:"status" doc:"The HTTP status of the step's last response (token endpoint, or FHIR server for reads)."`
	// Present and Absent name token response fields that must (not) be
	// there.
	Present []string `yaml:"present" doc:"Token response fields that must be present (launch_token, refresh_token, id_token, patient, ...)."`
	Absent  []string `yaml:"absent" doc:"Token response fields that must be absent."`
	// Fields are token response fields with their exact values (scalars;
	// strings may be templates).
	Fields map[string]any `yaml:"fields" schema:"scalars" doc:"Token response fields and their exact values (strings, numbers, booleans); strings may be templates."`
	// Count is the number of resources a read returned (entries of a
	// searchset Bundle, 1 for a single resource).
	Count *int `yaml:"count" doc:"For reads: the number of resources returned (Bundle entries, or 1 for one resource)."`
	// SamePerson: true, the step's patient is a record of the flow's EHR
	// patient (by the world's truth); false, it is not (or there is none).
	SamePerson *bool `yaml:"same_person" doc:"true: the patient in this step's context is the same person as the flow's EHR patient (by the world's truth); false: it is not, or there is none."`
	// FHIRContext entries must each match an entry of the token
	// response's fhirContext array.
	FHIRContext []FHIRContextMatch `yaml:"fhir_context" doc:"Entries the token response's fhirContext must hold: each is matched by the keys it gives (type, reference, role, identifier), e.g. {type: Patient, role: urn:sim:launch-full-url}."`
	// AdditionalTokens (broker_launch only) holds expectations per
	// server on the broker's additional_tokens / additional_token_errors;
	// the only key is "other".
	AdditionalTokens map[string]*TokenExpect `yaml:"additional_tokens" doc:"broker_launch only: what the broker got for each other server (key: other), from additional_tokens or additional_token_errors."`
	// TraceHas and TraceLacks match exchanges recorded during the step.
	TraceHas   []TraceMatch `yaml:"trace_has" doc:"Exchanges that must appear in the trace of this step."`
	TraceLacks []TraceMatch `yaml:"trace_lacks" doc:"Exchanges that must not appear in the trace of this step."`
}

// hasSuccessChecks reports whether the expectation needs a successful
// outcome (which an expected error rules out).
func (e *Expect) hasSuccessChecks() bool {
	return len(e.Granted) > 0 || len(e.Present) > 0 || len(e.Fields) > 0 || e.Count != nil || (e.SamePerson != nil && *e.SamePerson) ||
		len(e.FHIRContext) > 0 || len(e.AdditionalTokens) > 0
}

// FHIRContextMatch matches one fhirContext entry of a token response
// (SMART 2.2: reference, canonical or identifier, plus type and role).
// Every given key must equal the entry's; strings may be templates.
type FHIRContextMatch struct {
	Type      string `yaml:"type" doc:"The entry's type, e.g. Patient."`
	Reference string `yaml:"reference" doc:"The entry's relative reference, e.g. Patient/{{patient.ehr_id}}."`
	Role      string `yaml:"role" doc:"The entry's role URI, e.g. urn:sim:launch-full-url."`
	// Identifier is the entry's identifier.value (sim carries a resource
	// of another server as a full URL there, system urn:ietf:rfc:3986).
	Identifier string `yaml:"identifier" doc:"The entry's identifier value: for a resource on another server its full URL, e.g. {{servers.other_fhir}}/Patient/{{patient.other_id}}."`
}

// IsZero reports whether no key is given.
func (m FHIRContextMatch) IsZero() bool { return m == FHIRContextMatch{} }

// TokenExpect is what must hold for one additional token of a broker
// launch: the entry of additional_tokens for that server, or (with Error)
// its entry of additional_token_errors.
type TokenExpect struct {
	Granted []string       `yaml:"granted" doc:"Scopes that must be granted at this server."`
	Refused []string       `yaml:"refused" doc:"Scopes asked of this server that must not be granted."`
	Error   string         `yaml:"error" doc:"The error this server's authorization ended with (from additional_token_errors); without it the server must have issued a token." enum:"access_denied,invalid_request,invalid_client,invalid_grant,unauthorized_client,unsupported_grant_type,unsupported_response_type,invalid_scope,invalid_target,server_error,temporarily_unavailable,interaction_required,login_required,invalid_token,insufficient_scope,login_failed,unreachable"`
	Present []string       `yaml:"present" doc:"Fields of the entry that must be present (access_token, patient, fhirContext, ...)."`
	Absent  []string       `yaml:"absent" doc:"Fields of the entry that must be absent."`
	Fields  map[string]any `yaml:"fields" schema:"scalars" doc:"Fields of the entry and their exact values (strings may be templates)."`
	// SamePerson: the entry's patient is (not) a record of the flow's EHR
	// patient at that server.
	SamePerson  *bool              `yaml:"same_person" doc:"true: the entry's patient is a record of the flow's EHR patient at this server; false: it is not, or there is none."`
	FHIRContext []FHIRContextMatch `yaml:"fhir_context" doc:"Entries the entry's fhirContext must hold (matched by the keys given)."`
}

func (e *TokenExpect) hasSuccessChecks() bool {
	return len(e.Granted) > 0 || len(e.Present) > 0 || len(e.Fields) > 0 || (e.SamePerson != nil && *e.SamePerson) || len(e.FHIRContext) > 0
}

// TraceMatch matches recorded trace events; every given field must match.
type TraceMatch struct {
	// From and To are parties: app, user, brands, ehr_fhir, ehr_as,
	// other_fhir, other_as.
	From string `yaml:"from" doc:"The party that sent it." enum:"app,user,brands,ehr_fhir,ehr_as,other_fhir,other_as,broker"`
	To   string `yaml:"to" doc:"The party that received it." enum:"app,user,brands,ehr_fhir,ehr_as,other_fhir,other_as,broker"`
	// Method is the HTTP method; Path a substring of the URL path.
	Method string `yaml:"method" doc:"The HTTP method."`
	Path   string `yaml:"path" doc:"Text the URL path contains, e.g. /auth/introspect."`
	// Label and Decision are substrings of the event's label and decision.
	Label    string `yaml:"label" doc:"Text the event's label contains."`
	Decision string `yaml:"decision" doc:"Text the decision contains (for decisions, e.g. refused patient/*.rs)."`
	Status   int    `yaml:"status" doc:"The HTTP status of the response."`
	// Error: the event is (or is not) marked as an error or refusal.
	Error *bool `yaml:"error" doc:"Whether the event is marked as an error or refusal."`
}

// traceParties maps the YAML party names to trace parties.
var traceParties = map[string]trace.Party{
	"app": trace.App, "user": trace.User, "brands": trace.Brands,
	"ehr_fhir": trace.EHRFHIR, "ehr_as": trace.EHRAS, "other_fhir": trace.OtherFHIR, "other_as": trace.OtherAS,
	"broker": trace.Broker,
}

// TraceParty returns the trace party for a YAML party name.
func TraceParty(name string) (trace.Party, bool) {
	p, ok := traceParties[name]
	return p, ok
}

// Fault is one fault injected into a flow: exactly one of Down, Slow,
// Fail, ClockSkew, LaunchToken and Code is set.
type Fault struct {
	// Down, Slow and Fail break the calls sim's own servers make to one
	// another (OtherAS to the EHR AS, its introspection endpoint, or the
	// EHR FHIR server), never the app's own calls: see FaultTarget.
	//
	// Down: the component refuses connections.
	Down string `yaml:"down" doc:"This component refuses connections." enum:"ehr_as,introspection,ehr_fhir"`
	// Slow: the component answers after Delay.
	Slow string `yaml:"slow" doc:"This component answers after delay." enum:"ehr_as,introspection,ehr_fhir"`
	// Fail: the component answers Status (default 500).
	Fail string `yaml:"fail" doc:"This component answers with status (default 500)." enum:"ehr_as,introspection,ehr_fhir"`
	// Delay for Slow (default 3s, at most 60s).
	Delay time.Duration `yaml:"delay" doc:"With slow: how long (default 3s, at most 60s)."`
	// Status for Fail (500–599).
	Status int `yaml:"status" doc:"With fail: the status answered (500-599, default 500)."`
	// ClockSkew: the servers' shared clock runs By ahead of the app's
	// (negative: behind). "servers" is the only value: sim's servers share
	// one clock (see Clock).
	ClockSkew string        `yaml:"clock_skew" doc:"The servers' clock runs off by 'by' (relative to the app); the servers share one clock." enum:"servers"`
	By        time.Duration `yaml:"by" doc:"With clock_skew: how far ahead (negative: behind), e.g. 10m or -2h; at most 24h."`
	// LaunchToken misuse at the step During (an other_launch or a
	// token_exchange): expired (it
	// expires before use), replayed (it was used once already: the runner
	// presents it a first time, the step's expectations judge the replay),
	// other_app (App presents it instead of the step's app).
	LaunchToken string `yaml:"launch_token" doc:"Misuse of the launch-token at the other_launch or token_exchange named by during: expired (used after it expired), replayed (presented a second time; the step's expectations judge the replay), other_app (presented by app)." enum:"expired,replayed,other_app"`
	App         string `yaml:"app" doc:"With launch_token: other_app: the client_id that presents it."`
	// Code: replayed: the step During redeems its code twice; the step's
	// expectations judge the second redemption.
	Code string `yaml:"code" doc:"replayed: the launch named by during redeems its authorization code twice; the step's expectations judge the second redemption." enum:"replayed"`
	// During names the step the fault applies to; empty: the whole flow
	// (required for launch_token and code).
	During string `yaml:"during" doc:"The step the fault applies to; default: the whole flow (required for launch_token and code)."`
}

// Kind names which fault it is: down, slow, fail, clock_skew,
// launch_token or code.
func (f *Fault) Kind() string {
	switch {
	case f.Down != "":
		return "down"
	case f.Slow != "":
		return "slow"
	case f.Fail != "":
		return "fail"
	case f.ClockSkew != "":
		return "clock_skew"
	case f.LaunchToken != "":
		return "launch_token"
	case f.Code != "":
		return "code"
	}
	return ""
}

// Fault components and values.
var (
	faultComponents = []string{string(FaultEHRAS), string(FaultIntrospection), string(FaultEHRFHIR)}
	skewServers     = []string{"servers"}
	launchTokenMis  = []string{"expired", "replayed", "other_app"}
	expectErrors    = []string{"access_denied", "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
		"unsupported_grant_type", "unsupported_response_type", "invalid_scope", "invalid_target", "server_error",
		"temporarily_unavailable", "interaction_required", "login_required", "invalid_token", "insufficient_scope",
		"login_failed", "unreachable"}
)

// Built-in template namespaces (not step names).
const (
	tmplPatient = "patient" // {{patient.ehr_id}}, {{patient.other_id}}, {{patient.class}}
	tmplUser    = "user"    // {{user.username}}, {{user.fhirUser}}
	tmplServers = "servers" // {{servers.ehr_fhir}}, {{servers.other_fhir}}
)

var builtinValues = map[string][]string{
	tmplPatient: {"ehr_id", "other_id", "class"},
	tmplUser:    {"username", "fhirUser"},
	tmplServers: {"ehr_fhir", "other_fhir"},
}

// StepValues lists the template values each step kind provides
// ({{name.value}}); the runner must provide every one it lists.
var StepValues = map[StepKind][]string{
	StepEHRLaunch:        {"access_token", "refresh_token", "id_token", "launch_token", "patient", "encounter", "scope", "token_type", "expires_in", "fhirUser"},
	StepStandaloneLaunch: {"access_token", "refresh_token", "id_token", "launch_token", "patient", "encounter", "scope", "token_type", "expires_in", "fhirUser"},
	StepOtherLaunch:      {"access_token", "refresh_token", "id_token", "patient", "encounter", "scope", "token_type", "expires_in", "fhirUser"},
	StepRefresh:          {"access_token", "refresh_token", "patient", "scope", "expires_in"},
	StepRead:             {"status", "id", "count"},
	StepBackend:          {"access_token", "scope", "expires_in"},
	StepTokenExchange:    {"access_token", "patient", "scope", "issued_token_type", "token_type", "expires_in"},
	// A broker launch gives the EHR token response's values (access_token
	// is the EHR token, also as ehr_token) and the Other token's as other_….
	StepBrokerLaunch: {"access_token", "id_token", "patient", "encounter", "scope", "token_type", "expires_in", "fhirUser",
		"ehr_token", "other_token", "other_patient", "other_scope", "other_error"},
}

// Ref is one {{step.value}} reference in a template.
type Ref struct {
	Step, Value string
}

var (
	refRE      = regexp.MustCompile(`^([a-z][a-z0-9_-]*)\.([A-Za-z][A-Za-z0-9_]*)$`)
	stepNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
)

// References parses the {{step.value}} references in a template.
func References(s string) ([]Ref, error) {
	var refs []Ref
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if strings.Contains(s, "}}") {
				return refs, errors.New(`"}}" without an opening "{{"`)
			}
			return refs, nil
		}
		if strings.Contains(s[:i], "}}") {
			return refs, errors.New(`"}}" without an opening "{{"`)
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return refs, errors.New(`"{{" without a closing "}}"`)
		}
		inner := strings.TrimSpace(s[i+2 : i+2+j])
		m := refRE.FindStringSubmatch(inner)
		if m == nil {
			return refs, fmt.Errorf("{{%s}} is not a reference; expected {{step.value}} such as {{ehr.patient}}", clipText(inner))
		}
		refs = append(refs, Ref{Step: m[1], Value: m[2]})
		s = s[i+2+j+2:]
	}
}

// Expand replaces every {{step.value}} in s using lookup. A reference
// lookup does not know is an error naming it.
func Expand(s string, lookup func(Ref) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return "", errors.New(`"{{" without a closing "}}"`)
		}
		m := refRE.FindStringSubmatch(strings.TrimSpace(s[i+2 : i+2+j]))
		if m == nil {
			return "", fmt.Errorf("{{%s}} is not a reference", clipText(s[i+2:i+2+j]))
		}
		v, ok := lookup(Ref{Step: m[1], Value: m[2]})
		if !ok {
			return "", fmt.Errorf("{{%s.%s}} has no value", m[1], m[2])
		}
		b.WriteString(s[:i])
		b.WriteString(v)
		s = s[i+2+j+2:]
	}
}

func clipText(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return s
	}
	return string([]rune(s)[:40]) + "…"
}

// Cell is one run of a flow: the flow itself, or one matrix cell.
type Cell struct {
	// Name is "" for a flow that is not a matrix, else "class=absent" or
	// "patient=e-17".
	Name string
	// Patient is the EHR patient's truth (id, class, Other records).
	Patient synth.Truth
	// HasPatient is false for a flow that needs no patient.
	HasPatient bool
}

// Cells expands the flow's patient selection against the generated
// world's truth (synth.Population.Truth, in generation order).
func (f *Flow) Cells(truth []synth.Truth) ([]Cell, error) {
	p := f.Patient
	first := func(class string) (synth.Truth, bool) {
		for _, t := range truth {
			if t.Class == class {
				return t, true
			}
		}
		return synth.Truth{}, false
	}
	switch {
	case p.ID != "":
		for _, t := range truth {
			if t.EHRID == p.ID {
				return []Cell{{Patient: t, HasPatient: true}}, nil
			}
		}
		return nil, fmt.Errorf("flow %q: the world has no EHR patient %q", f.Name, p.ID)
	case p.Class != "":
		t, ok := first(p.Class)
		if !ok {
			return nil, fmt.Errorf("flow %q: the world has no %s patient", f.Name, p.Class)
		}
		return []Cell{{Patient: t, HasPatient: true}}, nil
	case p.Each != "":
		limit := p.Limit
		if limit <= 0 {
			limit = DefaultEachLimit
		}
		var cells []Cell
		for _, t := range truth {
			if t.Class == p.Each && len(cells) < limit {
				cells = append(cells, Cell{Name: "patient=" + t.EHRID, Patient: t, HasPatient: true})
			}
		}
		if len(cells) == 0 {
			return nil, fmt.Errorf("flow %q: the world has no %s patient", f.Name, p.Each)
		}
		return cells, nil
	case len(p.Classes) > 0:
		var cells []Cell
		for _, c := range p.Classes {
			t, ok := first(c)
			if !ok {
				return nil, fmt.Errorf("flow %q: the world has no %s patient", f.Name, c)
			}
			cells = append(cells, Cell{Name: "class=" + c, Patient: t, HasPatient: true})
		}
		return cells, nil
	}
	return []Cell{{}}, nil
}

// LoadScenario reads and checks a scenario file. Bad content gives
// yamlfile.Problems (every problem, each with file:line:column); a file
// that cannot be read gives a plain error.
func LoadScenario(path string) (*Scenario, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario file: %w", err)
	}
	return ParseScenario(path, data)
}

// ParseScenario checks a scenario file's content; file names it in
// problems, and a world_file is resolved against its directory.
func ParseScenario(file string, data []byte) (*Scenario, error) {
	return parseScenario(file, data, readBounded)
}

// readBounded reads a regular file of at most yamlfile's size limit (+1
// byte, so that the decoder reports the size). Devices and pipes are
// refused: reading them could block forever.
func readBounded(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, int64(yamlfile.DefaultLimits.MaxBytes)+1))
}

// scLoader carries one parse.
type scLoader struct {
	file     string
	data     []byte
	readFile func(string) ([]byte, error)
	pos      yamlfile.Positions
	problems yamlfile.Problems
	s        *Scenario
	world    *World // effective world (never nil after loadWorld)
	worldOK  bool   // false: world-dependent checks are skipped
	// decodeAt holds the positions the decoder complained about: a later
	// check at the same place would only repeat the complaint.
	decodeAt map[yamlfile.Pos]bool
	stopped  bool // the decoder stopped early (limits): skip the checks
}

func (l *scLoader) add(path, format string, args ...any) {
	p := l.pos.Problemf(path, format, args...)
	if l.decodeAt[yamlfile.Pos{Line: p.Line, Column: p.Column}] {
		return
	}
	l.problems = append(l.problems, p)
}

// decodeBad reports whether the decoder complained about the value at path.
func (l *scLoader) decodeBad(path string) bool {
	pos, ok := l.pos.Lookup(path)
	return ok && l.decodeAt[pos]
}

// article is "a" or "an" for a step kind.
func article(k StepKind) string {
	if strings.HasPrefix(string(k), "e") || strings.HasPrefix(string(k), "o") {
		return "an " + string(k)
	}
	return "a " + string(k)
}

func parseScenario(file string, data []byte, readFile func(string) ([]byte, error)) (*Scenario, error) {
	l := &scLoader{file: file, data: data, readFile: readFile, s: &Scenario{}}
	pos, err := yamlfile.DecodeWith(file, data, l.s, yamlfile.Options{Root: "scenario"})
	l.pos = pos
	if err != nil {
		var ps yamlfile.Problems
		if !errors.As(err, &ps) {
			return nil, fmt.Errorf("parse scenario: %w", err)
		}
		l.problems = append(l.problems, ps...)
		if !pos.Has("") {
			return nil, l.problems // nothing was read (size, encoding, syntax)
		}
		l.decodeAt = map[yamlfile.Pos]bool{}
		for _, p := range ps {
			l.decodeAt[yamlfile.Pos{Line: p.Line, Column: p.Column}] = true
			if strings.HasPrefix(p.Msg, "nesting deeper") || strings.HasPrefix(p.Msg, "aliases expand") || strings.HasPrefix(p.Msg, "too many problems") {
				l.stopped = true
			}
		}
		if l.stopped || l.decodeBad("") {
			return nil, l.problems
		}
	}
	if !pos.Has("") {
		l.problems = append(l.problems, yamlfile.Problem{File: file, Line: 1, Column: 1,
			Msg: "empty scenario: expected flows (see sim schema for the format)"})
		return nil, l.problems
	}
	l.s.File = file
	l.loadWorld()
	l.checkScenario()
	if len(l.problems) > 0 {
		l.problems.Sort()
		if n := yamlfile.DefaultLimits.MaxProblems; len(l.problems) > n {
			l.problems = append(l.problems[:n], yamlfile.Problem{File: file, Line: l.problems[n].Line, Column: l.problems[n].Column,
				Msg: fmt.Sprintf("too many problems (more than %d); stopping here", n)})
		}
		return nil, l.problems
	}
	return l.s, nil
}

// loadWorld builds the effective world: the world file (or the default
// world), then the `world:` overrides, then the scenario's apps.
func (l *scLoader) loadWorld() {
	s := l.s
	base := DefaultWorld()
	l.worldOK = true
	if s.WorldFile != "" {
		path := s.WorldFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(l.file), path)
		}
		data, err := l.readFile(path)
		if err != nil {
			l.add("world_file", "world_file: cannot read %q (expected a world file, relative to this scenario's directory)", s.WorldFile)
			l.worldOK = false
		} else if w, err := ParseWorld(path, data); err != nil {
			var ps yamlfile.Problems
			if errors.As(err, &ps) {
				l.problems = append(l.problems, ps...)
			}
			l.add("world_file", "world_file: %q has problems (listed with its name)", s.WorldFile)
			l.worldOK = false
		} else {
			base = w
		}
	}
	l.world = base
	if s.Overrides.Given() {
		sub, ok := l.worldSubDocument()
		if ok {
			// Decode onto a copy so that a broken override leaves base usable.
			cp, err := cloneWorld(base)
			if err == nil {
				w, err := parseWorldOnto(cp, l.file, sub)
				var ps yamlfile.Problems
				switch {
				case errors.As(err, &ps):
					l.problems = append(l.problems, ps...)
					l.worldOK = false
				case err != nil:
					l.add("world", "world: could not apply the overrides")
					l.worldOK = false
				default:
					l.world = w
				}
			}
		}
	}
	// The scenario's own apps, checked with the world's rules.
	if len(s.Apps) > 0 {
		tmp := *l.world
		tmp.Apps = s.Apps
		for _, p := range tmp.validate(l.pos) {
			if strings.HasPrefix(p.Msg, "apps[") {
				l.problems = append(l.problems, p)
			}
		}
		for i, a := range s.Apps {
			for j, wa := range l.world.Apps {
				if a.ClientID == wa.ClientID {
					l.add(yamlfile.IndexPath("apps", i)+".client_id",
						"apps[%d].client_id: %q is already the world's apps[%d]; pick another client_id (or change it under world.apps)", i, a.ClientID, j)
				}
			}
		}
		w := *l.world
		w.Apps = append(slices.Clone(l.world.Apps), s.Apps...)
		l.world = &w
	}
	s.World = l.world
}

// cloneWorld deep-copies a world through its own YAML-free fields.
func cloneWorld(w *World) (*World, error) {
	c := *w
	c.Match.IdentifierSystems = slices.Clone(w.Match.IdentifierSystems)
	c.Users.Clinicians = slices.Clone(w.Users.Clinicians)
	c.Users.Patients = slices.Clone(w.Users.Patients)
	c.Apps = slices.Clone(w.Apps)
	for i := range c.Apps {
		c.Apps[i].RedirectURIs = slices.Clone(w.Apps[i].RedirectURIs)
	}
	return &c, nil
}

// worldSubDocument returns the scenario file with everything but the
// `world:` block's value blanked out (kept as spaces and newlines), so that
// decoding it reports problems at their true line and column.
func (l *scLoader) worldSubDocument() ([]byte, bool) {
	root, ok := parseRoot(l.data)
	if !ok || root.Kind != yaml.MappingNode {
		l.add("world", "world: could not locate the world block")
		return nil, false
	}
	if root.Style&yaml.FlowStyle != 0 {
		l.add("world", "world: overrides need block YAML at the top level (write the scenario without { } around it)")
		return nil, false
	}
	var val, next *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "world" {
			val = root.Content[i+1]
			if i+2 < len(root.Content) {
				next = root.Content[i+2]
			}
			break
		}
	}
	if val == nil {
		l.add("world", "world: could not locate the world block")
		return nil, false
	}
	if val.Kind == yaml.AliasNode {
		l.add("world", "world: an alias cannot stand for the world block; write the keys out")
		return nil, false
	}
	endLine, endCol := -1, -1
	if next != nil {
		endLine, endCol = next.Line, next.Column
	}
	var out bytes.Buffer
	out.Grow(len(l.data))
	for i, ln := range bytes.SplitAfter(l.data, []byte("\n")) {
		n := i + 1
		nl := bytes.HasSuffix(ln, []byte("\n"))
		body := bytes.TrimRight(ln, "\r\n")
		switch {
		case n < val.Line || (endLine > 0 && n > endLine):
			body = nil
		default:
			if endLine > 0 && n == endLine {
				body = cutRunes(body, endCol-1)
			}
			if n == val.Line {
				body = blankRunes(body, val.Column-1)
			}
		}
		out.Write(body)
		if nl {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), true
}

// parseRoot parses data into a node tree (aliases are not expanded, so this
// is linear in the input); the YAML parser is not ours, so a panic in it is
// contained.
func parseRoot(data []byte) (root *yaml.Node, ok bool) {
	defer func() {
		if recover() != nil {
			root, ok = nil, false
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, false
	}
	return doc.Content[0], true
}

// cutRunes keeps the first n runes of b.
func cutRunes(b []byte, n int) []byte {
	i := 0
	for k := 0; k < n && i < len(b); k++ {
		_, size := utf8.DecodeRune(b[i:])
		i += size
	}
	return b[:i]
}

// blankRunes replaces the first n runes of b with spaces.
func blankRunes(b []byte, n int) []byte {
	i := 0
	for k := 0; k < n && i < len(b); k++ {
		_, size := utf8.DecodeRune(b[i:])
		i += size
	}
	return append(bytes.Repeat([]byte(" "), n), b[i:]...)
}

// appByID finds an app of the effective world.
func (l *scLoader) appByID(id string) (*WorldApp, bool) {
	for i := range l.world.Apps {
		if l.world.Apps[i].ClientID == id {
			return &l.world.Apps[i], true
		}
	}
	return nil, false
}

func (l *scLoader) appIDs() string {
	ids := make([]string, len(l.world.Apps))
	for i, a := range l.world.Apps {
		ids[i] = a.ClientID
	}
	return strings.Join(ids, ", ")
}

// worldUser returns the password of a world username.
func (l *scLoader) worldUser(name string) (password string, ok bool) {
	for _, c := range l.world.Users.Clinicians {
		if c.Username == name {
			return c.Password, true
		}
	}
	for _, p := range l.world.Users.Patients {
		if p.Username == name {
			return p.Password, true
		}
	}
	return "", false
}

func (l *scLoader) usernames() string {
	var names []string
	for _, c := range l.world.Users.Clinicians {
		names = append(names, c.Username)
	}
	for _, p := range l.world.Users.Patients {
		names = append(names, p.Username)
	}
	return strings.Join(names, ", ")
}

func (l *scLoader) checkScenario() {
	s := l.s
	if s.Name == "" {
		base := filepath.Base(l.file)
		s.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if len(s.Flows) == 0 && l.pos.Has("") {
		l.add("flows", "flows: none given, expected at least one flow")
	}
	if len(s.Flows) > MaxFlows {
		l.add("flows", "flows: %d flows, expected at most %d", len(s.Flows), MaxFlows)
		return
	}
	names := map[string]int{}
	cells := 0
	for i := range s.Flows {
		p := yamlfile.IndexPath("flows", i)
		f := &s.Flows[i]
		if l.decodeBad(p) {
			continue
		}
		if strings.TrimSpace(f.Name) == "" {
			f.Name = "flow " + strconv.Itoa(i+1)
		} else if j, dup := names[f.Name]; dup {
			l.add(p+".name", "%s.name: %q is already the name of flows[%d]", p, f.Name, j)
		} else {
			names[f.Name] = i
		}
		l.checkFlow(p, f)
		cells += max(1, l.cellCount(f))
	}
	if cells > MaxMatrixCells {
		l.add("flows", "flows: %d runs in all (flows and matrix cells), expected at most %d", cells, MaxMatrixCells)
	}
}

// cellCount estimates the runs of a flow from the world's class counts.
func (l *scLoader) cellCount(f *Flow) int {
	switch {
	case f.Patient.Each != "":
		n := l.classCounts()[f.Patient.Each]
		return min(n, f.Patient.Limit)
	case len(f.Patient.Classes) > 0:
		return len(f.Patient.Classes)
	}
	return 1
}

func (l *scLoader) classCounts() map[string]int {
	w := l.world
	if w.EHR.Patients < 0 || w.EHR.Patients > synth.MaxPatients {
		return map[string]int{}
	}
	return synth.ClassCounts(w.EHR.Patients, w.synthOverlap())
}

// stepInfo is what later steps know about an earlier one.
type stepInfo struct {
	index  int
	kind   StepKind
	server string
	app    string
	scope  []string
}

func (l *scLoader) checkFlow(p string, f *Flow) {
	// User.
	if f.User == "" {
		if l.worldOK && len(l.world.Users.Clinicians) > 0 {
			f.User = l.world.Users.Clinicians[0].Username
		}
	} else if l.worldOK {
		if _, ok := l.worldUser(f.User); !ok {
			l.add(p+".user", "%s.user: unknown user %q (the world's users: %s)", p, f.User, l.usernames())
		}
	}

	// Steps (first, so that faults can refer to them).
	if len(f.Steps) == 0 && !l.pos.Has(p+".steps") {
		l.add(p, "%s: no steps, expected at least one step", p)
	}
	if len(f.Steps) > MaxStepsPerRun {
		l.add(p+".steps", "%s.steps: %d steps, expected at most %d", p, len(f.Steps), MaxStepsPerRun)
		return
	}
	needsPatient := false
	explicit := map[string]int{}
	defined := map[string]stepInfo{} // latest step by name
	for i := range f.Steps {
		sp := yamlfile.IndexPath(p+".steps", i)
		st := &f.Steps[i]
		kind := l.stepKind(sp, st)
		if kind == StepEHRLaunch || kind == StepBrokerLaunch || kind == StepStandaloneLaunch && st.StandaloneLaunch.Server != ServerOther {
			needsPatient = true
		}
		if st.Name != "" {
			if !stepNameRE.MatchString(st.Name) {
				l.add(sp+".name", "%s.name: found %q, expected a name of lower-case letters, digits, _ and - (starting with a letter), for {{name.value}}", sp, clipText(st.Name))
			} else if _, builtin := builtinValues[st.Name]; builtin {
				l.add(sp+".name", "%s.name: %q is reserved for {{%s.…}} values; choose another name", sp, st.Name, st.Name)
			} else if j, dup := explicit[st.Name]; dup {
				l.add(sp+".name", "%s.name: %q is already the name of steps[%d]", sp, st.Name, j)
			} else {
				explicit[st.Name] = i
			}
		}
		if kind == "" {
			continue
		}
		if st.Name == "" {
			st.Name = defaultStepName(st)
		}
		info := l.checkStep(sp, i, f, st, kind, defined)
		defined[st.Name] = info
	}

	// Patient.
	l.checkPatient(p+".patient", &f.Patient, needsPatient)

	// Faults.
	if len(f.Faults) > MaxFaults {
		l.add(p+".faults", "%s.faults: %d faults, expected at most %d", p, len(f.Faults), MaxFaults)
		return
	}
	for i := range f.Faults {
		l.checkFault(yamlfile.IndexPath(p+".faults", i), f, &f.Faults[i])
	}
}

func defaultStepName(st *Step) string {
	switch st.Kind() {
	case StepEHRLaunch:
		return "ehr"
	case StepStandaloneLaunch:
		if st.StandaloneLaunch.Server == ServerOther {
			return "other"
		}
		return "ehr"
	case StepOtherLaunch:
		return "other"
	case StepBrokerLaunch:
		return "broker"
	}
	return string(st.Kind())
}

// stepKind checks exactly one kind key is given. A kind key written with
// no value (`- refresh:`) counts as given.
func (l *scLoader) stepKind(sp string, st *Step) StepKind {
	if l.pos.Has(sp+".ehr_launch") && st.EHRLaunch == nil {
		st.EHRLaunch = &EHRLaunch{}
	}
	if l.pos.Has(sp+".standalone_launch") && st.StandaloneLaunch == nil {
		st.StandaloneLaunch = &StandaloneLaunch{}
	}
	if l.pos.Has(sp+".other_launch") && st.OtherLaunch == nil {
		st.OtherLaunch = &OtherLaunch{}
	}
	if l.pos.Has(sp+".refresh") && st.Refresh == nil {
		st.Refresh = &Refresh{}
	}
	if l.pos.Has(sp+".read") && st.Read == nil {
		st.Read = &Read{}
	}
	if l.pos.Has(sp+".backend") && st.Backend == nil {
		st.Backend = &Backend{}
	}
	if l.pos.Has(sp+".token_exchange") && st.TokenExchange == nil {
		st.TokenExchange = &TokenExchange{}
	}
	if l.pos.Has(sp+".broker_launch") && st.BrokerLaunch == nil {
		st.BrokerLaunch = &BrokerLaunch{}
	}
	var given []string
	for _, k := range StepKinds {
		if l.pos.Has(sp + "." + string(k)) {
			given = append(given, string(k))
		}
	}
	kinds := make([]string, len(StepKinds))
	for i, k := range StepKinds {
		kinds[i] = string(k)
	}
	switch {
	case len(given) == 0:
		// An unknown key (a misspelt kind) is reported by the decoder already.
		if !l.hasProblemIn(sp) {
			l.add(sp, "%s: no step kind, expected one of: %s", sp, strings.Join(kinds, ", "))
		}
		return ""
	case len(given) > 1:
		l.add(sp+"."+given[1], "%s: gives both %s and %s; a step does one thing (split it into two steps)", sp, given[0], given[1])
		return ""
	}
	return st.Kind()
}

// hasProblemIn reports whether the decoder already complained about a key
// of the mapping at path.
func (l *scLoader) hasProblemIn(path string) bool {
	needle := " in " + path + " ("
	for _, p := range l.problems {
		if strings.Contains(p.Msg, needle) {
			return true
		}
	}
	return false
}

// scopeList splits a scope string, reporting tokens that are not RFC 6749
// scope tokens.
func (l *scLoader) scopeList(path, label, s string) []string {
	f := strings.Fields(s)
	for _, tok := range f {
		if !scopeTokenRE.MatchString(tok) {
			l.add(path, "%s: %q is not a valid scope token (RFC 6749 §3.3)", label, clipText(tok))
		}
	}
	return f
}

// checkApp checks a client_id names an app registered at server.
func (l *scLoader) checkApp(path, id, server string) (*WorldApp, bool) {
	if !l.worldOK {
		return nil, false
	}
	a, ok := l.appByID(id)
	if !ok {
		l.add(path, "%s: unknown app %q (apps: %s)", path, clipText(id), l.appIDs())
		return nil, false
	}
	if a.RegisterAt != RegisterAtBoth && a.RegisterAt != server {
		l.add(path, "%s: app %q is registered only at %s (register_at), not at %s", path, id, a.RegisterAt, server)
		return a, false
	}
	return a, true
}

func (l *scLoader) defaultApp(path string) string {
	if l.worldOK && len(l.world.Apps) > 0 {
		return l.world.Apps[0].ClientID
	}
	if l.worldOK {
		l.add(path, "%s: the world has no apps; give app", path)
	}
	return ""
}

// checkStep checks one step and fills its defaults; defined holds the
// earlier steps by name.
func (l *scLoader) checkStep(sp string, idx int, f *Flow, st *Step, kind StepKind, defined map[string]stepInfo) stepInfo {
	info := stepInfo{index: idx, kind: kind}
	kp := sp + "." + string(kind)
	var ua *UserAction
	switch kind {
	case StepEHRLaunch:
		s := st.EHRLaunch
		if s.App == "" {
			s.App = l.defaultApp(kp + ".app")
		}
		info.server, info.app = ServerEHR, s.App
		if a, ok := l.checkApp(kp+".app", s.App, ServerEHR); ok {
			if a.LaunchURL == "" {
				l.add(kp+".app", "%s.app: app %q has no launch_url, which an EHR launch opens", kp, s.App)
			}
			if s.Scope == "" {
				s.Scope = a.Scope
			}
		}
		info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
		l.checkServers(kp+".resource", s.Resource)
		ua = &s.User
	case StepStandaloneLaunch:
		s := st.StandaloneLaunch
		if s.Server == "" {
			s.Server = ServerEHR
		}
		if !l.checkServer(kp+".server", s.Server) {
			s.Server = ServerEHR
		}
		if s.App == "" {
			s.App = l.defaultApp(kp + ".app")
		}
		info.server, info.app = s.Server, s.App
		if a, ok := l.checkApp(kp+".app", s.App, s.Server); ok && s.Scope == "" {
			s.Scope = standaloneScope(a.Scope, s.Server)
		}
		info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
		l.checkServers(kp+".resource", s.Resource)
		ua = &s.User
	case StepOtherLaunch:
		s := st.OtherLaunch
		info.server = ServerOther
		l.needOtherAS(kp, "OtherAS")
		src := ""
		if s.LaunchToken == "" {
			// The latest earlier step that can carry a launch-token.
			best := -1
			for name, d := range defined {
				if (d.kind == StepEHRLaunch || d.kind == StepStandaloneLaunch && d.server == ServerEHR) && d.index > best {
					best, src = d.index, name
				}
			}
			if src == "" {
				l.add(kp, "%s: no earlier ehr_launch gives a launch-token to present; add one, or give launch_token", kp)
			} else {
				s.LaunchToken = "{{" + src + ".launch_token}}"
			}
		} else if refs := l.checkTemplate(kp+".launch_token", s.LaunchToken, defined); len(refs) == 1 && refs[0].Value == "launch_token" {
			src = refs[0].Step
		}
		if d, ok := defined[src]; ok {
			if !slices.Contains(d.scope, "launch-token") {
				l.add(kp, "%s: step %q does not request the launch-token scope, so it gets no launch_token to present", kp, src)
			}
			if s.App == "" {
				s.App = d.app
			}
		}
		if s.App == "" {
			s.App = l.defaultApp(kp + ".app")
		}
		info.app = s.App
		if a, ok := l.checkApp(kp+".app", s.App, ServerOther); ok && s.Scope == "" {
			// launch-token is the EHR's to issue, and a launch with
			// launch=<launch-token> has its patient from context, so
			// neither it nor launch/patient is asked for at Other.
			s.Scope = strings.Join(slices.DeleteFunc(strings.Fields(a.Scope), func(t string) bool {
				return t == "launch-token" || t == "launch/patient" || t == "launch/encounter"
			}), " ")
		}
		info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
		ua = &s.User
	case StepRefresh:
		s := st.Refresh
		if s.From == "" {
			best := -1
			for name, d := range defined {
				if isLaunch(d.kind) && d.index > best {
					best, s.From = d.index, name
				}
			}
			if s.From == "" {
				l.add(kp, "%s: no earlier launch gives a refresh token; add one, or give from", kp)
			}
		} else if _, ok := defined[s.From]; !ok {
			l.add(kp+".from", "%s.from: no earlier step is named %q (earlier steps: %s)", kp, clipText(s.From), names(defined))
		}
		if d, ok := defined[s.From]; ok {
			info.server, info.app = d.server, d.app
			s.server = d.server
			switch {
			case !isLaunch(d.kind) && d.kind != StepRefresh:
				l.add(kp+".from", "%s.from: step %q is %s, which gives no refresh token", kp, s.From, article(d.kind))
			case d.kind != StepRefresh && !slices.Contains(d.scope, "offline_access") && !slices.Contains(d.scope, "online_access"):
				l.add(kp+".from", "%s.from: step %q requests neither offline_access nor online_access, so it gets no refresh token", kp, s.From)
			}
			if s.Scope == "" {
				s.Scope = strings.Join(d.scope, " ")
			} else {
				for _, t := range strings.Fields(s.Scope) {
					if !slices.Contains(d.scope, t) {
						l.add(kp+".scope", "%s.scope: %q was not granted to step %q, so a refresh cannot request it", kp, t, s.From)
					}
				}
			}
		}
		info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
	case StepRead:
		s := st.Read
		serverOK := false
		if s.Server == "" {
			l.add(kp, "%s: expected server (ehr or other)", kp)
		} else {
			serverOK = l.checkServer(kp+".server", s.Server)
		}
		info.server = s.Server
		if strings.TrimSpace(s.Path) == "" {
			l.add(kp, "%s: expected path, e.g. Patient/{{ehr.patient}}", kp)
		} else {
			if strings.HasPrefix(s.Path, "/") || strings.Contains(s.Path, "://") {
				l.add(kp+".path", "%s.path: found %q, expected a path relative to the FHIR base (Patient/123, Observation?patient=123)", kp, clipText(s.Path))
			}
			l.checkTemplate(kp+".path", s.Path, defined)
		}
		switch {
		case s.Token == TokenNone:
		case strings.Contains(s.Token, "{{"):
			l.checkTemplate(kp+".token", s.Token, defined)
		case s.Token != "":
			d, ok := defined[s.Token]
			switch {
			case !ok:
				l.add(kp+".token", "%s.token: no earlier step is named %q (earlier steps: %s; or a template such as {{ehr.launch_token}}, or none)", kp, clipText(s.Token), names(defined))
			case !slices.Contains(StepValues[d.kind], "access_token"):
				l.add(kp+".token", "%s.token: step %q is %s, which gives no access token", kp, s.Token, article(d.kind))
			}
		default:
			best := -1
			for name, d := range defined {
				// A broker launch gives a token for each server.
				if (d.server == s.Server || d.kind == StepBrokerLaunch) && slices.Contains(StepValues[d.kind], "access_token") && d.index > best {
					best, s.Token = d.index, name
				}
			}
			if s.Token == "" && serverOK {
				l.add(kp, "%s: no earlier step got a token for %s; add a launch, or give token (none for no token)", kp, s.Server)
			}
		}
	case StepBackend:
		s := st.Backend
		if s.Server == "" {
			s.Server = ServerEHR
		}
		l.checkServer(kp+".server", s.Server)
		info.server, info.app = s.Server, s.App
		if s.App == "" {
			l.add(kp, "%s: expected app (a confidential-asymmetric client)", kp)
		} else if a, ok := l.checkApp(kp+".app", s.App, s.Server); ok && a.Type != AppConfidentialAsymmetric {
			l.add(kp+".app", "%s.app: app %q is %s; Backend Services needs a confidential-asymmetric app (private_key_jwt)", kp, s.App, a.Type)
		}
		if strings.TrimSpace(s.Scope) == "" {
			l.add(kp, "%s: expected scope, e.g. system/Patient.rs", kp)
		}
		info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
	case StepTokenExchange:
		l.checkTokenExchange(kp, st, &info, defined)
	case StepBrokerLaunch:
		s := st.BrokerLaunch
		info.server = ServerEHR
		l.needOtherAS(kp, "the broker")
		switch s.Launch {
		case "":
			s.Launch = BrokerLaunchEHR
		case BrokerLaunchEHR, BrokerLaunchStandalone:
		default:
			l.add(kp+".launch", "%s.launch: found %q, expected ehr or standalone", kp, clipText(s.Launch))
		}
		if s.App == "" {
			s.App = l.defaultApp(kp + ".app")
		}
		info.app = s.App
		if a, ok := l.checkApp(kp+".app", s.App, ServerEHR); ok {
			if a.Type == AppConfidentialAsymmetric {
				l.add(kp+".app", "%s.app: app %q is confidential-asymmetric; the broker knows only public and confidential-symmetric apps", kp, s.App)
			}
			if s.Launch == BrokerLaunchEHR && a.LaunchURL == "" {
				l.add(kp+".app", "%s.app: app %q has no launch_url, which an EHR launch opens", kp, s.App)
			}
			if s.Scope == "" {
				s.Scope = brokerScope(a.Scope, s.Launch)
			}
		}
		info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
		ua = &s.User
	}
	if ua != nil {
		l.checkUserAction(kp+".user", f, ua, info.scope, &st.Expect)
	}
	l.checkExpect(sp+".expect", st, kind, info, defined)
	return info
}

// needOtherAS reports a step that needs OtherAS (and the broker) in a
// world whose Other server is governed by the EHR AS, where neither runs.
func (l *scLoader) needOtherAS(kp, what string) {
	if l.worldOK && l.world.OtherGovernedByEHR() {
		l.add(kp, "%s: the world's other.governed_by is ehr, so %s does not run (only the EHR AS does: direction C)", kp, what)
	}
}

// brokerScope derives a broker launch's scope from an app's registered
// scope: the broker asks for launch-token itself and keeps no refresh
// token; an EHR launch has its patient from the launch.
func brokerScope(appScope, launch string) string {
	var out []string
	for _, t := range strings.Fields(appScope) {
		switch {
		case t == "launch-token", t == "offline_access":
			continue
		case t == "launch/patient" && launch == BrokerLaunchEHR:
			continue
		case t == "launch" && launch == BrokerLaunchStandalone:
			t = "launch/patient"
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return strings.Join(out, " ")
}

// checkTokenExchange checks a token_exchange step and fills its defaults.
func (l *scLoader) checkTokenExchange(kp string, st *Step, info *stepInfo, defined map[string]stepInfo) {
	s := st.TokenExchange
	info.server = ServerOther
	l.needOtherAS(kp, "OtherAS")
	src, srcValue := "", ""
	if s.SubjectToken == "" {
		best := -1
		for name, d := range defined {
			if (d.kind == StepEHRLaunch || d.kind == StepStandaloneLaunch && d.server == ServerEHR) && d.index > best {
				best, src = d.index, name
			}
		}
		if src == "" {
			l.add(kp, "%s: no earlier ehr_launch gives a token to exchange; add one, or give subject_token", kp)
		} else {
			s.SubjectToken = "{{" + src + ".launch_token}}"
			srcValue = "launch_token"
		}
	} else if strings.TrimSpace(s.SubjectToken) != "" {
		if refs := l.checkTemplate(kp+".subject_token", s.SubjectToken, defined); len(refs) == 1 {
			src, srcValue = refs[0].Step, refs[0].Value
		}
	} else {
		l.add(kp+".subject_token", "%s.subject_token: empty, expected a template such as {{ehr.launch_token}}", kp)
	}
	if d, ok := defined[src]; ok {
		if d.server != ServerEHR {
			l.add(kp+".subject_token", "%s.subject_token: step %q is %s at %s; OtherAS exchanges tokens the EHR AS issued", kp, src, article(d.kind), d.server)
		}
		if srcValue == "launch_token" && !slices.Contains(d.scope, "launch-token") {
			l.add(kp+".subject_token", "%s.subject_token: step %q does not request the launch-token scope, so it gets no launch_token to exchange", kp, src)
		}
		if srcValue == "id_token" && !slices.Contains(d.scope, "openid") {
			l.add(kp+".subject_token", "%s.subject_token: step %q does not request openid, so it gets no id_token to exchange", kp, src)
		}
		if s.App == "" {
			s.App = d.app
		}
	}
	// subject_token_type: short names or URNs; default from the subject.
	typePath := kp + ".subject_token_type"
	switch s.SubjectTokenType {
	case "":
		s.SubjectTokenType = TokenTypeIDToken
		if srcValue == "access_token" {
			s.SubjectTokenType = TokenTypeAccessToken
		}
	default:
		urn, ok := subjectTokenTypeURN(s.SubjectTokenType)
		if !ok {
			hint := ""
			if strings.Contains(s.SubjectTokenType, "launch") {
				hint = " (a launch-token is sent as id_token; OtherAS tells it by its JWT typ)"
			}
			l.add(typePath, "%s: found %q, expected id_token, access_token, %s or %s%s", typePath, clipText(s.SubjectTokenType), TokenTypeIDToken, TokenTypeAccessToken, hint)
		} else {
			s.SubjectTokenType = urn
			mismatch := (srcValue == "access_token" && urn != TokenTypeAccessToken) ||
				((srcValue == "launch_token" || srcValue == "id_token") && urn != TokenTypeIDToken)
			if mismatch && st.Expect.Error != "invalid_request" {
				what := map[string]string{"access_token": "an access token", "id_token": "an id_token", "launch_token": "a launch-token"}[srcValue]
				l.add(typePath, "%s: %s does not match the subject, %s, so OtherAS answers invalid_request; fix the type, or expect error: invalid_request", typePath, s.SubjectTokenType, what)
			}
		}
	}
	if s.App == "" {
		s.App = l.defaultApp(kp + ".app")
	}
	info.app = s.App
	if a, ok := l.checkApp(kp+".app", s.App, ServerOther); ok {
		if a.Type == AppPublic && st.Expect.Error != "unauthorized_client" {
			l.add(kp+".app", "%s.app: app %q is public; token exchange is for confidential clients (expect error: unauthorized_client to show the refusal)", kp, s.App)
		}
		if s.Scope == "" {
			s.Scope = strings.Join(slices.DeleteFunc(strings.Fields(a.Scope), func(t string) bool {
				return !strings.HasPrefix(t, "patient/") && !strings.HasPrefix(t, "user/")
			}), " ")
		}
	}
	if l.pos.Has(kp+".scope") && strings.TrimSpace(s.Scope) == "" && st.Expect.Error != "invalid_scope" {
		l.add(kp+".scope", "%s.scope: empty; OtherAS answers invalid_scope without a scope (or expect error: invalid_scope)", kp)
	}
	info.scope = l.scopeList(kp+".scope", kp+".scope", s.Scope)
	l.checkServers(kp+".resource", s.Resource)
}

func isLaunch(k StepKind) bool {
	return k == StepEHRLaunch || k == StepStandaloneLaunch || k == StepOtherLaunch
}

func names(defined map[string]stepInfo) string {
	if len(defined) == 0 {
		return "none"
	}
	ns := make([]string, 0, len(defined))
	for n := range defined {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return strings.Join(ns, ", ")
}

// standaloneScope derives a standalone launch's scope from an app's
// registered scope.
func standaloneScope(appScope, server string) string {
	var out []string
	for _, t := range strings.Fields(appScope) {
		switch {
		case t == "launch":
			t = "launch/patient"
		case t == "launch-token" && server == ServerOther:
			continue
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return strings.Join(out, " ")
}

func (l *scLoader) checkServer(path, s string) bool {
	if s != ServerEHR && s != ServerOther {
		l.add(path, "%s: found %q, expected ehr or other", path, clipText(s))
		return false
	}
	return true
}

func (l *scLoader) checkServers(path string, list []string) {
	for i, s := range list {
		l.checkServer(yamlfile.IndexPath(path, i), s)
	}
}

// checkTemplate checks every {{step.value}} in s refers to an earlier step
// (or a built-in) that provides the value.
func (l *scLoader) checkTemplate(path, s string, defined map[string]stepInfo) []Ref {
	refs, err := References(s)
	if err != nil {
		l.add(path, "%s: %v", path, err)
		return nil
	}
	for _, r := range refs {
		if vals, ok := builtinValues[r.Step]; ok {
			if !slices.Contains(vals, r.Value) {
				l.add(path, "%s: {{%s.%s}}: %s has no value %q (expected one of: %s)", path, r.Step, r.Value, r.Step, r.Value, strings.Join(vals, ", "))
			}
			continue
		}
		d, ok := defined[r.Step]
		if !ok {
			l.add(path, "%s: {{%s.%s}} refers to no earlier step (earlier steps: %s; built-ins: patient, user, servers)", path, r.Step, r.Value, names(defined))
			continue
		}
		if vals := StepValues[d.kind]; !slices.Contains(vals, r.Value) {
			l.add(path, "%s: {{%s.%s}}: %s step gives no %q (it gives: %s)", path, r.Step, r.Value, article(d.kind), r.Value, strings.Join(vals, ", "))
		}
	}
	return refs
}

func (l *scLoader) checkUserAction(path string, f *Flow, ua *UserAction, requested []string, e *Expect) {
	if ua.Login == "" {
		ua.Login = f.User
	} else if l.worldOK {
		if _, ok := l.worldUser(ua.Login); !ok {
			l.add(path+".login", "%s.login: unknown user %q (the world's users: %s)", path, clipText(ua.Login), l.usernames())
		}
	}
	wrongPassword := false
	if pw, ok := l.worldUser(ua.Login); ok && l.worldOK {
		if ua.Password == "" {
			ua.Password = pw
		} else {
			wrongPassword = ua.Password != pw
		}
	}
	switch ua.Decision {
	case "":
		ua.Decision = DecisionApprove
	case DecisionApprove, DecisionDeny:
	default:
		l.add(path+".decision", "%s.decision: found %q, expected approve or deny", path, clipText(ua.Decision))
	}
	for i, s := range ua.Untick {
		if !slices.Contains(requested, s) {
			l.add(yamlfile.IndexPath(path+".untick", i), "%s.untick[%d]: %q is not requested, so there is no box to untick", path, i, s)
		}
	}
	switch {
	case wrongPassword && e.Error != "login_failed":
		l.add(path+".password", "%s.password: not the user's password, so the login fails; expect error: login_failed", path)
	case ua.Decision == DecisionDeny && !wrongPassword && e.Error != "access_denied":
		l.add(path+".decision", "%s.decision: deny ends the step with access_denied; expect error: access_denied", path)
	}
}

func (l *scLoader) checkExpect(ep string, st *Step, kind StepKind, info stepInfo, defined map[string]stepInfo) {
	e := &st.Expect
	grants := kind != StepRead
	requested := info.scope
	listCheck := func(key string, list []string, check func(i int, s string)) {
		seen := map[string]bool{}
		for i, s := range list {
			p := yamlfile.IndexPath(ep+"."+key, i)
			if seen[s] {
				l.add(p, "%s: %q is listed twice", p, s)
				continue
			}
			seen[s] = true
			check(i, s)
		}
	}
	if !grants {
		for _, k := range []struct {
			key   string
			given bool
		}{{"granted", len(e.Granted) > 0}, {"refused", len(e.Refused) > 0}, {"present", len(e.Present) > 0}, {"absent", len(e.Absent) > 0}, {"fields", len(e.Fields) > 0}, {"fhir_context", len(e.FHIRContext) > 0}} {
			if k.given {
				l.add(ep+"."+k.key, "%s.%s: a read gets no token response; use status, count or trace_has", ep, k.key)
			}
		}
	}
	if e.Count != nil && kind != StepRead {
		l.add(ep+".count", "%s.count: only a read returns resources to count", ep)
	}
	if e.Count != nil && *e.Count < 0 {
		l.add(ep+".count", "%s.count: found %d, expected a count of at least 0", ep, *e.Count)
	}
	if e.SamePerson != nil && kind != StepOtherLaunch && kind != StepStandaloneLaunch && kind != StepTokenExchange && kind != StepRefresh {
		l.add(ep+".same_person", "%s.same_person: %s step has no patient of Other to compare", ep, article(kind))
	}
	if l.pos.Has(ep+".status") && (e.Status < 100 || e.Status > 599) {
		l.add(ep+".status", "%s.status: found %d, expected an HTTP status from 100 to 599", ep, e.Status)
	}
	if e.Error != "" {
		if !slices.Contains(expectErrors, e.Error) {
			l.add(ep+".error", "%s.error: found %q, expected one of: %s", ep, clipText(e.Error), strings.Join(expectErrors, ", "))
		}
		if e.hasSuccessChecks() {
			l.add(ep+".error", "%s.error: a step that ends with an error has no granted scopes, token fields, count or patient; expect one or the other", ep)
		}
		if e.Status >= 200 && e.Status < 400 && kind != StepRead {
			l.add(ep+".status", "%s.status: %d is a success, but the step must end with error %s", ep, e.Status, e.Error)
		}
	}
	listCheck("granted", e.Granted, func(i int, s string) {
		if grants && !slices.Contains(requested, s) {
			l.add(yamlfile.IndexPath(ep+".granted", i), "%s.granted[%d]: %q is not requested (scope: %s), so it cannot be granted", ep, i, s, strings.Join(requested, " "))
		}
		if slices.Contains(e.Refused, s) {
			l.add(yamlfile.IndexPath(ep+".granted", i), "%s.granted[%d]: %q is also listed as refused", ep, i, s)
		}
		if ua := userAction(st); ua != nil && slices.Contains(ua.Untick, s) {
			l.add(yamlfile.IndexPath(ep+".granted", i), "%s.granted[%d]: the user unticks %q, so it cannot be granted", ep, i, s)
		}
	})
	listCheck("refused", e.Refused, func(i int, s string) {
		if grants && !slices.Contains(requested, s) {
			l.add(yamlfile.IndexPath(ep+".refused", i), "%s.refused[%d]: %q is not requested (scope: %s), so it cannot be refused", ep, i, s, strings.Join(requested, " "))
		}
	})
	listCheck("present", e.Present, func(i int, s string) {
		if slices.Contains(e.Absent, s) {
			l.add(yamlfile.IndexPath(ep+".present", i), "%s.present[%d]: %q is also listed as absent", ep, i, s)
		}
		if s == "launch_token" && kind != StepEHRLaunch && kind != StepStandaloneLaunch {
			l.add(yamlfile.IndexPath(ep+".present", i), "%s.present[%d]: only the EHR AS issues launch_token; %s step never gets one", ep, i, article(kind))
		} else if s == "launch_token" && !slices.Contains(requested, "launch-token") {
			l.add(yamlfile.IndexPath(ep+".present", i), "%s.present[%d]: launch_token comes only with the launch-token scope, which this step does not request", ep, i)
		}
	})
	listCheck("absent", e.Absent, func(int, string) {})
	l.checkFields(ep, e.Fields, e.Absent, defined)
	l.checkFHIRContext(ep+".fhir_context", e.FHIRContext, defined)
	if len(e.AdditionalTokens) > 0 && kind != StepBrokerLaunch {
		l.add(ep+".additional_tokens", "%s.additional_tokens: only a broker_launch gets additional_tokens", ep)
	} else {
		for _, srv := range slices.Sorted(maps.Keys(e.AdditionalTokens)) {
			tp := ep + ".additional_tokens." + srv
			if srv != ServerOther {
				l.add(tp, "%s: found server %q, expected other (the EHR token is the broker's token response itself)", tp, clipText(srv))
				continue
			}
			if te := e.AdditionalTokens[srv]; te != nil {
				if e.Error != "" {
					l.add(tp, "%s: the step must end with error %s, so there are no additional tokens to check", tp, e.Error)
				}
				l.checkTokenExpect(tp, te, brokerOtherScope(requested), defined)
			}
		}
	}
	for _, tm := range []struct {
		key  string
		list []TraceMatch
	}{{"trace_has", e.TraceHas}, {"trace_lacks", e.TraceLacks}} {
		for i, m := range tm.list {
			mp := yamlfile.IndexPath(ep+"."+tm.key, i)
			if m == (TraceMatch{}) {
				l.add(mp, "%s: matches every event; give from, to, method, path, label, decision, status or error", mp)
			}
			for _, party := range []struct{ key, v string }{{"from", m.From}, {"to", m.To}} {
				if _, ok := traceParties[party.v]; party.v != "" && !ok {
					l.add(mp+"."+party.key, "%s.%s: found %q, expected one of: app, user, brands, ehr_fhir, ehr_as, other_fhir, other_as, broker", mp, party.key, clipText(party.v))
				}
			}
			if m.Status != 0 && (m.Status < 100 || m.Status > 599) {
				l.add(mp+".status", "%s.status: found %d, expected an HTTP status from 100 to 599", mp, m.Status)
			}
		}
	}
}

// checkFields checks a fields expectation (scalars; strings are
// templates).
func (l *scLoader) checkFields(ep string, fields map[string]any, absent []string, defined map[string]stepInfo) {
	for _, k := range sortedKeys(fields) {
		fp := ep + ".fields." + k
		switch v := fields[k].(type) {
		case string:
			l.checkTemplate(fp, v, defined)
		case bool, int64, float64:
		case nil:
			l.add(fp, "%s: null; use absent: [%s] to expect no such field", fp, k)
		default:
			l.add(fp, "%s: found a %s, expected a string, number or boolean", fp, describeAny(v))
		}
		if slices.Contains(absent, k) {
			l.add(fp, "%s: %q is also listed as absent", fp, k)
		}
	}
}

// checkFHIRContext checks fhir_context entries: each gives a key, and
// strings are templates.
func (l *scLoader) checkFHIRContext(path string, list []FHIRContextMatch, defined map[string]stepInfo) {
	for i, m := range list {
		mp := yamlfile.IndexPath(path, i)
		if m.IsZero() {
			l.add(mp, "%s: matches every entry; give type, reference, role or identifier", mp)
			continue
		}
		for _, f := range []struct{ key, v string }{{"type", m.Type}, {"reference", m.Reference}, {"role", m.Role}, {"identifier", m.Identifier}} {
			if f.v != "" {
				l.checkTemplate(mp+"."+f.key, f.v, defined)
			}
		}
	}
}

// checkTokenExpect checks the expectations on one additional token of a
// broker launch; asked is the scope the broker asks that server for.
func (l *scLoader) checkTokenExpect(tp string, te *TokenExpect, asked []string, defined map[string]stepInfo) {
	if te.Error != "" {
		if !slices.Contains(expectErrors, te.Error) {
			l.add(tp+".error", "%s.error: found %q, expected one of: %s", tp, clipText(te.Error), strings.Join(expectErrors, ", "))
		}
		if te.hasSuccessChecks() {
			l.add(tp+".error", "%s.error: a server that refused issued no token, so there are no granted scopes, fields or patient to check; expect one or the other", tp)
		}
	}
	seen := map[string]bool{}
	for _, lst := range []struct {
		key  string
		list []string
	}{{"granted", te.Granted}, {"refused", te.Refused}} {
		for i, s := range lst.list {
			p := yamlfile.IndexPath(tp+"."+lst.key, i)
			if seen[s] {
				l.add(p, "%s: %q is listed twice (in granted or refused)", p, s)
				continue
			}
			seen[s] = true
			if !slices.Contains(asked, s) {
				l.add(p, "%s: %q is not asked of this server (the broker asks: %s)", p, s, strings.Join(asked, " "))
			}
		}
	}
	for i, s := range te.Present {
		if slices.Contains(te.Absent, s) {
			p := yamlfile.IndexPath(tp+".present", i)
			l.add(p, "%s: %q is also listed as absent", p, s)
		}
	}
	l.checkFields(tp, te.Fields, te.Absent, defined)
	l.checkFHIRContext(tp+".fhir_context", te.FHIRContext, defined)
}

func userAction(st *Step) *UserAction {
	switch {
	case st.EHRLaunch != nil:
		return &st.EHRLaunch.User
	case st.StandaloneLaunch != nil:
		return &st.StandaloneLaunch.User
	case st.OtherLaunch != nil:
		return &st.OtherLaunch.User
	case st.BrokerLaunch != nil:
		return &st.BrokerLaunch.User
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func describeAny(v any) string {
	switch v.(type) {
	case map[string]any:
		return "mapping"
	case []any:
		return "list"
	}
	return fmt.Sprintf("%T", v)
}

func (l *scLoader) checkPatient(pp string, ps *PatientSel, needed bool) {
	given := 0
	for _, g := range []bool{ps.ID != "", ps.Class != "", ps.Each != "", len(ps.Classes) > 0} {
		if g {
			given++
		}
	}
	if given > 1 {
		l.add(pp, "%s: give one of id, class, each and classes", pp)
		return
	}
	if given == 0 && needed {
		ps.Class = synth.ClassShared
	}
	counts := l.classCounts()
	checkClass := func(path, c string) {
		if !slices.Contains(synth.Classes, c) {
			l.add(path, "%s: found %q, expected one of: %s", path, clipText(c), strings.Join(synth.Classes, ", "))
		} else if l.worldOK && counts[c] == 0 && l.pos.Has(path) {
			l.add(path, "%s: the world has no %s patients (see the world's overlap)", path, c)
		}
	}
	if ps.ID != "" && !fhirIDRE.MatchString(ps.ID) {
		l.add(pp+".id", "%s.id: found %q, expected an EHR Patient id", pp, clipText(ps.ID))
	}
	if ps.Class != "" {
		checkClass(pp+".class", ps.Class)
	}
	if ps.Each != "" {
		checkClass(pp+".each", ps.Each)
	}
	seen := map[string]bool{}
	for i, c := range ps.Classes {
		p := yamlfile.IndexPath(pp+".classes", i)
		if seen[c] {
			l.add(p, "%s: %q is listed twice", p, c)
		}
		seen[c] = true
		checkClass(p, c)
	}
	if l.pos.Has(pp + ".limit") {
		if ps.Each == "" {
			l.add(pp+".limit", "%s.limit: only applies with each", pp)
		} else if ps.Limit < 1 || ps.Limit > MaxMatrixCells {
			l.add(pp+".limit", "%s.limit: found %d, expected 1 to %d", pp, ps.Limit, MaxMatrixCells)
		}
	}
	if ps.Each != "" && ps.Limit <= 0 {
		ps.Limit = DefaultEachLimit
	}
}

func (l *scLoader) checkFault(fp string, f *Flow, ft *Fault) {
	var kinds []string
	for _, k := range []struct {
		key string
		v   string
	}{{"down", ft.Down}, {"slow", ft.Slow}, {"fail", ft.Fail}, {"clock_skew", ft.ClockSkew}, {"launch_token", ft.LaunchToken}, {"code", ft.Code}} {
		if k.v != "" {
			kinds = append(kinds, k.key)
		}
	}
	switch len(kinds) {
	case 0:
		l.add(fp, "%s: no fault, expected one of: down, slow, fail, clock_skew, launch_token, code", fp)
		return
	case 1:
	default:
		l.add(fp+"."+kinds[1], "%s: gives both %s and %s; write one fault per list item", fp, kinds[0], kinds[1])
		return
	}
	kind := kinds[0]
	oneOf := func(key, v string, allowed []string) {
		if !slices.Contains(allowed, v) {
			l.add(fp+"."+key, "%s.%s: found %q, expected one of: %s", fp, key, clipText(v), strings.Join(allowed, ", "))
		}
	}
	only := func(key string, given bool, with string) {
		if given {
			l.add(fp+"."+key, "%s.%s: only applies with %s", fp, key, with)
		}
	}
	only("delay", l.pos.Has(fp+".delay") && kind != "slow", "slow")
	only("status", l.pos.Has(fp+".status") && kind != "fail", "fail")
	only("by", l.pos.Has(fp+".by") && kind != "clock_skew", "clock_skew")
	only("app", ft.App != "" && ft.LaunchToken != "other_app", "launch_token: other_app")
	var during *Step
	if ft.During != "" {
		for i := range f.Steps {
			if f.Steps[i].Name == ft.During {
				during = &f.Steps[i]
			}
		}
		if during == nil {
			l.add(fp+".during", "%s.during: no step is named %q", fp, clipText(ft.During))
		}
	}
	switch kind {
	case "down":
		oneOf("down", ft.Down, faultComponents)
	case "slow":
		oneOf("slow", ft.Slow, faultComponents)
		if ft.Delay == 0 {
			ft.Delay = 3 * time.Second
		} else if ft.Delay < time.Millisecond || ft.Delay > time.Minute {
			l.add(fp+".delay", "%s.delay: found %s, expected 1ms to 60s", fp, ft.Delay)
		}
	case "fail":
		oneOf("fail", ft.Fail, faultComponents)
		if ft.Status == 0 {
			ft.Status = 500
		} else if ft.Status < 500 || ft.Status > 599 {
			l.add(fp+".status", "%s.status: found %d, expected a server error status from 500 to 599", fp, ft.Status)
		}
	case "clock_skew":
		oneOf("clock_skew", ft.ClockSkew, skewServers)
		if ft.By == 0 || ft.By > 24*time.Hour || ft.By < -24*time.Hour {
			l.add(fp+".by", "%s.by: found %s, expected a non-zero skew of at most 24h either way (e.g. 10m or -2h)", fp, ft.By)
		}
	case "launch_token":
		oneOf("launch_token", ft.LaunchToken, launchTokenMis)
		if ft.During == "" {
			l.add(fp, "%s: launch_token needs during: the other_launch or token_exchange that presents the launch-token", fp)
		} else if during != nil && during.OtherLaunch == nil && during.TokenExchange == nil {
			l.add(fp+".during", "%s.during: step %q is %s; launch_token faults apply to an other_launch or a token_exchange", fp, ft.During, article(during.Kind()))
		}
		if ft.LaunchToken == "other_app" {
			own := ""
			if during != nil && during.OtherLaunch != nil {
				own = during.OtherLaunch.App
			} else if during != nil && during.TokenExchange != nil {
				own = during.TokenExchange.App
			}
			if ft.App == "" {
				l.add(fp, "%s: launch_token: other_app needs app: the client_id that presents it", fp)
			} else if _, ok := l.checkApp(fp+".app", ft.App, ServerOther); ok && own == ft.App {
				l.add(fp+".app", "%s.app: %q is the step's own app; name another app", fp, ft.App)
			}
		}
	case "code":
		oneOf("code", ft.Code, []string{"replayed"})
		if ft.During == "" {
			l.add(fp, "%s: code needs during: the launch whose code is redeemed twice", fp)
		} else if during != nil && !isLaunch(during.Kind()) {
			l.add(fp+".during", "%s.during: step %q is %s; code faults apply to a launch", fp, ft.During, article(during.Kind()))
		}
	}
	if during != nil && (kind == "launch_token" && (during.OtherLaunch != nil || during.TokenExchange != nil) || kind == "code" && isLaunch(during.Kind())) {
		if during.Expect.Error == "" {
			l.add(fp+".during", "%s.during: the misused %s must be refused; give step %q an expect.error", fp, strings.ReplaceAll(kind, "_", "-"), ft.During)
		}
	}
}
