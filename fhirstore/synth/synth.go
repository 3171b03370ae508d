package synth

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"time"

	"github.com/brianvoe/gofakeit/v6"
)

// Version names the generator's output format. It changes whenever the same
// Config would produce different bytes, so a stored directory made by an
// older generator can be recognised (world fingerprints include it).
const Version = "synth-1"

// Organisation kinds.
const (
	KindHospital       = "hospital"
	KindImaging        = "imaging"
	KindLab            = "lab"
	KindRegionalRecord = "regional_record"
)

// Overlap classes of an EHR patient (see the package comment).
const (
	ClassShared      = "shared"
	ClassOtherIDOnly = "other_id_only"
	ClassAmbiguous   = "ambiguous"
	ClassAbsent      = "absent"
)

// Classes lists the overlap classes in their fixed order.
var Classes = []string{ClassShared, ClassOtherIDOnly, ClassAmbiguous, ClassAbsent}

// User kinds.
const (
	UserClinician = "clinician"
	UserPatient   = "patient"
)

// MaxPatients bounds Config.EHR.Patients and Overlap.OtherOnly.
const MaxPatients = 1_000_000

// SideConfig describes one organisation.
type SideConfig struct {
	Name      string // organisation name
	Kind      string // KindHospital for the EHR; imaging, lab or regional_record for Other
	Patients  int    // EHR side: how many patients; ignored for Other (derived from Overlap)
	MRNSystem string // URI of the organisation's local patient identifier
	// FHIRBase is written as the Endpoint.address of the organisation's FHIR
	// server. Ports are only known when the servers listen, so worlds leave
	// it empty and a stable placeholder is used.
	FHIRBase string
}

// Overlap says how the two directories relate (fractions of EHR patients).
type Overlap struct {
	Shared, OtherIDOnly, Ambiguous, Absent float64
	// OtherOnly is how many Other patients the EHR does not know.
	OtherOnly int
	// DemographicsDrift is the fraction of (EHR patient, Other record) pairs
	// whose name or birth date differ slightly.
	DemographicsDrift float64
}

// Clinician is a login at the EHR backed by a Practitioner.
type Clinician struct {
	Username, Password string
	Given, Family      string // empty: drawn at random
}

// PortalUser is a patient-portal login at the EHR backed by an EHR Patient:
// the one with id Patient, or else the first still unlinked patient of Class.
type PortalUser struct {
	Username, Password string
	Patient            string
	Class              string
}

// Config is everything Generate needs. World files map onto it.
type Config struct {
	Seed          int64
	ReferenceDate time.Time // "today" in the generated data
	EHR, Other    SideConfig
	SharedSystem  string // URI of the identifier both sides may carry
	Overlap       Overlap
	Clinicians    []Clinician
	PortalUsers   []PortalUser
}

// Resource is one generated FHIR resource.
type Resource struct {
	Type, ID string
	JSON     []byte
}

// Identifier is a FHIR identifier's system and value.
type Identifier struct {
	System, Value string
}

// Truth is what is known about one EHR patient's presence at Other.
type Truth struct {
	EHRID string
	Class string
	// OtherID is the Other record a correct identifier match finds; empty
	// unless Class is shared.
	OtherID string
	// OtherRecords are every Other record of the same person.
	OtherRecords []string
	// Identifiers are the EHR patient's identifiers.
	Identifiers []Identifier
	// Drifted are the Other records (of OtherRecords) whose name or birth
	// date differ from the EHR's.
	Drifted []string
}

// User is a login the EHR AS accepts.
type User struct {
	Username, Password string
	FHIRUser           string // relative reference: Practitioner/… or Patient/…
	Kind               string // UserClinician or UserPatient
}

// Summary is everything about a generated world except the resource
// bodies: the overlap truth (ids and identifiers only), the users and the
// counts. Its size grows with the population (a few hundred bytes per
// patient) but holds no resource body.
type Summary struct {
	Truth     []Truth  // one per EHR patient, in generation order
	OtherOnly []string // ids of Other patients unknown to the EHR
	Users     []User
	// Counts has "ehr/<Type>" and "other/<Type>" resource counts.
	Counts map[string]int
	// Classes has the number of EHR patients per class.
	Classes map[string]int
}

// Population is a generated world held in memory: every resource body of
// both sides plus the Summary (whose fields read as the Population's own:
// pop.Truth, pop.Users, pop.Counts).
type Population struct {
	EHR, Other []Resource
	Summary
}

// Sides, as Stream names them.
const (
	SideEHR   = "ehr"
	SideOther = "other"
)

// Emit receives one batch of one side's resources (SideEHR or SideOther).
// For each side the batches come in generation order, one call at a time;
// calls for the two sides may run at the same time, on goroutines other
// than Stream's caller. The batch and its bodies stay valid after the call
// (they are never reused), so a consumer may keep them. An error stops the
// generation: Stream returns it.
type Emit func(side string, batch []Resource) error

