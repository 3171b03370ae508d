package synth

import (
	"hash/fnv"
	"strconv"
)

const idBits = 50

// idMaker hands out ids for one resource type on one side: a short prefix and
// ten base-32 characters from a keyed permutation of a counter. The
// permutation is a bijection on 50 bits, so ids never collide (up to 2^50 per
// type) and their order reveals nothing about generation order or class.
type idMaker struct {
	prefix string
	key    uint64
	mul    uint64
	n      uint64
}

func newIDMaker(seed int64, side, typ, prefix string) *idMaker {
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatInt(seed, 10)))
	h.Write([]byte{0})
	h.Write([]byte(side))
	h.Write([]byte{0})
	h.Write([]byte(typ))
	k := h.Sum64()
	return &idMaker{prefix: prefix, key: k & (1<<idBits - 1), mul: (k>>idBits)<<1 | 0x9E3779B97F4A7C15&(1<<idBits-1) | 1}
}

const base32Alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

func (m *idMaker) next() string {
	const mask = 1<<idBits - 1
	x := m.n
	m.n++
	// Each step is a bijection on idBits bits.
	x = (x*m.mul + m.key) & mask
	x ^= x >> 23
	x = (x * 0x2545F4914F6CDD1D) & mask
	x ^= x >> 19
	var buf [10]byte
	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = base32Alphabet[x&31]
		x >>= 5
	}
	return m.prefix + "-" + string(buf[:])
}
