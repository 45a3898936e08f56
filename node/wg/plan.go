package wg

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Plan computes the configuration that takes a device whose peers are
// current to the peer set desired, and reports whether anything changes.
//
// The result never replaces the whole peer set: peers missing from desired
// get a Remove entry, new peers get a full entry, and a peer present in both
// gets an UpdateOnly entry carrying only what differs (endpoint; allowed IPs,
// with ReplaceAllowedIPs; keepalive), so its session survives. A peer with
// nothing to change gets no entry. A nil desired Endpoint leaves the current
// endpoint alone (WireGuard cannot unset one). Allowed IPs are compared as
// sets of masked prefixes, so order and duplicates do not matter. When a key
// appears more than once in desired, the last entry wins. Entries are
// ordered removals first, then by public key, so the output is deterministic.
//
// Plan is pure: the result's device-level fields (private key, port,
// ReplacePeers) are left unset.
func Plan(current []wgtypes.Peer, desired []Peer) (cfg wgtypes.Config, changed bool) {
	want := make(map[wgtypes.Key]Peer, len(desired))
	for _, p := range desired {
		want[p.PublicKey] = p
	}
	have := make(map[wgtypes.Key]bool, len(current))

	var out []wgtypes.PeerConfig
	for _, c := range current {
		have[c.PublicKey] = true
		d, ok := want[c.PublicKey]
		if !ok {
			out = append(out, wgtypes.PeerConfig{PublicKey: c.PublicKey, Remove: true})
			continue
		}
		if pc, ok := update(c, d); ok {
			out = append(out, pc)
		}
	}
	for k, d := range want {
		if have[k] {
			continue
		}
		ka := d.PersistentKeepalive
		out = append(out, wgtypes.PeerConfig{
			PublicKey:                   k,
			Endpoint:                    cloneUDPAddr(d.Endpoint),
			PersistentKeepaliveInterval: &ka,
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  ipNets(normalize(d.AllowedIPs)),
		})
	}
	slices.SortFunc(out, func(a, b wgtypes.PeerConfig) int {
		if a.Remove != b.Remove {
			if a.Remove {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.PublicKey[:], b.PublicKey[:])
	})
	return wgtypes.Config{Peers: out}, len(out) > 0
}

// update returns the UpdateOnly entry taking peer c to d, and false when
// there is nothing to change.
func update(c wgtypes.Peer, d Peer) (wgtypes.PeerConfig, bool) {
	pc := wgtypes.PeerConfig{PublicKey: c.PublicKey, UpdateOnly: true}
	changed := false
	if want, ok := addrPort(d.Endpoint); ok {
		if have, ok := addrPort(c.Endpoint); !ok || have != want {
			pc.Endpoint = cloneUDPAddr(d.Endpoint)
			changed = true
		}
	}
	if want := normalize(d.AllowedIPs); !slices.Equal(want, normalize(prefixes(c.AllowedIPs))) {
		pc.ReplaceAllowedIPs = true
		pc.AllowedIPs = ipNets(want)
		changed = true
	}
	if d.PersistentKeepalive != c.PersistentKeepaliveInterval {
		ka := d.PersistentKeepalive
		pc.PersistentKeepaliveInterval = &ka
		changed = true
	}
	return pc, changed
}

// normalize returns the valid prefixes in ps, masked, unmapped, sorted and
// without duplicates.
func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() {
			a = a.Unmap()
			bits = max(bits-96, 0)
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// prefixes converts wgctrl's allowed IPs to prefixes, dropping malformed ones.
func prefixes(ns []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ns))
	for _, n := range ns {
		a, ok := netip.AddrFromSlice(n.IP)
		ones, bits := n.Mask.Size()
		switch {
		case !ok || bits == 0:
			continue
		case bits == 32: // IPv4 mask; the IP may be stored in 16 bytes
			a = a.Unmap()
		case a.Is4In6() && ones >= 96: // IPv4 written with an IPv6 mask
			a, ones = a.Unmap(), ones-96
		}
		if p := netip.PrefixFrom(a, ones); p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, prefixIPNet(p))
	}
	return out
}

func prefixIPNet(p netip.Prefix) net.IPNet {
	return net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

// addrPort returns u as a comparable address, with IPv4-mapped addresses
// unmapped; false when u is nil or has no IP.
func addrPort(u *net.UDPAddr) (netip.AddrPort, bool) {
	if u == nil {
		return netip.AddrPort{}, false
	}
	ap := u.AddrPort()
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

func cloneUDPAddr(u *net.UDPAddr) *net.UDPAddr {
	if u == nil {
		return nil
	}
	c := *u
	c.IP = slices.Clone(u.IP)
	return &c
}
