package view

import (
	"fmt"
	"net/netip"
)

// Addr is an IPv4 overlay address (the overlay is 100.64.0.0/10). It is
// four bytes with no pointers, so a view of hundreds of thousands of
// entries costs the garbage collector nothing to scan.
type Addr [4]byte

// AddrFrom converts a netip address; ok is false unless it is IPv4.
func AddrFrom(a netip.Addr) (Addr, bool) {
	a = a.Unmap()
	if !a.Is4() {
		return Addr{}, false
	}
	return Addr(a.As4()), true
}

// MustAddr parses an IPv4 address and panics on error; for tests and
// constants.
func MustAddr(s string) Addr {
	a, ok := AddrFrom(netip.MustParseAddr(s))
	if !ok {
		panic(fmt.Sprintf("view: %s is not an IPv4 address", s))
	}
	return a
}

// Netip returns the address as a netip.Addr.
func (a Addr) Netip() netip.Addr { return netip.AddrFrom4(a) }

func (a Addr) String() string { return a.Netip().String() }

// Uint32 returns the address as a big-endian integer.
func (a Addr) Uint32() uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// Compare orders addresses numerically.
func (a Addr) Compare(b Addr) int {
	x, y := a.Uint32(), b.Uint32()
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// MarshalText writes the dotted-quad form.
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads the dotted-quad form.
func (a *Addr) UnmarshalText(b []byte) error {
	n, err := netip.ParseAddr(string(b))
	if err != nil {
		return err
	}
	v, ok := AddrFrom(n)
	if !ok {
		return fmt.Errorf("%s is not an IPv4 address", b)
	}
	*a = v
	return nil
}

// Prefix is an IPv4 prefix, pointer-free like Addr.
type Prefix struct {
	Addr Addr
	Bits uint8
}

// PrefixFrom converts a netip prefix; ok is false unless it is IPv4.
func PrefixFrom(p netip.Prefix) (Prefix, bool) {
	a, ok := AddrFrom(p.Addr())
	if !ok || p.Bits() < 0 {
		return Prefix{}, false
	}
	return Prefix{Addr: a, Bits: uint8(p.Bits())}, true
}

// HostPrefix is the /32 of a.
func HostPrefix(a Addr) Prefix { return Prefix{Addr: a, Bits: 32} }

// MustPrefix parses an IPv4 prefix and panics on error; for tests.
func MustPrefix(s string) Prefix {
	p, ok := PrefixFrom(netip.MustParsePrefix(s))
	if !ok {
		panic(fmt.Sprintf("view: %s is not an IPv4 prefix", s))
	}
	return p
}

// Netip returns the prefix as a netip.Prefix.
func (p Prefix) Netip() netip.Prefix { return netip.PrefixFrom(p.Addr.Netip(), int(p.Bits)) }

func (p Prefix) String() string { return p.Netip().String() }

// Contains reports whether a is inside p.
func (p Prefix) Contains(a Addr) bool {
	if p.Bits == 0 {
		return true
	}
	mask := ^uint32(0) << (32 - uint32(p.Bits))
	return a.Uint32()&mask == p.Addr.Uint32()&mask
}

// MarshalText writes address/bits.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads address/bits.
func (p *Prefix) UnmarshalText(b []byte) error {
	n, err := netip.ParsePrefix(string(b))
	if err != nil {
		return err
	}
	v, ok := PrefixFrom(n)
	if !ok {
		return fmt.Errorf("%s is not an IPv4 prefix", b)
	}
	*p = v
	return nil
}
