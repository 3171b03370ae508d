package synth

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/brianvoe/gofakeit/v6"
)

// person is the demographics both sides may hold for one human.
type person struct {
	given          []string
	family         string
	gender         string
	birth          time.Time
	line, city     string
	state, zip     string
	phone, email   string
	maritalMarried bool
}

// otherStub is one Other patient record before it gets an id.
type otherStub struct {
	p       person
	ids     []Identifier
	ehr     int // index into the EHR patients, -1 for Other-only
	drifted bool
}

type generator struct {
	cfg Config
	f   *gofakeit.Faker
	ref time.Time
	pop *Population

	ehr, other *sink
	enc        *encoderPool
	ids        map[string]*idMaker

	ehrMRN, otherMRN, sharedID *numberPerm

	ehrOrg, ehrEndpoint     string
	otherOrg, otherEndpoint string
	dicomEndpoint           string
	staff                   []string // EHR practitioners for encounters
	otherStaff              []string // Other practitioners (imaging)
}

func newGenerator(cfg Config) *generator {
	g := &generator{
		cfg: cfg,
		f:   newFaker(cfg.Seed),
		ref: cfg.ReferenceDate.UTC(),
		pop: &Population{Counts: map[string]int{}, Classes: map[string]int{}},
		ids: map[string]*idMaker{},
	}
	g.enc = newEncoderPool()
	g.ehr = &sink{out: &g.pop.EHR, side: "ehr", counts: g.pop.Counts, enc: g.enc}
	g.other = &sink{out: &g.pop.Other, side: "other", counts: g.pop.Counts, enc: g.enc}
	g.ehrMRN = newNumberPerm(g.f, 100_000_000)
	g.otherMRN = newNumberPerm(g.f, 100_000_000)
	g.sharedID = newNumberPerm(g.f, 1_000_000_000)
	return g
}

var idPrefix = map[string]string{
	"Patient": "pat", "Practitioner": "prac", "Organization": "org", "Endpoint": "ep",
	"Encounter": "enc", "Condition": "cond", "Observation": "obs", "MedicationRequest": "med",
	"AllergyIntolerance": "alg", "Immunization": "imm", "ImagingStudy": "img", "DiagnosticReport": "rpt",
}

func (g *generator) newID(side, typ string) string {
	key := side + "/" + typ
	m := g.ids[key]
	if m == nil {
		p := idPrefix[typ]
		if side == "other" {
			p = "x" + p
		}
		m = newIDMaker(g.cfg.Seed, side, typ, p)
		g.ids[key] = m
	}
	return m.next()
}

