package scenarios

// The world file: one YAML document describing a whole simulated world (the
// two organisations, how their patient directories overlap, users, apps,
// token lifetimes). default_world.yaml is the embedded default and documents
// every key; a world file only needs the keys it changes.

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/smart-sim/sim/fhirstore/synth"
	"github.com/smart-sim/sim/internal/yamlfile"
)

//go:embed default_world.yaml
var defaultWorldYAML []byte

// DefaultWorldFile is the name problems in the embedded default world refer
// to (there should be none: a test parses it).
const DefaultWorldFile = "default_world.yaml"

// App registration types.
const (
	AppPublic                 = "public"
	AppConfidentialSymmetric  = "confidential-symmetric"
	AppConfidentialAsymmetric = "confidential-asymmetric"
)

// Where an app is registered.
const (
	RegisterAtEHR   = "ehr"
	RegisterAtOther = "other"
	RegisterAtBoth  = "both"
)

// World is a whole simulated world, typed and with defaults applied. Build
// it with ParseWorld, LoadWorld or DefaultWorld; those validate it.
type World struct {
	// Seed drives the generator: same seed, byte-identical world.
	Seed int64 `yaml:"seed" json:"seed"`
	// ReferenceDate is "today" in the generated data.
	ReferenceDate time.Time `yaml:"reference_date" json:"reference_date"`
	// SharedIdentifierSystem is the URI of an identifier both sides may
	// carry (e.g. a national patient id).
	SharedIdentifierSystem string `yaml:"shared_identifier_system" json:"shared_identifier_system"`

	EHR   WorldSide `yaml:"ehr" json:"ehr"`
	Other WorldSide `yaml:"other" json:"other"`

	Match     WorldMatch     `yaml:"match" json:"match"`
	Overlap   WorldOverlap   `yaml:"overlap" json:"overlap"`
	Users     WorldUsers     `yaml:"users" json:"users"`
	Apps      []WorldApp     `yaml:"apps" json:"apps"`
	Lifetimes WorldLifetimes `yaml:"lifetimes" json:"lifetimes"`
	// Strict closes dynamic client registration at both ASes.
	Strict bool `yaml:"strict" json:"strict"`
}

// WorldSide is one organisation.
type WorldSide struct {
	Name string `yaml:"name" json:"name"`
	// Kind: "hospital" for the EHR; "imaging", "lab" or "regional_record"
	// for Other.
	Kind string `yaml:"kind" json:"kind"`
	// Patients: the EHR's patient count. For Other it is derived
	// (shared + other_id_only + 2×ambiguous + other_only); a file may give
	// it instead of overlap.other_only, and then other_only is what is left.
	Patients int `yaml:"patients" json:"patients"`
	// MRNSystem is the URI of the organisation's local patient identifier.
	MRNSystem string `yaml:"mrn_system" json:"mrn_system"`
	// GovernedBy (Other only): "own" (the default: OtherAS guards the Other
	// FHIR server) or "ehr" (flows.md direction C: the EHR AS governs both
	// servers and issues one token for both; OtherAS is not started).
	// "own" is kept as "" so that worlds without the key keep their
	// fingerprint.
	GovernedBy string `yaml:"governed_by" json:"governed_by,omitempty" enum:"own,ehr" doc:"Other only: own (OtherAS guards the Other FHIR server) or ehr (the EHR AS governs both servers: direction C)."`
}

// Values of other.governed_by.
const (
	GovernedByOwn = "own"
	GovernedByEHR = "ehr"
)

// OtherGovernedByEHR reports a direction-C world: the EHR AS governs the
// Other FHIR server.
func (w *World) OtherGovernedByEHR() bool { return w.Other.GovernedBy == GovernedByEHR }

// WorldMatch is how OtherAS finds an EHR patient in its own directory.
type WorldMatch struct {
	// IdentifierSystems are tried in order; each must be one of the world's
	// systems (shared_identifier_system, ehr.mrn_system, other.mrn_system).
	IdentifierSystems []string `yaml:"identifier_systems" json:"identifier_systems"`
	// ConfirmDemographics: a match counts only if name and birth date agree.
	ConfirmDemographics bool `yaml:"confirm_demographics" json:"confirm_demographics"`
}