// ClassCounts splits n patients over the classes by the largest remainder
// method (see the package comment). The fractions must be valid (each in
// [0,1], Shared+OtherIDOnly+Ambiguous+Absent ≤ 1).
func ClassCounts(n int, o Overlap) map[string]int {
	rest := 1 - o.Shared - o.OtherIDOnly - o.Ambiguous
	fr := []float64{o.Shared, o.OtherIDOnly, o.Ambiguous, math.Max(rest, 0)}
	counts := make([]int, len(fr))
	rem := make([]float64, len(fr))
	total := 0
	for i, f := range fr {
		exact := f * float64(n)
		counts[i] = int(math.Floor(exact + 1e-9))
		rem[i] = exact - float64(counts[i])
		total += counts[i]
	}
	for total < n {
		best := 0
		for i := range rem {
			if rem[i] > rem[best]+1e-12 {
				best = i
			}
		}
		counts[best]++
		rem[best] = -1
		total++
	}
	for total > n { // only reachable through rounding error
		for i := len(counts) - 1; i >= 0 && total > n; i-- {
			if counts[i] > 0 {
				counts[i]--
				total--
			}
		}
	}
	out := make(map[string]int, len(Classes))
	for i, c := range Classes {
		out[c] = counts[i]
	}
	return out
}

// check reports configuration errors Generate cannot work around. World
// validation reports the same things with positions; this is the backstop
// for callers that build a Config in code.
func (c *Config) check() error {
	var errs []error
	if c.EHR.Patients < 0 || c.EHR.Patients > MaxPatients {
		errs = append(errs, fmt.Errorf("ehr patients %d outside [0, %d]", c.EHR.Patients, MaxPatients))
	}
	if c.Overlap.OtherOnly < 0 || c.Overlap.OtherOnly > MaxPatients {
		errs = append(errs, fmt.Errorf("other-only patients %d outside [0, %d]", c.Overlap.OtherOnly, MaxPatients))
	}
	o := c.Overlap
	for _, f := range []float64{o.Shared, o.OtherIDOnly, o.Ambiguous, o.Absent, o.DemographicsDrift} {
		if !(f >= 0 && f <= 1) {
			errs = append(errs, fmt.Errorf("overlap fraction %v outside [0, 1]", f))
		}
	}
	if o.Shared+o.OtherIDOnly+o.Ambiguous+o.Absent > 1+1e-9 {
		errs = append(errs, errors.New("overlap fractions add up to more than 1"))
	}
	switch c.Other.Kind {
	case KindImaging, KindLab, KindRegionalRecord:
	default:
		errs = append(errs, fmt.Errorf("other kind %q is not imaging, lab or regional_record", c.Other.Kind))
	}
	if c.EHR.MRNSystem == "" || c.Other.MRNSystem == "" || c.SharedSystem == "" {
		errs = append(errs, errors.New("identifier systems must not be empty"))
	}
	if c.ReferenceDate.IsZero() {
		errs = append(errs, errors.New("reference date is not set"))
	}
	return errors.Join(errs...)
}

// newFaker returns the world's random source: math/rand seeded with seed,
// wrapped by gofakeit. Built directly rather than with gofakeit.New so that
// seed 0 stays reproducible (gofakeit.New(0) seeds from crypto/rand).
func newFaker(seed int64) *gofakeit.Faker {
	return &gofakeit.Faker{Rand: rand.New(rand.NewSource(seed))}
}

// Generate builds the population described by cfg in memory. Same cfg,
// same bytes. Its memory grows with the population (about 19 GB at 1 M
// patients per side): large worlds use Stream.
func Generate(cfg Config) (*Population, error) {
	pop := &Population{}
	sum, err := Stream(cfg, func(side string, batch []Resource) error {
		if side == SideEHR {
			pop.EHR = append(pop.EHR, batch...)
		} else {
			pop.Other = append(pop.Other, batch...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pop.Summary = *sum
	return pop, nil
}

// Stream generates the world described by cfg and hands its resources to
// emit in batches as they are made, so that memory stays bounded whatever
// the population: only the Summary (ids and identifiers) and a few batches
// in flight are held. It returns once emit has had every batch. The
// resources and their order are exactly Generate's: same cfg, same bytes.
// The EHR side comes first, then the Other side (whose generation needs
// the whole EHR side), each in generation order. On an error the consumer
// may have received part of the world.
func Stream(cfg Config, emit Emit) (*Summary, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("generate population: %w", err)
	}
	if emit == nil {
		return nil, errors.New("generate population: no consumer")
	}
	g := newGenerator(cfg, emit)
	err := g.run()
	g.ehr.finish()
	g.other.finish()
	g.enc.close()
	if err == nil {
		err = errors.Join(g.ehr.failure(), g.other.failure())
	}
	if err != nil {
		return nil, fmt.Errorf("generate population: %w", err)
	}
	return g.sum, nil
}