func (g *generator) run() error {
	cfg := g.cfg
	n := cfg.EHR.Patients

	// Classes, shuffled so that neither order nor id reveals them.
	counts := ClassCounts(n, cfg.Overlap)
	classes := make([]string, 0, n)
	for _, c := range Classes {
		g.pop.Classes[c] = counts[c]
		for range counts[c] {
			classes = append(classes, c)
		}
	}
	g.f.Rand.Shuffle(len(classes), func(i, j int) { classes[i], classes[j] = classes[j], classes[i] })

	g.pop.EHR = make([]Resource, 0, 6*n+16)
	g.ehrInfrastructure()
	if err := g.clinicians(); err != nil {
		return err
	}

	// EHR patients and their records.
	people := make([]person, n)
	g.pop.Truth = make([]Truth, n)
	for i := range n {
		p := g.newPerson()
		people[i] = p
		id := g.newID("ehr", "Patient")
		ids := []Identifier{
			{System: cfg.EHR.MRNSystem, Value: g.ehrMRN.format("", 8)},
			{System: cfg.SharedSystem, Value: g.sharedID.format("", 9)},
		}
		g.pop.Truth[i] = Truth{EHRID: id, Class: classes[i], Identifiers: ids}
		gp := g.staff[g.f.Rand.Intn(len(g.staff))]
		g.ehr.add("Patient", id, patientJSON(p, ids, cfg.EHR.MRNSystem, g.ehrOrg, gp))
		g.ehrClinical(id, gp, p.birth)
	}
	if err := g.portalUsers(); err != nil {
		return err
	}

	// Other records: build, drift, shuffle, then emit.
	var stubs []otherStub
	for i, t := range g.pop.Truth {
		shared := t.Identifiers[1]
		switch t.Class {
		case ClassShared:
			stubs = append(stubs, otherStub{p: people[i], ids: []Identifier{shared}, ehr: i})
		case ClassOtherIDOnly:
			stubs = append(stubs, otherStub{p: people[i], ehr: i})
		case ClassAmbiguous:
			stubs = append(stubs, otherStub{p: people[i], ids: []Identifier{shared}, ehr: i})
			dup := people[i]
			g.moved(&dup) // the duplicate registration has an older address
			stubs = append(stubs, otherStub{p: dup, ids: []Identifier{shared}, ehr: i})
		}
	}
	pairs := len(stubs)
	for range cfg.Overlap.OtherOnly {
		p := g.newPerson()
		stubs = append(stubs, otherStub{p: p, ids: []Identifier{{System: cfg.SharedSystem, Value: g.sharedID.format("", 9)}}, ehr: -1})
	}
	drift := int(math.Round(cfg.Overlap.DemographicsDrift * float64(pairs)))
	if pairs > 0 {
		pick := g.f.Rand.Perm(pairs)[:drift]
		for _, k := range pick {
			g.drift(&stubs[k].p)
			stubs[k].drifted = true
		}
	}
	g.f.Rand.Shuffle(len(stubs), func(i, j int) { stubs[i], stubs[j] = stubs[j], stubs[i] })

	g.pop.Other = make([]Resource, 0, 5*len(stubs)+16)
	g.otherInfrastructure()
	mrnPrefix := map[string]string{KindImaging: "IMG", KindLab: "LAB", KindRegionalRecord: "RR"}[cfg.Other.Kind]
	for _, s := range stubs {
		id := g.newID("other", "Patient")
		ids := append([]Identifier{{System: cfg.Other.MRNSystem, Value: g.otherMRN.format(mrnPrefix, 8)}}, s.ids...)
		g.other.add("Patient", id, patientJSON(s.p, ids, cfg.Other.MRNSystem, g.otherOrg, ""))
		g.otherClinical(id, s.p.birth)
		if s.ehr < 0 {
			g.pop.OtherOnly = append(g.pop.OtherOnly, id)
			continue
		}
		t := &g.pop.Truth[s.ehr]
		t.OtherRecords = append(t.OtherRecords, id)
		if t.Class == ClassShared {
			t.OtherID = id
		}
		if s.drifted {
			t.Drifted = append(t.Drifted, id)
		}
	}
	return nil
}

// sink collects one side's resources. Full batches go to a pool of encoder
// goroutines while generation carries on; finish puts the encoded batches
// back together in the order of the add calls, so concurrency never changes
// the output. Bodies must not be touched after add; an obj shared between
// bodies must have at most one member or be sorted already (the encoder
// sorts members in place and writes only when they are out of order).
type sink struct {
	out     *[]Resource
	side    string
	counts  map[string]int
	pend    []pending
	batches []*batch
	enc     *encoderPool
}

type pending struct {
	typ, id string
	body    obj
}

type batch struct {
	pend []pending
	res  []Resource
	done chan struct{}
}

const batchSize = 2048

func (s *sink) add(typ, id string, body obj) {
	body = append(body, kv{"resourceType", typ}, kv{"id", id})
	s.pend = append(s.pend, pending{typ, id, body})
	s.counts[s.side+"/"+typ]++
	if len(s.pend) >= batchSize {
		s.flush()
	}
}

func (s *sink) flush() {
	if len(s.pend) == 0 {
		return
	}
	b := &batch{pend: s.pend, done: make(chan struct{})}
	s.pend = make([]pending, 0, batchSize)
	s.batches = append(s.batches, b)
	s.enc.jobs <- b
}

// finish waits for every batch and appends the resources to out.
func (s *sink) finish() {
	s.flush()
	for _, b := range s.batches {
		<-b.done
		*s.out = append(*s.out, b.res...)
	}
	s.batches = nil
}

