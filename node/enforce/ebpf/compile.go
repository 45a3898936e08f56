package ebpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

// Limits of one rule set; they match the map sizes in bpf/latch.c.
const (
	MaxRanges     = 16      // port ranges per rule and protocol
	MaxWorkloads  = 4096    // local workloads
	MaxIdentities = 1 << 18 // identity entries
	MaxRules      = 1 << 18 // Any and identity entries (rules map)
	MaxCIDRs      = 1 << 18 // CIDR entries (one per prefix and protocol)
	MaxCgroups    = 4096    // workload cgroups (cgroups map)
	MaxSiteCIDRs  = 4096    // site prefixes (sites map)
)

// ErrTooLarge is wrapped by Compile when a view does not fit the maps.
var ErrTooLarge = errors.New("view does not fit the eBPF maps")

// IP protocol numbers.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// protocols are the protocols rules name, in map order.
var protocols = [...]struct {
	name inventory.Protocol
	num  uint8
}{{inventory.TCP, protoTCP}, {inventory.UDP, protoUDP}, {inventory.SCTP, protoSCTP}}

func protoNumber(p inventory.Protocol) (uint8, bool) {
	for _, q := range protocols {
		if q.name == p {
			return q.num, true
		}
	}
	return 0, false
}

// PortRange is an inclusive range of destination ports.
type PortRange struct{ First, Last uint16 }

// PortSet is the value of a rules or CIDR entry: up to MaxRanges sorted,
// disjoint, non-adjacent ranges of one protocol.
type PortSet struct {
	N      uint32
	Ranges [MaxRanges]PortRange
}

// Contains reports whether port is in the set.
func (s *PortSet) Contains(port uint16) bool {
	for i := uint32(0); i < s.N && i < MaxRanges; i++ {
		if s.Ranges[i].First <= port && port <= s.Ranges[i].Last {
			return true
		}
	}
	return false
}

// Workload is an entry of the workloads map (keyed by Addr).
type Workload struct {
	Name     string
	Addr     view.Addr
	Index    uint32
	Identity view.Identity
	AllowAll [2]bool // by kernelDir: ingress, egress
	Monitor  bool    // monitor mode: denied packets pass as would-deny
}

// Site is an entry of the sites LPM map: the rules of the site Name for
// the local addresses in Prefix (a gateway's site hosts). A site's entries
// share one Index, numbered after the workloads', into the rules and
// CIDRs; site hosts have no identity.
type Site struct {
	Name     string
	Prefix   view.Prefix // masked
	Index    uint32
	AllowAll [2]bool // by kernelDir: ingress, egress
	Monitor  bool
}

// IdentityEntry is an entry of the identities map: Addr/32 → Identity.
type IdentityEntry struct {
	Addr     view.Addr
	Identity view.Identity
}

// Rule is an entry of the rules map. Identity 0 (IdentityUnknown, which
// never matches an identity rule) holds the workload's Any ranges.
type Rule struct {
	Workload uint32
	Identity view.Identity
	Dir      enforce.Direction
	Proto    uint8
	Ports    PortSet
}

// CIDR is an entry of the CIDR LPM map. Every CIDR rule has an entry for
// each protocol, with an empty port set where it allows none: the longest
// prefix then shadows shorter ones for every protocol, as in Rules.Allows.
type CIDR struct {
	Workload uint32
	Dir      enforce.Direction
	Proto    uint8
	Prefix   view.Prefix // masked
	Ports    PortSet
}

// Tables are the entries of one rule set, computed from a view.
type Tables struct {
	Workloads  []Workload // by Index
	Sites      []Site     // by Index, after the workloads'; one per prefix
	Identities []IdentityEntry
	Rules      []Rule
	CIDRs      []CIDR
}

// Names returns the workload names by index, then the site names
// ("namespace/name") by theirs.
func (t *Tables) Names() []string {
	n := make([]string, len(t.Workloads))
	for i, w := range t.Workloads {
		n[i] = w.Name
	}
	for _, s := range t.Sites {
		for int(s.Index) >= len(n) {
			n = append(n, "")
		}
		n[s.Index] = s.Name
	}
	return n
}

