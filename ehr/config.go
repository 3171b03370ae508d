package ehr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
)

// ErrNotFound is what directories return for an unknown user or patient.
var ErrNotFound = errors.New("not found")

// UserKind says whether a user is a clinician (EHR user) or a patient
// (portal user).
type UserKind string

const (
	Clinician   UserKind = "clinician"
	PatientUser UserKind = "patient"
)

// User is a person who can sign in.
type User struct {
	Username    string
	DisplayName string
	FHIRUser    string // relative reference, e.g. "Practitioner/p1"
	Kind        UserKind
	PatientID   string // the portal user's own Patient id
}

// UserDirectory authenticates and finds users.
type UserDirectory interface {
	// Authenticate returns the user when the password matches, ErrNotFound
	// (or any error) otherwise.
	Authenticate(ctx context.Context, username, password string) (User, error)
	Lookup(ctx context.Context, username string) (User, error)
}

// PatientSummary is what the picker and consent pages show.
type PatientSummary struct {
	ID        string
	Name      string
	BirthDate string
	Gender    string
	MRN       string
}

// Encounter is one encounter choice.
type Encounter struct {
	ID    string
	Label string
}

// PatientDirectory finds patients and their encounters.
type PatientDirectory interface {
	Patient(ctx context.Context, id string) (PatientSummary, error)
	SearchPatients(ctx context.Context, text string, limit int) ([]PatientSummary, error)
	Encounters(ctx context.Context, patientID string) ([]Encounter, error)
}

// Partner is an OtherAS the EHR trusts: it gets a Backend Services
// registration (system/Patient.rs system/Practitioner.rs introspect) and
// launch-tokens can be addressed to it.
type Partner struct {
	Issuer     string          // the OtherAS issuer (launch-token aud)
	FHIRBase   string          // the Other FHIR base it guards (RFC 8707 resource)
	ClientID   string          // its client_id here
	JWKS       json.RawMessage // its public keys, or
	JWKSURI    string
	SoftwareID string
}

// Governed is another organisation's FHIR server that this EHR AS governs
// (flows.md direction C, capability auth-multi-aud-token): an app names it
// with an RFC 8707 resource parameter next to the EHR's own FHIR base and
// gets one access token whose aud holds both. The EHR AS then grants
// access to data it does not hold; the consent page says so.
type Governed struct {
	Name     string // the organisation, for the consent page
	FHIRBase string // its FHIR base (resource, aud)
	// ResolvePatient finds an EHR patient's record on this server; ok is
	// false when there is none or more than one. The token's patient_at
	// claim and fhirContext carry the answer. nil: patients never resolve.
	ResolvePatient func(ctx context.Context, ehrPatientID string) (otherID string, ok bool)
}

// Org is another organisation for the brand bundle and associated_endpoints.
type Org struct {
	Name         string
	FHIRBase     string
	Identifier   Identifier // default urn:ietf:rfc:3986 + origin of FHIRBase
	Capabilities []string   // its SMART capabilities (associated_endpoints)
}

// Identifier is a FHIR identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Lifetimes of what the server issues; zero values take the defaults.
type Lifetimes struct {
	Code        time.Duration // 60 s
	LaunchToken time.Duration // 5 min
	Access      time.Duration // 1 h
	Refresh     time.Duration // 24 h
	Backend     time.Duration // 5 min
	Launch      time.Duration // EHR launch context, 5 min
	Session     time.Duration // sign-in session, 8 h
	Request     time.Duration // pending authorization request, 15 min
}