// WorldOverlap gives the classes as fractions of the EHR patients (see
// synth's package comment for what each class means and how counts round).
// The four fractions add up to at most 1; what they leave is absent too.
type WorldOverlap struct {
	Shared      float64 `yaml:"shared" json:"shared"`
	OtherIDOnly float64 `yaml:"other_id_only" json:"other_id_only"`
	Ambiguous   float64 `yaml:"ambiguous" json:"ambiguous"`
	Absent      float64 `yaml:"absent" json:"absent"`
	// OtherOnly: Other patients the EHR does not know. After loading it is
	// always a count.
	OtherOnly CountOrFraction `yaml:"other_only" json:"other_only"`
	// DemographicsDrift: fraction of matched (EHR, Other) pairs whose name
	// or birth date differ slightly.
	DemographicsDrift float64 `yaml:"demographics_drift" json:"demographics_drift"`
}

// CountOrFraction is an integer count (`15`) or a fraction of the EHR
// patients written with a decimal point (`0.1`, `1.0`).
type CountOrFraction struct {
	Count      int     `json:"count"`
	Fraction   float64 `json:"fraction,omitempty"`
	IsFraction bool    `json:"is_fraction,omitempty"`
}

// DecodeYAMLNode implements yamlfile.NodeDecoder.
func (c *CountOrFraction) DecodeYAMLNode(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!int":
			var i int
			if n.Decode(&i) == nil {
				*c = CountOrFraction{Count: i}
				return nil
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				*c = CountOrFraction{Fraction: f, IsFraction: true}
				return nil
			}
		}
	}
	return fmt.Errorf("found %s, expected a count (15) or a fraction of the EHR patients (0.1)", yamlfile.Describe(n))
}

// resolve turns a fraction into a count of n (rounded half up).
func (c CountOrFraction) resolve(n int) int {
	if c.IsFraction {
		return int(math.Round(c.Fraction * float64(n)))
	}
	return c.Count
}

// WorldUsers are the logins the EHR AS accepts.
type WorldUsers struct {
	Clinicians []WorldClinician  `yaml:"clinicians" json:"clinicians"`
	Patients   []WorldPortalUser `yaml:"patients" json:"patients"`
}

// WorldClinician is a clinician login backed by a Practitioner at the EHR.
type WorldClinician struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"password"`
	Given    string `yaml:"given" json:"given,omitempty"`
	Family   string `yaml:"family" json:"family,omitempty"`
}

// WorldPortalUser is a patient-portal login backed by an EHR Patient: the
// one with id Patient, or else the first not yet linked patient of Class.
type WorldPortalUser struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"password"`
	Patient  string `yaml:"patient" json:"patient,omitempty"`
	Class    string `yaml:"class" json:"class,omitempty"`
}

// WorldApp is an app registration the ASes start with.
type WorldApp struct {
	ClientID   string `yaml:"client_id" json:"client_id"`
	Name       string `yaml:"name" json:"name"`
	SoftwareID string `yaml:"software_id" json:"software_id,omitempty"`
	// Type: public, confidential-symmetric (Secret) or
	// confidential-asymmetric (JWKSURI or JWKS).
	Type         string         `yaml:"type" json:"type"`
	Secret       string         `yaml:"secret" json:"secret,omitempty"`
	JWKSURI      string         `yaml:"jwks_uri" json:"jwks_uri,omitempty"`
	JWKS         map[string]any `yaml:"jwks" json:"jwks,omitempty"`
	RedirectURIs []string       `yaml:"redirect_uris" json:"redirect_uris"`
	LaunchURL    string         `yaml:"launch_url" json:"launch_url,omitempty"`
	Scope        string         `yaml:"scope" json:"scope"`
	// RegisterAt: ehr, other or both (the default).
	RegisterAt string `yaml:"register_at" json:"register_at"`
}