// Compile computes the map entries for v. It touches nothing; errors say
// which workload and rule do not fit.
func Compile(v *view.View) (*Tables, error) {
	t := &Tables{}
	if len(v.Workloads) > MaxWorkloads {
		return nil, fmt.Errorf("%w: %d local workloads, at most %d", ErrTooLarge, len(v.Workloads), MaxWorkloads)
	}
	seenAddr := make(map[view.Addr]string, len(v.Workloads))
	for i := range v.Workloads {
		w := &v.Workloads[i]
		if other, dup := seenAddr[w.IP]; dup {
			return nil, fmt.Errorf("workloads %s and %s share the address %s", other, w.Workload, w.IP)
		}
		seenAddr[w.IP] = w.Workload
		idx := uint32(i)
		t.Workloads = append(t.Workloads, Workload{
			Name: w.Workload, Addr: w.IP, Index: idx, Identity: w.Identity,
			AllowAll: [2]bool{w.Ingress.AllowAll, w.Egress.AllowAll},
			Monitor:  w.Monitor,
		})
		for _, d := range []struct {
			dir enforce.Direction
			r   *view.Rules
		}{{enforce.Ingress, &w.Ingress}, {enforce.Egress, &w.Egress}} {
			if d.r.AllowAll {
				continue // nothing else is consulted
			}
			if err := t.addRules(idx, d.dir, d.r); err != nil {
				return nil, fmt.Errorf("workload %s %s: %w", w.Workload, d.dir, err)
			}
		}
	}

	// Sites: their indexes follow the workloads'. A prefix claimed twice
	// would make the site of its hosts ambiguous.
	nPrefixes := 0
	for i := range v.Sites {
		nPrefixes += len(v.Sites[i].CIDRs)
	}
	if nPrefixes > MaxSiteCIDRs {
		return nil, fmt.Errorf("%w: %d site prefixes, at most %d", ErrTooLarge, nPrefixes, MaxSiteCIDRs)
	}
	seenPrefix := make(map[view.Prefix]string, nPrefixes)
	for i := range v.Sites {
		s := &v.Sites[i]
		idx := uint32(len(v.Workloads) + i)
		for _, c := range s.CIDRs {
			p := maskPrefix(c)
			if other, dup := seenPrefix[p]; dup {
				return nil, fmt.Errorf("sites %s and %s both claim the prefix %s", other, s.Site, p)
			}
			seenPrefix[p] = s.Site
			t.Sites = append(t.Sites, Site{Name: s.Site, Prefix: p, Index: idx,
				AllowAll: [2]bool{s.Ingress.AllowAll, s.Egress.AllowAll}, Monitor: s.Monitor})
		}
		if len(s.CIDRs) == 0 {
			continue // no host to decide for
		}
		for _, d := range []struct {
			dir enforce.Direction
			r   *view.Rules
		}{{enforce.Ingress, &s.Ingress}, {enforce.Egress, &s.Egress}} {
			if d.r.AllowAll {
				continue
			}
			if err := t.addRules(idx, d.dir, d.r); err != nil {
				return nil, fmt.Errorf("site %s %s: %w", s.Site, d.dir, err)
			}
		}
	}

	seenID := make(map[view.Addr]view.Identity, len(v.Identities))
	for _, e := range v.Identities {
		if id, dup := seenID[e.IP]; dup {
			if id != e.Identity {
				return nil, fmt.Errorf("address %s has two identities, %d and %d", e.IP, id, e.Identity)
			}
			continue
		}
		seenID[e.IP] = e.Identity
		if e.Identity == view.IdentityUnknown {
			continue // a miss means unknown
		}
		t.Identities = append(t.Identities, IdentityEntry{Addr: e.IP, Identity: e.Identity})
	}

	switch {
	case len(t.Identities) > MaxIdentities:
		return nil, fmt.Errorf("%w: %d identities, at most %d", ErrTooLarge, len(t.Identities), MaxIdentities)
	case len(t.Rules) > MaxRules:
		return nil, fmt.Errorf("%w: %d port/identity rules, at most %d", ErrTooLarge, len(t.Rules), MaxRules)
	case len(t.CIDRs) > MaxCIDRs:
		return nil, fmt.Errorf("%w: %d CIDR entries (prefixes × 3 protocols), at most %d", ErrTooLarge, len(t.CIDRs), MaxCIDRs)
	}
	return t, nil
}

