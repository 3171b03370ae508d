package synth

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/brianvoe/gofakeit/v6"
)

// person is the demographics both sides may hold for one human. Its
// fields are also packed and unpacked field by field (packedPeople).
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

// otherStub is one Other patient record before it gets an id: the person
// and the value of the shared identifier it carries ("" for none), packed
// in the generator's people. It holds no pointer.
type otherStub struct {
	rec     packedRef
	ehr     int32 // index into the EHR patients, -1 for Other-only
	move    bool  // a duplicate registration: gets an older address
	drifted bool
}

type generator struct {
	cfg Config
	f   *gofakeit.Faker
	ref time.Time
	sum *Summary

	ehr, other *sink
	enc        *encoderPool
	people     packedPeople // the Other records' people until they are written
	ids        map[string]*idMaker

	ehrMRN, otherMRN, sharedID *numberPerm

	ehrOrg, ehrEndpoint     string
	otherOrg, otherEndpoint string
	dicomEndpoint           string
	staff                   []string // EHR practitioners for encounters
	otherStaff              []string // Other practitioners (imaging)
}

func newGenerator(cfg Config, emit Emit) *generator {
	g := &generator{
		cfg: cfg,
		f:   newFaker(cfg.Seed),
		ref: cfg.ReferenceDate.UTC(),
		sum: &Summary{Counts: map[string]int{}, Classes: map[string]int{}},
		ids: map[string]*idMaker{},
	}
	g.enc = newEncoderPool()
	g.ehr = newSink(SideEHR, g.sum.Counts, g.enc, emit)
	g.other = newSink(SideOther, g.sum.Counts, g.enc, emit)
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

// stopped reports a consumer's error, checked once per patient so that a
// failed load stops the generation early.
func (g *generator) stopped() error {
	return errors.Join(g.ehr.failure(), g.other.failure())
}

func (g *generator) run() error {
	cfg := g.cfg
	n := cfg.EHR.Patients

	// Classes, shuffled so that neither order nor id reveals them.
	counts := ClassCounts(n, cfg.Overlap)
	classes := make([]string, 0, n)
	for _, c := range Classes {
		g.sum.Classes[c] = counts[c]
		for range counts[c] {
			classes = append(classes, c)
		}
	}
	g.f.Rand.Shuffle(len(classes), func(i, j int) { classes[i], classes[j] = classes[j], classes[i] })

	g.ehrInfrastructure()
	if err := g.clinicians(); err != nil {
		return err
	}

	// EHR patients and their records. The truth's identifiers and Other
	// record lists are carved out of a few large arrays (one allocation
	// each instead of one per patient). The Other records of a person are
	// collected as stubs on the way: only the people Other holds are kept.
	pairs := counts[ClassShared] + counts[ClassOtherIDOnly] + 2*counts[ClassAmbiguous]
	g.sum.Truth = make([]Truth, n)
	idents := make([]Identifier, 2*n)
	records := make([]string, pairs)
	stubs := make([]otherStub, 0, pairs+cfg.Overlap.OtherOnly)
	for i := range n {
		if err := g.stopped(); err != nil {
			return err
		}
		p := g.newPerson()
		id := g.newID("ehr", "Patient")
		ids := idents[2*i : 2*i+2 : 2*i+2]
		ids[0] = Identifier{System: cfg.EHR.MRNSystem, Value: g.ehrMRN.format("", 8)}
		ids[1] = Identifier{System: cfg.SharedSystem, Value: g.sharedID.format("", 9)}
		t := &g.sum.Truth[i]
		*t = Truth{EHRID: id, Class: classes[i], Identifiers: ids}
		gp := g.staff[g.f.Rand.Intn(len(g.staff))]
		g.ehr.add("Patient", id, patientJSON(p, ids, cfg.EHR.MRNSystem, g.ehrOrg, gp))
		g.ehrClinical(id, gp, p.birth)
		k := 0
		switch t.Class {
		case ClassShared:
			stubs = append(stubs, otherStub{rec: g.people.add(p, ids[1].Value), ehr: int32(i)})
			k = 1
		case ClassOtherIDOnly:
			stubs = append(stubs, otherStub{rec: g.people.add(p, ""), ehr: int32(i)})
			k = 1
		case ClassAmbiguous:
			rec := g.people.add(p, ids[1].Value)
			stubs = append(stubs, otherStub{rec: rec, ehr: int32(i)}, otherStub{rec: rec, ehr: int32(i), move: true})
			k = 2
		}
		if k > 0 {
			t.OtherRecords, records = records[:0:k], records[k:]
		}
	}
	if err := g.portalUsers(); err != nil {
		return err
	}

	// Other records: drift, shuffle, then emit. Duplicate registrations
	// move (in EHR order) before the Other-only people are drawn.
	for k := range stubs {
		if stubs[k].move {
			p, shared := g.people.get(stubs[k].rec)
			g.moved(&p) // the duplicate registration has an older address
			stubs[k].rec = g.people.add(p, shared)
		}
	}
	for range cfg.Overlap.OtherOnly {
		p := g.newPerson()
		stubs = append(stubs, otherStub{rec: g.people.add(p, g.sharedID.format("", 9)), ehr: -1})
	}
	drift := int(math.Round(cfg.Overlap.DemographicsDrift * float64(pairs)))
	if pairs > 0 {
		pick := g.f.Rand.Perm(pairs)[:drift]
		for _, k := range pick {
			p, shared := g.people.get(stubs[k].rec)
			g.drift(&p)
			stubs[k].rec = g.people.add(p, shared)
			stubs[k].drifted = true
		}
	}
	g.f.Rand.Shuffle(len(stubs), func(i, j int) { stubs[i], stubs[j] = stubs[j], stubs[i] })

	g.otherInfrastructure()
	mrnPrefix := map[string]string{KindImaging: "IMG", KindLab: "LAB", KindRegionalRecord: "RR"}[cfg.Other.Kind]
	g.sum.OtherOnly = make([]string, 0, cfg.Overlap.OtherOnly)
	ids := make([]Identifier, 0, 2)
	for k := range stubs {
		if err := g.stopped(); err != nil {
			return err
		}
		s := &stubs[k]
		p, shared := g.people.get(s.rec)
		id := g.newID("other", "Patient")
		ids = append(ids[:0], Identifier{System: cfg.Other.MRNSystem, Value: g.otherMRN.format(mrnPrefix, 8)})
		if shared != "" {
			ids = append(ids, Identifier{System: cfg.SharedSystem, Value: shared})
		}
		g.other.add("Patient", id, patientJSON(p, ids, cfg.Other.MRNSystem, g.otherOrg, ""))
		g.otherClinical(id, p.birth)
		ehr, drifted := s.ehr, s.drifted
		if ehr < 0 {
			g.sum.OtherOnly = append(g.sum.OtherOnly, id)
			continue
		}
		t := &g.sum.Truth[ehr]
		t.OtherRecords = append(t.OtherRecords, id)
		if t.Class == ClassShared {
			t.OtherID = id
		}
		if drifted {
			t.Drifted = append(t.Drifted, id)
		}
	}
	g.people = packedPeople{} // all written: the chunks can go
	return nil
}

// sink collects one side's resources. Full batches go to a pool of encoder
// goroutines while generation carries on, and to the side's delivery
// goroutine, which hands them to the consumer in the order of the add
// calls once encoded, so concurrency never changes the output. At most
// queueBatches batches wait for delivery: a slow consumer holds the
// generation back instead of letting memory grow. Bodies must not be
// touched after add; an obj shared between bodies must have at most one
// member or be sorted already (the encoder sorts members in place and
// writes only when they are out of order).
type sink struct {
	side   string
	counts map[string]int
	pend   []pending
	enc    *encoderPool
	queue  chan *batch
	done   chan struct{} // closed when the delivery goroutine ends
	err    atomic.Pointer[error]
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

const (
	batchSize    = 2048
	queueBatches = 4
)

func newSink(side string, counts map[string]int, enc *encoderPool, emit Emit) *sink {
	s := &sink{side: side, counts: counts, enc: enc, queue: make(chan *batch, queueBatches), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for b := range s.queue {
			<-b.done
			if s.err.Load() != nil {
				continue // drain: the generation is stopping
			}
			if err := emit(s.side, b.res); err != nil {
				s.err.Store(&err)
			}
		}
	}()
	return s
}

// failure is the consumer's error, if any.
func (s *sink) failure() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

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
	s.enc.jobs <- b
	s.queue <- b
}

// finish hands over the last batch and waits until every batch has been
// delivered (or dropped after a consumer error).
func (s *sink) finish() {
	s.flush()
	close(s.queue)
	<-s.done
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
		g.sum.Users = append(g.sum.Users, User{Username: c.Username, Password: c.Password, FHIRUser: "Practitioner/" + id, Kind: UserClinician})
	}
	for range 3 {
		g.staff = append(g.staff, g.practitioner(g.ehr, "ehr", g.f.FirstName(), g.f.LastName()))
	}
	return nil
}

func (g *generator) portalUsers() error {
	linked := map[string]bool{}
	for _, u := range g.sum.Users {
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
			for _, t := range g.sum.Truth {
				if t.EHRID == u.Patient {
					id = t.EHRID
				}
			}
			if id == "" {
				return fmt.Errorf("portal user %q: no EHR patient %q", u.Username, u.Patient)
			}
		} else {
			for _, t := range g.sum.Truth {
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
		g.sum.Users = append(g.sum.Users, User{Username: u.Username, Password: u.Password, FHIRUser: "Patient/" + id, Kind: UserPatient})
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
