package synth

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPackedPeopleRoundTrip: every person the generator makes, and people
// at the edges of the encoding, come back from the packing unchanged, with
// the shared identifier's value beside them, across chunk boundaries.
func TestPackedPeopleRoundTrip(t *testing.T) {
	cfg := testConfig(KindImaging)
	g := newGenerator(cfg, func(string, []Resource) error { return nil })
	defer g.enc.close()

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

	var pp packedPeople
	refs := make([]packedRef, len(want))
	for i, e := range want {
		refs[i] = pp.add(e.p, e.shared)
	}
	// Enough people to fill several chunks, so that refs cross chunk
	// boundaries.
	for len(pp.chunks) < 3 {
		pp.add(want[0].p, want[0].shared)
	}
	for i, e := range want {
		p, shared := pp.get(refs[i])
		if !reflect.DeepEqual(p, e.p) || !p.birth.Equal(e.p.birth) || p.birth.Location() != e.p.birth.Location() || shared != e.shared {
			t.Fatalf("person %d: got %+v, %q; want %+v, %q", i, p, shared, e.p, e.shared)
		}
	}
	if pp.chunks[0] == nil || len(pp.chunks[0]) > packedChunkSize {
		t.Fatalf("first chunk holds %d bytes, want at most %d", len(pp.chunks[0]), packedChunkSize)
	}
}