// Config configures a Server.
type Config struct {
	Issuer        string // {origin}/auth
	FHIRBase      string // {origin}/fhir
	Origin        string // {origin}
	OrgName       string
	OrgIdentifier Identifier // default urn:ietf:rfc:3986 + Origin
	Others        []Org      // other organisations (brands, associated_endpoints)
	Users         UserDirectory
	Patients      PatientDirectory
	Clients       []authkit.Client // registered at start
	Partners      []Partner
	// Governed are other FHIR servers whose access this EHR AS decides
	// (direction C). Their discovery document is GovernedDiscovery and
	// their tokens are checked with VerifyAccessAt.
	Governed  []Governed
	Lifetimes Lifetimes
	Strict    bool // close dynamic registration
	// OpenBackendRegistration lets dynamic registration create Backend
	// Services clients (client_credentials, system/ scopes). Off: those
	// clients come only from Clients and Partners.
	OpenBackendRegistration bool
	DataPath                string // SQLite file for keys, clients, refresh tokens; "" = memory
	CookiePrefix            string // default "sim_ehr"
	ProductName             string // page header; default OrgName + " EHR"
	LoginHint               string // text shown under the login form (demo accounts)
	Now                     func() time.Time
	Logger                  *slog.Logger
	HTTPClient              *http.Client
	// FrameAncestors are the origins that may show the sign-in and consent
	// pages in a frame (the EHR that embeds apps); empty: none.
	FrameAncestors []string
}

func (c *Config) normalize() error {
	var errs []error
	trim := func(s string) string { return strings.TrimRight(s, "/") }
	c.Issuer, c.FHIRBase, c.Origin = trim(c.Issuer), trim(c.FHIRBase), trim(c.Origin)
	for name, v := range map[string]string{"Issuer": c.Issuer, "FHIRBase": c.FHIRBase, "Origin": c.Origin} {
		if u, err := url.Parse(v); err != nil || !u.IsAbs() || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an absolute URL", name))
		}
	}
	if c.Users == nil {
		errs = append(errs, errors.New("Users is required"))
	}
	if c.Patients == nil {
		errs = append(errs, errors.New("Patients is required"))
	}
	for i, p := range c.Partners {
		if p.Issuer == "" || p.FHIRBase == "" || p.ClientID == "" || (len(p.JWKS) == 0 && p.JWKSURI == "") {
			errs = append(errs, fmt.Errorf("Partners[%d] needs Issuer, FHIRBase, ClientID and JWKS or JWKSURI", i))
		}
	}
	for i := range c.Governed {
		g := &c.Governed[i]
		g.FHIRBase = trim(g.FHIRBase)
		if u, err := url.Parse(g.FHIRBase); err != nil || !u.IsAbs() || u.Host == "" {
			errs = append(errs, fmt.Errorf("Governed[%d].FHIRBase must be an absolute URL", i))
		}
		if g.FHIRBase == c.FHIRBase {
			errs = append(errs, fmt.Errorf("Governed[%d] is this EHR's own FHIR server", i))
		}
		for _, p := range c.Partners {
			if trim(p.FHIRBase) == g.FHIRBase {
				errs = append(errs, fmt.Errorf("Governed[%d] is also guarded by the partner %s", i, p.Issuer))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.OrgName == "" {
		c.OrgName = "General Hospital"
	}
	if c.OrgIdentifier.Value == "" {
		c.OrgIdentifier = Identifier{System: "urn:ietf:rfc:3986", Value: c.Origin}
	}
	for i := range c.Others {
		o := &c.Others[i]
		o.FHIRBase = trim(o.FHIRBase)
		if o.Identifier.Value == "" {
			if u, err := url.Parse(o.FHIRBase); err == nil {
				o.Identifier = Identifier{System: "urn:ietf:rfc:3986", Value: u.Scheme + "://" + u.Host}
			}
		}
	}
	for i := range c.Partners {
		c.Partners[i].FHIRBase = trim(c.Partners[i].FHIRBase)
		c.Partners[i].Issuer = trim(c.Partners[i].Issuer)
	}
	if c.CookiePrefix == "" {
		c.CookiePrefix = "sim_ehr"
	}
	if c.ProductName == "" {
		c.ProductName = c.OrgName + " EHR"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	l := &c.Lifetimes
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.Code, 60*time.Second)
	def(&l.LaunchToken, 5*time.Minute)
	def(&l.Access, time.Hour)
	def(&l.Refresh, 24*time.Hour)
	def(&l.Backend, 5*time.Minute)
	def(&l.Launch, 5*time.Minute)
	def(&l.Session, 8*time.Hour)
	def(&l.Request, 15*time.Minute)
	return nil
}