// WorldLifetimes are token and code lifetimes (Go duration strings in YAML).
type WorldLifetimes struct {
	Code         time.Duration `yaml:"code" json:"code"`
	LaunchToken  time.Duration `yaml:"launch_token" json:"launch_token"`
	AccessToken  time.Duration `yaml:"access_token" json:"access_token"`
	RefreshToken time.Duration `yaml:"refresh_token" json:"refresh_token"`
	BackendToken time.Duration `yaml:"backend_token" json:"backend_token"`
}

// Origins are the running servers' origins, for ExpandURL.
type Origins struct {
	Console, EHR, Other string
}

// ExpandURL replaces a leading {console}, {ehr} or {other} in a world URL
// with the origin (scheme://host:port, no trailing slash).
func ExpandURL(u string, o Origins) string {
	for _, p := range []struct{ name, origin string }{{"{console}", o.Console}, {"{ehr}", o.EHR}, {"{other}", o.Other}} {
		if rest, ok := strings.CutPrefix(u, p.name); ok {
			return strings.TrimSuffix(p.origin, "/") + rest
		}
	}
	return u
}

// DefaultWorld is the embedded default world.
func DefaultWorld() *World {
	w, err := parseWorldOnto(&World{}, DefaultWorldFile, defaultWorldYAML)
	if err != nil {
		// The embedded file is part of the program, not input; a test
		// guarantees it is valid.
		panic("scenarios: embedded default world is invalid: " + err.Error())
	}
	return w
}

// LoadWorld reads and parses a world file. Bad content gives
// yamlfile.Problems; a file that cannot be read gives a plain error.
func LoadWorld(path string) (*World, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read world file: %w", err)
	}
	defer f.Close()
	limit := yamlfile.DefaultLimits.MaxBytes
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read world file: %w", err)
	}
	return ParseWorld(path, data)
}

// ParseWorld parses a world file's content. Keys the file leaves out take
// the default world's values (see default_world.yaml for the two
// exceptions). Every problem is reported, as yamlfile.Problems, each with
// file:line:column.
func ParseWorld(file string, data []byte) (*World, error) {
	return parseWorldOnto(DefaultWorld(), file, data)
}

func parseWorldOnto(w *World, file string, data []byte) (*World, error) {
	pos, err := yamlfile.DecodeWith(file, data, w, yamlfile.Options{Root: "world"})
	var problems yamlfile.Problems
	if err != nil && !errors.As(err, &problems) {
		return nil, fmt.Errorf("parse world: %w", err)
	}
	if len(problems) > 0 && !pos.Has("") {
		return nil, problems // nothing was read (size, encoding, syntax)
	}
	// Overlap: fractions a file gives replace the whole split.
	given := false
	for _, k := range []string{"shared", "other_id_only", "ambiguous", "absent"} {
		given = given || pos.Has("overlap."+k)
	}
	if given {
		o := &w.Overlap
		for k, f := range map[string]*float64{"shared": &o.Shared, "other_id_only": &o.OtherIDOnly, "ambiguous": &o.Ambiguous, "absent": &o.Absent} {
			if !pos.Has("overlap." + k) {
				*f = 0
			}
		}
	}
	problems = append(problems, w.validate(pos)...)
	if len(problems) > 0 {
		problems.Sort()
		return nil, problems
	}
	return w, nil
}