func (t *Tables) addRules(w uint32, dir enforce.Direction, r *view.Rules) error {
	sets, err := portSets(r.Any)
	if err != nil {
		return fmt.Errorf("any: %w", err)
	}
	for i, s := range sets {
		if s.N > 0 {
			t.Rules = append(t.Rules, Rule{Workload: w, Dir: dir, Proto: protocols[i].num, Ports: s})
		}
	}

	// Rules.Allows uses the first rule of an identity and never matches
	// identity 0.
	seen := make(map[view.Identity]bool, len(r.Identities))
	for _, ir := range r.Identities {
		if ir.Identity == view.IdentityUnknown || seen[ir.Identity] {
			continue
		}
		seen[ir.Identity] = true
		sets, err := portSets(ir.Ports)
		if err != nil {
			return fmt.Errorf("identity %d: %w", ir.Identity, err)
		}
		for i, s := range sets {
			if s.N > 0 {
				t.Rules = append(t.Rules, Rule{Workload: w, Identity: ir.Identity, Dir: dir, Proto: protocols[i].num, Ports: s})
			}
		}
	}

	// Among prefixes of one length containing an address, Rules.Allows
	// takes the first; such prefixes are equal once masked.
	seenP := make(map[view.Prefix]bool, len(r.CIDRs))
	for _, cr := range r.CIDRs {
		p := maskPrefix(cr.Prefix)
		if seenP[p] {
			continue
		}
		seenP[p] = true
		sets, err := portSets(cr.Ports)
		if err != nil {
			return fmt.Errorf("cidr %s: %w", cr.Prefix, err)
		}
		for i, s := range sets {
			t.CIDRs = append(t.CIDRs, CIDR{Workload: w, Dir: dir, Proto: protocols[i].num, Prefix: p, Ports: s})
		}
	}
	return nil
}

// portSets merges ranges per protocol (index as in protocols). Empty ranges
// (First > Last) match nothing and are dropped.
func portSets(rs []view.PortRange) ([len(protocols)]PortSet, error) {
	var out [len(protocols)]PortSet
	var by [len(protocols)][]PortRange
	for _, r := range rs {
		if _, ok := protoNumber(r.Protocol); !ok {
			return out, fmt.Errorf("unknown protocol %q", r.Protocol)
		}
		if r.First > r.Last {
			continue
		}
		for i, q := range protocols {
			if q.name == r.Protocol {
				by[i] = append(by[i], PortRange{r.First, r.Last})
			}
		}
	}
	for i, ranges := range by {
		merged := mergeRanges(ranges)
		if len(merged) > MaxRanges {
			return out, fmt.Errorf("%w: %d disjoint %s port ranges, at most %d per rule: widen or merge the ports in the policy",
				ErrTooLarge, len(merged), protocols[i].name, MaxRanges)
		}
		out[i].N = uint32(len(merged))
		copy(out[i].Ranges[:], merged)
	}
	return out, nil
}

func mergeRanges(rs []PortRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.First) - int(b.First) })
	out := []PortRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint32(r.First) <= uint32(last.Last)+1 {
			last.Last = max(last.Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

func maskPrefix(p view.Prefix) view.Prefix {
	if p.Bits > 32 {
		p.Bits = 32
	}
	var m uint32
	if p.Bits > 0 {
		m = ^uint32(0) << (32 - uint32(p.Bits))
	}
	a := p.Addr.Uint32() & m
	return view.Prefix{Addr: view.Addr{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}, Bits: p.Bits}
}