// encoderPool encodes batches on GOMAXPROCS goroutines.
type encoderPool struct {
	jobs chan *batch
	wg   sync.WaitGroup
}

func newEncoderPool() *encoderPool {
	p := &encoderPool{jobs: make(chan *batch, 4)}
	for range min(runtime.GOMAXPROCS(0), 8) {
		p.wg.Go(func() {
			var scratch []byte
			for b := range p.jobs {
				scratch = b.encode(scratch[:0])
			}
		})
	}
	return p
}

func (p *encoderPool) close() {
	close(p.jobs)
	p.wg.Wait()
}

// encode fills b.res. It encodes into scratch, then copies everything into
// one exactly sized buffer that the resources share (capacity-limited
// sub-slices): two allocations per batch instead of growth per resource.
func (b *batch) encode(scratch []byte) []byte {
	ends := make([]int, len(b.pend))
	for i, p := range b.pend {
		scratch = appendJSON(scratch, p.body)
		ends[i] = len(scratch)
	}
	buf := make([]byte, len(scratch))
	copy(buf, scratch)
	b.res = make([]Resource, len(b.pend))
	start := 0
	for i, p := range b.pend {
		end := ends[i]
		b.res[i] = Resource{Type: p.typ, ID: p.id, JSON: buf[start:end:end]}
		start = end
	}
	b.pend = nil
	close(b.done)
	return scratch
}

// numberPerm hands out distinct numbers below mod in a random-looking order
// (an affine permutation), formatted with a fixed width.
type numberPerm struct {
	mod, a, b, n uint64
}

func newNumberPerm(f *gofakeit.Faker, mod uint64) *numberPerm {
	a := uint64(f.Rand.Int63n(int64(mod)))
	for a%2 == 0 || a%5 == 0 { // coprime with a power of ten
		a++
	}
	return &numberPerm{mod: mod, a: a % mod, b: uint64(f.Rand.Int63n(int64(mod)))}
}

func (p *numberPerm) format(prefix string, width int) string {
	v := (p.a*p.n + p.b) % p.mod
	p.n++
	s := strconv.FormatUint(v, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return prefix + s
}

// ---- people ----

func (g *generator) newPerson() person {
	f := g.f
	p := person{}
	switch r := f.Rand.Intn(100); {
	case r < 49:
		p.gender = "female"
	case r < 98:
		p.gender = "male"
	case r < 99:
		p.gender = "other"
	default:
		p.gender = "unknown"
	}
	p.given = []string{f.FirstName()}
	if f.Rand.Intn(3) == 0 {
		p.given = append(p.given, f.MiddleName())
	}
	p.family = f.LastName()
	p.birth = g.ref.AddDate(-1-f.Rand.Intn(94), 0, -f.Rand.Intn(365))
	g.moved(&p)
	p.email = emailFor(p.given[0], p.family, f.Rand.Intn(100))
	p.maritalMarried = f.Rand.Intn(2) == 0
	return p
}

// moved gives p a new address and phone number.
func (g *generator) moved(p *person) {
	f := g.f
	p.line = f.Street()
	p.city = f.City()
	p.state = f.StateAbr()
	p.zip = f.Zip()
	ph := f.Phone()
	p.phone = "(" + ph[0:3] + ") " + ph[3:6] + "-" + ph[6:]
}

func emailFor(given, family string, n int) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
				return unicode.ToLower(r)
			}
			return -1
		}, s)
	}
	return clean(given) + "." + clean(family) + strconv.Itoa(n) + "@example.org"
}

