package netmap

import "math/bits"

// bitset is a growable set of small non-negative integers.
type bitset []uint64

func (b *bitset) set(i int32) {
	w := int(i) >> 6
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	(*b)[w] |= 1 << (uint(i) & 63)
}

func (b *bitset) clear(i int32) {
	w := int(i) >> 6
	if w < len(*b) {
		(*b)[w] &^= 1 << (uint(i) & 63)
	}
}

func (b bitset) has(i int32) bool {
	w := int(i) >> 6
	return w < len(b) && b[w]&(1<<(uint(i)&63)) != 0
}

// each calls f for every member in increasing order.
func (b bitset) each(f func(int32)) {
	for w, word := range b {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			f(int32(w<<6 + t))
			word &= word - 1
		}
	}
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}
