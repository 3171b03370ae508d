package synth

import (
	"encoding/binary"
	"time"
)

// packedPeople holds the people the generator keeps for Other's records
// while it writes the EHR side (up to a million), packed into large byte
// chunks. A person as a struct of strings is a dozen small objects the
// collector would walk on every cycle; packed, it is a handful of bytes in
// a chunk that holds no pointer, and its handle is a number. Nothing is
// freed one person at a time: a person changed and packed again leaves its
// old bytes behind until the whole is dropped.
type packedPeople struct {
	chunks [][]byte
}

// packedRef is a packed person's place: the chunk and the offset in it.
type packedRef struct {
	chunk, off uint32
}

const packedChunkSize = 4 << 20

// add packs p and the value of the shared identifier it carries ("" for
// none) and returns where they are. The layout: a byte for married, the
// number of given names, the birth's Unix seconds and nanoseconds (varints),
// then the given names, family, gender, line, city, state, zip, phone,
// e-mail and shared value, each as a length and its bytes. p.birth must be
// in UTC (the generator's reference date is): get gives it back in UTC.
// A field added to person must be added here and in get.
func (pp *packedPeople) add(p person, shared string) packedRef {
	var buf [512]byte
	b := buf[:0]
	married := byte(0)
	if p.maritalMarried {
		married = 1
	}
	b = append(b, married)
	b = binary.AppendUvarint(b, uint64(len(p.given)))
	b = binary.AppendVarint(b, p.birth.Unix())
	b = binary.AppendUvarint(b, uint64(p.birth.Nanosecond()))
	for _, s := range p.given {
		b = appendPackedString(b, s)
	}
	for _, s := range [...]string{p.family, p.gender, p.line, p.city, p.state, p.zip, p.phone, p.email, shared} {
		b = appendPackedString(b, s)
	}
	n := len(pp.chunks)
	if n == 0 || len(pp.chunks[n-1])+len(b) > cap(pp.chunks[n-1]) {
		pp.chunks = append(pp.chunks, make([]byte, 0, max(packedChunkSize, len(b))))
		n++
	}
	c := &pp.chunks[n-1]
	ref := packedRef{chunk: uint32(n - 1), off: uint32(len(*c))}
	*c = append(*c, b...)
	return ref
}

// get unpacks what add packed at ref.
func (pp *packedPeople) get(ref packedRef) (p person, shared string) {
	b := pp.chunks[ref.chunk][ref.off:]
	p.maritalMarried = b[0] == 1
	b = b[1:]
	given, n := binary.Uvarint(b)
	b = b[n:]
	sec, n := binary.Varint(b)
	b = b[n:]
	nsec, n := binary.Uvarint(b)
	b = b[n:]
	p.birth = time.Unix(sec, int64(nsec)).UTC()
	p.given = make([]string, given)
	for i := range p.given {
		p.given[i], b = packedString(b)
	}
	p.family, b = packedString(b)
	p.gender, b = packedString(b)
	p.line, b = packedString(b)
	p.city, b = packedString(b)
	p.state, b = packedString(b)
	p.zip, b = packedString(b)
	p.phone, b = packedString(b)
	p.email, b = packedString(b)
	shared, _ = packedString(b)
	return p, shared
}

func appendPackedString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func packedString(b []byte) (string, []byte) {
	l, n := binary.Uvarint(b)
	b = b[n:]
	return string(b[:l]), b[l:]
}