var (
	usernameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)
	clientIDRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
	scopeTokenRE = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]+$`) // RFC 6749 §3.3
	fhirIDRE     = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// validate checks everything the decoder cannot, positions each problem at
// the field it is about, and resolves derived values (Other's patient
// count, other_only as a count).
func (w *World) validate(pos yamlfile.Positions) yamlfile.Problems {
	var ps yamlfile.Problems
	add := func(path, format string, args ...any) {
		ps = append(ps, pos.Problemf(path, format, args...))
	}

	if y := w.ReferenceDate.Year(); y < 1900 || y > 2200 {
		add("reference_date", "reference_date: %s is outside the years 1900–2200", w.ReferenceDate.Format("2006-01-02"))
	}
	w.ReferenceDate = w.ReferenceDate.UTC()

	// Organisations and identifier systems.
	if strings.TrimSpace(w.EHR.Name) == "" {
		add("ehr.name", "ehr.name: missing, expected the organisation's name")
	}
	if strings.TrimSpace(w.Other.Name) == "" {
		add("other.name", "other.name: missing, expected the organisation's name")
	}
	if w.EHR.Kind != synth.KindHospital {
		add("ehr.kind", "ehr.kind: found %q, expected hospital", w.EHR.Kind)
	}
	switch w.Other.Kind {
	case synth.KindImaging, synth.KindLab, synth.KindRegionalRecord:
	default:
		add("other.kind", "other.kind: found %q, expected one of: imaging, lab, regional_record", w.Other.Kind)
	}
	switch w.Other.GovernedBy {
	case "", GovernedByOwn:
		w.Other.GovernedBy = ""
	case GovernedByEHR:
	default:
		add("other.governed_by", "other.governed_by: found %q, expected one of: own, ehr", w.Other.GovernedBy)
	}
	switch w.EHR.GovernedBy {
	case "", GovernedByOwn:
		w.EHR.GovernedBy = ""
	default:
		add("ehr.governed_by", "ehr.governed_by: found %q, expected own (the EHR is always governed by the EHR AS)", w.EHR.GovernedBy)
	}
	if w.EHR.Patients < 0 || w.EHR.Patients > synth.MaxPatients {
		add("ehr.patients", "ehr.patients: found %d, expected a count from 0 to %d", w.EHR.Patients, synth.MaxPatients)
	}
	systems := []struct{ path, value string }{
		{"shared_identifier_system", w.SharedIdentifierSystem},
		{"ehr.mrn_system", w.EHR.MRNSystem},
		{"other.mrn_system", w.Other.MRNSystem},
	}
	for i, s := range systems {
		if msg := checkURI(s.value, false); msg != "" {
			add(s.path, "%s: %s", s.path, msg)
		}
		for _, t := range systems[:i] {
			if s.value != "" && s.value == t.value {
				add(s.path, "%s: %q is also %s; each identifier system must be different", s.path, s.value, t.path)
			}
		}
	}

	// Matching.
	if len(w.Match.IdentifierSystems) == 0 {
		add("match.identifier_systems", "match.identifier_systems: empty, expected at least one identifier system")
	}
	known := []string{w.SharedIdentifierSystem, w.EHR.MRNSystem, w.Other.MRNSystem}
	for i, s := range w.Match.IdentifierSystems {
		p := yamlfile.IndexPath("match.identifier_systems", i)
		if !slices.Contains(known, s) {
			add(p, "%s: unknown identifier system %q (expected one the world defines: %s)", p, s, strings.Join(known, ", "))
		} else if slices.Index(w.Match.IdentifierSystems, s) < i {
			add(p, "%s: %q is listed twice", p, s)
		}
	}

	// Overlap.
	o := &w.Overlap
	fractions := []struct {
		name string
		v    float64
	}{{"shared", o.Shared}, {"other_id_only", o.OtherIDOnly}, {"ambiguous", o.Ambiguous}, {"absent", o.Absent}, {"demographics_drift", o.DemographicsDrift}}
	inRange := true
	for _, f := range fractions {
		if f.v < 0 || f.v > 1 {
			add("overlap."+f.name, "overlap.%s: found %v, expected a fraction from 0 to 1", f.name, f.v)
			inRange = false
		}
	}
	if sum := o.Shared + o.OtherIDOnly + o.Ambiguous + o.Absent; inRange && sum > 1+1e-9 {
		add("overlap", "overlap: shared + other_id_only + ambiguous + absent = %s, expected at most 1 (what they leave is absent)",
			strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", sum), "0"), "."))
		inRange = false
	}
	if o.OtherOnly.IsFraction && o.OtherOnly.Fraction < 0 {
		add("overlap.other_only", "overlap.other_only: found %v, expected a fraction of at least 0", o.OtherOnly.Fraction)
	} else if !o.OtherOnly.IsFraction && o.OtherOnly.Count < 0 {
		add("overlap.other_only", "overlap.other_only: found %d, expected a count of at least 0", o.OtherOnly.Count)
	}
	var counts map[string]int
	if inRange && w.EHR.Patients >= 0 && w.EHR.Patients <= synth.MaxPatients {
		counts = synth.ClassCounts(w.EHR.Patients, w.synthOverlap())
		implied := counts[synth.ClassShared] + counts[synth.ClassOtherIDOnly] + 2*counts[synth.ClassAmbiguous]
		otherOnly := o.OtherOnly.resolve(w.EHR.Patients)
		switch {
		case pos.Has("other.patients") && !pos.Has("overlap.other_only"):
			if w.Other.Patients < implied {
				add("other.patients", "other.patients: found %d, expected at least %d (shared %d + other_id_only %d + 2 × ambiguous %d)",
					w.Other.Patients, implied, counts[synth.ClassShared], counts[synth.ClassOtherIDOnly], counts[synth.ClassAmbiguous])
			} else {
				otherOnly = w.Other.Patients - implied
			}
		case pos.Has("other.patients") && w.Other.Patients != implied+otherOnly:
			add("other.patients", "other.patients: found %d, but the overlap gives %d (shared %d + other_id_only %d + 2 × ambiguous %d + other_only %d); give one of other.patients and overlap.other_only",
				w.Other.Patients, implied+otherOnly, counts[synth.ClassShared], counts[synth.ClassOtherIDOnly], counts[synth.ClassAmbiguous], otherOnly)
		}
		if otherOnly > synth.MaxPatients {
			add("overlap.other_only", "overlap.other_only: %d patients, expected at most %d", otherOnly, synth.MaxPatients)
		} else if otherOnly >= 0 {
			o.OtherOnly = CountOrFraction{Count: otherOnly}
			w.Other.Patients = implied + otherOnly
		}
	}

	// Users.
	usernames := map[string]string{}
	checkUser := func(path, username, password string) {
		switch {
		case !usernameRE.MatchString(username):
			add(path+".username", "%s.username: found %q, expected 1–64 letters, digits or . _ @ + - (starting with a letter or digit)", path, username)
		case usernames[username] != "":
			add(path+".username", "%s.username: %q is already used by %s", path, username, usernames[username])
		default:
			usernames[username] = path
		}
		if password == "" {
			add(path+".password", "%s.password: missing, expected a password", path)
		}
	}
	for i, c := range w.Users.Clinicians {
		checkUser(yamlfile.IndexPath("users.clinicians", i), c.Username, c.Password)
	}
	if counts != nil && !pos.Has("users.patients") {
		// Default portal users need a patient of their class; a world
		// whose overlap has none (or too few) simply goes without them.
		kept := w.Users.Patients[:0:0]
		used := map[string]int{}
		for _, u := range w.Users.Patients {
			if u.Class != "" {
				if used[u.Class] >= counts[u.Class] {
					continue
				}
				used[u.Class]++
			}
			kept = append(kept, u)
		}
		w.Users.Patients = kept
	}
	perClass := map[string]int{}
	for i, u := range w.Users.Patients {
		p := yamlfile.IndexPath("users.patients", i)
		checkUser(p, u.Username, u.Password)
		switch {
		case u.Patient != "" && u.Class != "":
			add(p, "%s: gives both patient and class, expected one of them", p)
		case u.Patient != "":
			if !fhirIDRE.MatchString(u.Patient) {
				add(p+".patient", "%s.patient: found %q, expected an EHR Patient id", p, u.Patient)
			}
		case u.Class != "":
			if !slices.Contains(synth.Classes, u.Class) {
				add(p+".class", "%s.class: found %q, expected one of: %s", p, u.Class, strings.Join(synth.Classes, ", "))
				break
			}
			perClass[u.Class]++
			if counts != nil && perClass[u.Class] > counts[u.Class] {
				add(p+".class", "%s.class: no %s patient left to link (the world has %d)", p, u.Class, counts[u.Class])
			}
		default:
			add(p, "%s: expected patient (an EHR Patient id) or class (%s)", p, strings.Join(synth.Classes, ", "))
		}
	}

	// Apps.
	clientIDs := map[string]string{}
	for i := range w.Apps {
		a := &w.Apps[i]
		p := yamlfile.IndexPath("apps", i)
		switch {
		case !clientIDRE.MatchString(a.ClientID):
			add(p+".client_id", "%s.client_id: found %q, expected 1–128 letters, digits or . _ : / -", p, a.ClientID)
		case clientIDs[a.ClientID] != "":
			add(p+".client_id", "%s.client_id: %q is already used by %s", p, a.ClientID, clientIDs[a.ClientID])
		default:
			clientIDs[a.ClientID] = p
		}
		if strings.TrimSpace(a.Name) == "" {
			add(p+".name", "%s.name: missing, expected the app's name", p)
		}
		if a.SoftwareID != "" && (len(a.SoftwareID) > 256 || strings.ContainsFunc(a.SoftwareID, func(r rune) bool { return r < 0x21 || r > 0x7e })) {
			add(p+".software_id", "%s.software_id: found %q, expected up to 256 printable characters without spaces", p, a.SoftwareID)
		}
		switch a.Type {
		case AppPublic:
			if a.Secret != "" || a.JWKSURI != "" || a.JWKS != nil {
				add(p, "%s: a public app has no secret, jwks_uri or jwks", p)
			}
		case AppConfidentialSymmetric:
			if len(a.Secret) < 16 {
				add(p+".secret", "%s.secret: expected a secret of at least 16 characters for a confidential-symmetric app", p)
			}
			if a.JWKSURI != "" || a.JWKS != nil {
				add(p, "%s: a confidential-symmetric app has a secret, not jwks_uri or jwks", p)
			}
		case AppConfidentialAsymmetric:
			if a.Secret != "" {
				add(p+".secret", "%s.secret: a confidential-asymmetric app authenticates with its keys, not a secret", p)
			}
			switch {
			case a.JWKSURI == "" && a.JWKS == nil:
				add(p, "%s: expected jwks_uri or jwks for a confidential-asymmetric app", p)
			case a.JWKSURI != "" && a.JWKS != nil:
				add(p, "%s: gives both jwks_uri and jwks, expected one of them", p)
			case a.JWKSURI != "":
				if msg := checkURI(a.JWKSURI, true); msg != "" {
					add(p+".jwks_uri", "%s.jwks_uri: %s", p, msg)
				}
			default:
				if keys, ok := a.JWKS["keys"].([]any); !ok || len(keys) == 0 {
					add(p+".jwks", "%s.jwks: expected a JWK set: a mapping with a non-empty list \"keys\"", p)
				}
			}
		default:
			add(p+".type", "%s.type: found %q, expected one of: public, confidential-symmetric, confidential-asymmetric", p, a.Type)
		}
		if len(a.RedirectURIs) == 0 {
			add(p+".redirect_uris", "%s.redirect_uris: empty, expected at least one redirect URI", p)
		}
		for j, u := range a.RedirectURIs {
			if msg := checkURI(u, true); msg != "" {
				add(yamlfile.IndexPath(p+".redirect_uris", j), "%s.redirect_uris[%d]: %s", p, j, msg)
			} else if strings.Contains(u, "#") {
				add(yamlfile.IndexPath(p+".redirect_uris", j), "%s.redirect_uris[%d]: %q has a fragment, which RFC 6749 §3.1.2 forbids", p, j, u)
			}
		}
		if a.LaunchURL != "" {
			if msg := checkURI(a.LaunchURL, true); msg != "" {
				add(p+".launch_url", "%s.launch_url: %s", p, msg)
			}
		}
		if strings.TrimSpace(a.Scope) == "" {
			add(p+".scope", "%s.scope: missing, expected space-separated scopes", p)
		}
		for _, s := range strings.Fields(a.Scope) {
			if !scopeTokenRE.MatchString(s) {
				add(p+".scope", "%s.scope: %q is not a valid scope token (RFC 6749 §3.3)", p, s)
			}
		}
		if a.RegisterAt == "" {
			a.RegisterAt = RegisterAtBoth
		}
		switch a.RegisterAt {
		case RegisterAtEHR, RegisterAtOther, RegisterAtBoth:
		default:
			add(p+".register_at", "%s.register_at: found %q, expected one of: ehr, other, both", p, a.RegisterAt)
		}
	}

	// Lifetimes.
	for _, l := range []struct {
		name string
		v    time.Duration
		max  time.Duration
	}{
		{"code", w.Lifetimes.Code, 10 * time.Minute},
		{"launch_token", w.Lifetimes.LaunchToken, time.Hour},
		{"access_token", w.Lifetimes.AccessToken, 30 * 24 * time.Hour},
		{"refresh_token", w.Lifetimes.RefreshToken, 365 * 24 * time.Hour},
		{"backend_token", w.Lifetimes.BackendToken, 24 * time.Hour},
	} {
		if l.v < time.Second || l.v > l.max {
			add("lifetimes."+l.name, "lifetimes.%s: found %s, expected a duration from 1s to %s", l.name, l.v, l.max)
		}
	}
	return ps
}

// checkURI returns "" for an absolute URI. web: it must be http(s) with a
// host (a leading {console}, {ehr} or {other} counts as such an origin).
func checkURI(s string, web bool) string {
	if s == "" {
		return "missing, expected an absolute URI"
	}
	probe := ExpandURL(s, Origins{Console: "http://127.0.0.1:1", EHR: "http://127.0.0.1:2", Other: "http://127.0.0.1:3"})
	u, err := url.Parse(probe)
	if err != nil || u.Scheme == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Sprintf("found %q, expected an absolute URI", s)
	}
	if web && !((u.Scheme == "http" || u.Scheme == "https") && u.Host != "") {
		return fmt.Sprintf("found %q, expected an http(s) URL (or one starting with {console}, {ehr} or {other})", s)
	}
	if !web && u.Opaque == "" && u.Host == "" && u.Path == "" {
		return fmt.Sprintf("found %q, expected an absolute URI", s)
	}
	return ""
}

func (w *World) synthOverlap() synth.Overlap {
	o := w.Overlap
	return synth.Overlap{
		Shared: o.Shared, OtherIDOnly: o.OtherIDOnly, Ambiguous: o.Ambiguous, Absent: o.Absent,
		OtherOnly: o.OtherOnly.resolve(w.EHR.Patients), DemographicsDrift: o.DemographicsDrift,
	}
}

// SynthConfig is the generator configuration for this world.
func (w *World) SynthConfig() synth.Config {
	cfg := synth.Config{
		Seed:          w.Seed,
		ReferenceDate: w.ReferenceDate,
		EHR:           synth.SideConfig{Name: w.EHR.Name, Kind: w.EHR.Kind, Patients: w.EHR.Patients, MRNSystem: w.EHR.MRNSystem},
		Other:         synth.SideConfig{Name: w.Other.Name, Kind: w.Other.Kind, Patients: w.Other.Patients, MRNSystem: w.Other.MRNSystem},
		SharedSystem:  w.SharedIdentifierSystem,
		Overlap:       w.synthOverlap(),
	}
	for _, c := range w.Users.Clinicians {
		cfg.Clinicians = append(cfg.Clinicians, synth.Clinician{Username: c.Username, Password: c.Password, Given: c.Given, Family: c.Family})
	}
	for _, u := range w.Users.Patients {
		cfg.PortalUsers = append(cfg.PortalUsers, synth.PortalUser{Username: u.Username, Password: u.Password, Patient: u.Patient, Class: u.Class})
	}
	return cfg
}

// Fingerprint is a stable hash of the effective world and the generator
// version: equal fingerprints mean equal generated data, so a --data
// directory made from another world (or another generator) is detected.
func (w *World) Fingerprint() string {
	b, err := json.Marshal(w)
	if err != nil {
		// Only reachable with a JWKS holding values JSON cannot encode,
		// which YAML decoding never produces.
		b = fmt.Appendf(nil, "%#v", w)
	}
	h := sha256.New()
	h.Write([]byte("sim world\n" + synth.Version + "\n"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