// drift changes p slightly, as records of one person at two organisations
// often differ.
func (g *generator) drift(p *person) {
	f := g.f
	switch f.Rand.Intn(3) {
	case 0: // typo: swap two adjacent letters, or double one
		r := []rune(p.family)
		if len(r) >= 3 {
			i := 1 + f.Rand.Intn(len(r)-2)
			if r[i] != r[i+1] {
				r[i], r[i+1] = r[i+1], r[i]
			} else {
				r = append(r[:i+1], r[i:]...)
			}
		} else {
			r = append(r, r[len(r)-1])
		}
		p.family = string(r)
	case 1: // married name
		name := marriedNames[f.Rand.Intn(len(marriedNames))]
		if name == p.family {
			name += "-" + p.family
		}
		p.family = name
	default: // birth date a day off
		if f.Rand.Intn(2) == 0 {
			p.birth = p.birth.AddDate(0, 0, 1)
		} else {
			p.birth = p.birth.AddDate(0, 0, -1)
		}
	}
}

// ---- users ----

func (g *generator) clinicians() error {
	seen := map[string]bool{}
	for _, c := range g.cfg.Clinicians {
		if seen[c.Username] {
			return fmt.Errorf("duplicate username %q", c.Username)
		}
		seen[c.Username] = true
		given, family := c.Given, c.Family
		if given == "" {
			given = g.f.FirstName()
		}
		if family == "" {
			family = g.f.LastName()
		}
		id := g.practitioner(g.ehr, "ehr", given, family)
		g.staff = append(g.staff, id)
		g.pop.Users = append(g.pop.Users, User{Username: c.Username, Password: c.Password, FHIRUser: "Practitioner/" + id, Kind: UserClinician})
	}
	for range 3 {
		g.staff = append(g.staff, g.practitioner(g.ehr, "ehr", g.f.FirstName(), g.f.LastName()))
	}
	return nil
}

func (g *generator) portalUsers() error {
	linked := map[string]bool{}
	for _, u := range g.pop.Users {
		linked[u.Username] = true
	}
	taken := map[string]bool{}
	for _, u := range g.cfg.PortalUsers {
		if linked[u.Username] {
			return fmt.Errorf("duplicate username %q", u.Username)
		}
		linked[u.Username] = true
		var id string
		if u.Patient != "" {
			for _, t := range g.pop.Truth {
				if t.EHRID == u.Patient {
					id = t.EHRID
				}
			}
			if id == "" {
				return fmt.Errorf("portal user %q: no EHR patient %q", u.Username, u.Patient)
			}
		} else {
			for _, t := range g.pop.Truth {
				if t.Class == u.Class && !taken[t.EHRID] {
					id = t.EHRID
					break
				}
			}
			if id == "" {
				return fmt.Errorf("portal user %q: no unlinked EHR patient of class %q", u.Username, u.Class)
			}
		}
		taken[id] = true
		g.pop.Users = append(g.pop.Users, User{Username: u.Username, Password: u.Password, FHIRUser: "Patient/" + id, Kind: UserPatient})
	}
	return nil
}

// ---- dates ----

func fhirDate(t time.Time) string     { return t.Format("2006-01-02") }
func fhirDateTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// pastTime is a working-hours moment up to days before the reference date,
// and after birth.
func (g *generator) pastTime(days int, birth time.Time) time.Time {
	if age := int(g.ref.Sub(birth).Hours()/24) - 1; age < days {
		days = max(age, 1)
	}
	d := g.ref.AddDate(0, 0, -1-g.f.Rand.Intn(days))
	return time.Date(d.Year(), d.Month(), d.Day(), 8+g.f.Rand.Intn(9), g.f.Rand.Intn(60), 0, 0, time.UTC)
}

func (g *generator) quantity(q quantityKind) obj {
	v := q.min + g.f.Rand.Float64()*(q.max-q.min)
	scale := math.Pow(10, float64(q.decimals))
	v = math.Round(v*scale) / scale
	return obj{{"value", v}, {"unit", q.unit}, {"system", sysUCUM}, {"code", q.ucum}}
}

func ref(typ, id string) obj { return obj{{"reference", typ + "/" + id}} }

// npi builds a 10-digit identifier with the NPI check digit (Luhn over the
// "80840" prefix).
func npi(f *gofakeit.Faker) string {
	base := "1" + fmt.Sprintf("%08d", f.Rand.Intn(100_000_000))
	digits := "80840" + base
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 { // rightmost digit of the payload is doubled
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return base + strconv.Itoa((10-sum%10)%10)
}
