package synth

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPackedPeopleRoundTrip: people the generator makes, and people at the
// edges of the encoding, come back from the packing unchanged, with the
// shared identifier's value beside them, in every chunk.
func TestPackedPeopleRoundTrip(t *testing.T) {
	cfg := testConfig(KindImaging)
	g := newGenerator(cfg, func(string, []Resource) error { return nil })
	defer func() {
		g.ehr.finish()
		g.other.finish()
		g.enc.close()
	}()

	type entry struct {
		p      person
		shared string
	}
	var want []entry
	for i := range 3000 {
		p := g.newPerson()
		if i%7 == 0 {
			g.drift(&p)
		}
		shared := ""
		if i%3 != 0 {
			shared = g.sharedID.format("", 9)
		}
		want = append(want, entry{p, shared})
	}
	long := strings.Repeat("Ö", 400) // longer than add's stack buffer
	want = append(want,
		entry{person{given: []string{}, birth: time.Date(1850, 2, 3, 4, 5, 6, 7, time.UTC)}, ""},
		entry{person{given: []string{long, "", "José"}, family: long, gender: "unknown", line: "1 Main St",
			city: "Zürich", state: "", zip: "0", phone: "(555) 010-0000", email: "a@b", maritalMarried: true,
			birth: time.Date(2300, 12, 31, 23, 59, 59, 999_999_999, time.UTC)}, long},
	)

	// Enough people to fill several chunks, read back in any order: refs
	// in later chunks, some at offset 0, must find their own person.
	var pp packedPeople
	var refs []packedRef
	for i := 0; len(pp.chunks) < 3; i++ {
		e := want[i%len(want)]
		refs = append(refs, pp.add(e.p, e.shared))
	}
	startsAChunk := 0
	for i := len(refs) - 1; i >= 0; i-- {
		e := want[i%len(want)]
		p, shared := pp.get(refs[i])
		if !reflect.DeepEqual(p, e.p) || !p.birth.Equal(e.p.birth) || p.birth.Location() != e.p.birth.Location() || shared != e.shared {
			t.Fatalf("person %d (%+v): got %+v, %q; want %+v, %q", i, refs[i], p, shared, e.p, e.shared)
		}
		if refs[i].chunk > 0 && refs[i].off == 0 {
			startsAChunk++
		}
	}
	if startsAChunk != len(pp.chunks)-1 {
		t.Errorf("%d people start a chunk after the first, want %d", startsAChunk, len(pp.chunks)-1)
	}
	for i, c := range pp.chunks {
		if len(c) > packedChunkSize {
			t.Errorf("chunk %d holds %d bytes, more than %d", i, len(c), packedChunkSize)
		}
	}
}
