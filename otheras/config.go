package otheras

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smart-sim/sim/internal/authkit"
	"github.com/smart-sim/sim/internal/trace"
)

// ErrNotFound is what directories return for an unknown user or patient.
var ErrNotFound = errors.New("not found")

// Identifier is a FHIR identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// PatientRecord is a patient in the Other directory.
type PatientRecord struct {
	ID          string
	Name        string // display name
	Family      string
	Given       []string
	BirthDate   string // YYYY-MM-DD
	Gender      string
	Identifiers []Identifier
}

// Directory is the Other patient directory OtherAS matches against and
// picks from.
type Directory interface {
	FindByIdentifier(ctx context.Context, system, value string) ([]PatientRecord, error)
	Patient(ctx context.Context, id string) (PatientRecord, error)
	SearchPatients(ctx context.Context, text string, limit int) ([]PatientRecord, error)
}

// User is a person who can sign in at OtherAS.
type User struct {
	Username    string
	DisplayName string
	FHIRUser    string // relative reference at the Other FHIR server, "" when none
	// Patient marks a patient (portal) user: OtherAS gives them access to
	// their own matched record only, never user/ or system/ scopes.
	Patient bool
}

// UserDirectory authenticates and finds users.
type UserDirectory interface {
	Authenticate(ctx context.Context, username, password string) (User, error)
	Lookup(ctx context.Context, username string) (User, error)
}

// TrustedEHR is an EHR AS whose launch-tokens OtherAS accepts for context.
type TrustedEHR struct {
	Issuer   string // the EHR AS issuer (launch-token iss)
	FHIRBase string // the EHR FHIR base (discovery, Patient reads)
	ClientID string // OtherAS's client_id at that EHR AS (Backend Services)
}

// Lifetimes of what the server issues; zero values take the defaults.
type Lifetimes struct {
	Code    time.Duration // 60 s
	Access  time.Duration // 1 h
	Refresh time.Duration // 24 h
	Session time.Duration // sign-in session, 8 h
	Request time.Duration // pending authorization request, 15 min
}

// Config configures a Server.
type Config struct {
	Issuer   string // {origin}/auth
	FHIRBase string // {origin}/fhir
	Origin   string
	OrgName  string
	// TrustedIssuers are the EHR ASes whose launch-tokens are accepted.
	TrustedIssuers []TrustedEHR
	Directory      Directory
	Users          UserDirectory
	// MatchSystems are the identifier systems tried, in order, to find the
	// EHR patient in Directory.
	MatchSystems []string
	// ConfirmDemographics also requires family name and birth date to agree.
	ConfirmDemographics bool
	// RequireLogin shows the login page even when the launch-token names
	// a known user.
	RequireLogin bool
	Clients      []authkit.Client
	Lifetimes    Lifetimes
	Strict       bool   // close dynamic registration
	DataPath     string // SQLite file for keys, clients, refresh tokens; "" = memory
	CookiePrefix string // default "sim_otheras"
	ProductName  string // page header; default OrgName + " sign-in"
	LoginHint    string
	// Timeout bounds every outbound call to an EHR (default 3 s).
	Timeout time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
	// HTTPClient makes the outbound calls; with Trace set its transport is
	// wrapped by a recording one (an already recording transport is not
	// recorded twice).
	HTTPClient *http.Client
	Trace      *trace.Recorder
	// FrameAncestors are the origins that may show the sign-in and consent
	// pages in a frame (the EHR that embeds apps); empty: none.
	FrameAncestors []string
}

func (c *Config) normalize() error {
	var errs []error
	trim := func(s string) string { return strings.TrimRight(s, "/") }
	c.Issuer, c.FHIRBase, c.Origin = trim(c.Issuer), trim(c.FHIRBase), trim(c.Origin)
	abs := func(name, v string) {
		if u, err := url.Parse(v); err != nil || !u.IsAbs() || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an absolute URL", name))
		}
	}
	abs("Issuer", c.Issuer)
	abs("FHIRBase", c.FHIRBase)
	abs("Origin", c.Origin)
	if c.Directory == nil {
		errs = append(errs, errors.New("Directory is required"))
	}
	if c.Users == nil {
		errs = append(errs, errors.New("Users is required"))
	}
	for i := range c.TrustedIssuers {
		t := &c.TrustedIssuers[i]
		t.Issuer, t.FHIRBase = trim(t.Issuer), trim(t.FHIRBase)
		abs(fmt.Sprintf("TrustedIssuers[%d].Issuer", i), t.Issuer)
		abs(fmt.Sprintf("TrustedIssuers[%d].FHIRBase", i), t.FHIRBase)
		if t.ClientID == "" {
			errs = append(errs, fmt.Errorf("TrustedIssuers[%d].ClientID is required", i))
		}
		if t.Issuer == c.Issuer {
			errs = append(errs, fmt.Errorf("TrustedIssuers[%d] is this server", i))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.OrgName == "" {
		c.OrgName = "Regional Lab"
	}
	if c.CookiePrefix == "" {
		c.CookiePrefix = "sim_otheras"
	}
	if c.ProductName == "" {
		c.ProductName = c.OrgName + " sign-in"
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.Trace != nil {
		cp.Transport = c.Trace.Transport(trace.OtherAS, c.partyOf, hc.Transport)
	}
	c.HTTPClient = &cp
	l := &c.Lifetimes
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.Code, 60*time.Second)
	def(&l.Access, time.Hour)
	def(&l.Refresh, 24*time.Hour)
	def(&l.Session, 8*time.Hour)
	def(&l.Request, 15*time.Minute)
	return nil
}

// partyOf names the party an outbound URL belongs to.
func (c *Config) partyOf(u *url.URL) trace.Party {
	s := u.String()
	for _, t := range c.TrustedIssuers {
		if strings.Contains(u.Path, "/.well-known/") || strings.HasPrefix(s, t.Issuer+"/") {
			if strings.HasPrefix(s, t.Issuer+"/") || strings.HasPrefix(s, t.FHIRBase+"/") {
				return trace.EHRAS
			}
		}
		if strings.HasPrefix(s, t.FHIRBase+"/") {
			return trace.EHRFHIR
		}
	}
	return trace.Party(u.Host)
}
