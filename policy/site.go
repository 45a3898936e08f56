package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/latchnet/latch/inventory"
)

// Sites. A site's hosts are decided exactly like workloads: the host at
// address a of site s is the workload s.Host(a) (the site's namespace,
// labels and ports, IP a), so podSelector, namespaceSelector and ipBlock
// all select it with Kubernetes semantics. A verdict depends on the
// address only through ipBlock cidrs and excepts; the evaluator therefore
// cuts a site's prefixes at every ipBlock boundary into pieces on which
// every address has the same verdict, decides one address per piece, and
// merges the allowed pieces into the minimal prefix set.

// AddrRange is a set of allowed flows between address sets: every
// address of From may reach every address of To.
type AddrRange struct {
	From []netip.Prefix `json:"from"`
	To   []netip.Prefix `json:"to"`
}

// Endpoint is one side of a flow: a workload, or the hosts of a site
// (Site set; CIDRs, when not nil, narrows it to those prefixes, each
// inside the site).
type Endpoint struct {
	Workload *inventory.Workload
	Site     *inventory.Site
	CIDRs    []netip.Prefix
}

// Key names the endpoint: namespace/name, and @prefixes for a narrowed
// site.
func (ep Endpoint) Key() string {
	if ep.Site == nil {
		return ep.Workload.Key()
	}
	if ep.CIDRs == nil {
		return ep.Site.Key()
	}
	parts := make([]string, len(ep.CIDRs))
	for i, p := range ep.CIDRs {
		parts[i] = p.String()
		if p.IsSingleIP() {
			parts[i] = p.Addr().String()
		}
	}
	return ep.Site.Key() + "@" + strings.Join(parts, ",")
}

func (ep Endpoint) prefixes() []netip.Prefix {
	if ep.Site == nil {
		return []netip.Prefix{netip.PrefixFrom(ep.Workload.IP, ep.Workload.IP.BitLen())}
	}
	if ep.CIDRs != nil {
		return ep.CIDRs
	}
	return ep.Site.CIDRs
}

func (ep Endpoint) at(addr netip.Addr) inventory.Workload {
	if ep.Site == nil {
		return *ep.Workload
	}
	return ep.Site.Host(addr)
}

// RangeVerdict is the decision for the flows between two endpoints on
// one protocol and port.
type RangeVerdict struct {
	// Full is true when every address pair is allowed.
	Full bool `json:"full"`
	// Allowed are the allowed address pairs, minimal prefix sets in
	// address order; empty when nothing is allowed.
	Allowed []AddrRange `json:"allowed,omitempty"`
}

// Any reports whether some address pair is allowed.
func (v RangeVerdict) Any() bool { return len(v.Allowed) > 0 }

// uniform cuts p into pieces on which no ipBlock boundary of the
// evaluator's policies falls, appending them to out in address order.
// Sites are IPv4 (inventory.Validate); an IPv6 prefix is decided whole.
func (e *Evaluator) uniform(p netip.Prefix, out []netip.Prefix) []netip.Prefix {
	if !p.Addr().Is4() {
		return append(out, p)
	}
	for _, c := range e.cuts {
		if c.Bits() > p.Bits() && p.Contains(c.Addr()) {
			lo, hi := halves(p)
			return e.uniform(hi, e.uniform(lo, out))
		}
	}
	return append(out, p)
}

// halves splits an IPv4 prefix of fewer than 32 bits into its two halves.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	a := p.Addr().As4()
	u := binary.BigEndian.Uint32(a[:]) | 1<<(31-p.Bits())
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.PrefixFrom(p.Addr(), p.Bits()+1), netip.PrefixFrom(netip.AddrFrom4(b), p.Bits()+1)
}

func (e *Evaluator) pieces(ep Endpoint) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ep.prefixes() {
		out = e.uniform(p.Masked(), out)
	}
	return out
}

// DecideRange decides every flow from one endpoint to another on a
// protocol and destination port, address by address, and returns the
// allowed address pairs. For a workload and a single site address it
// agrees with Decide.
func (e *Evaluator) DecideRange(from, to Endpoint, proto inventory.Protocol, port uint16) RangeVerdict {
	fromPieces, toPieces := e.pieces(from), e.pieces(to)
	full := true
	type group struct {
		from []netip.Prefix
		to   []netip.Prefix
	}
	groups := map[string]*group{}
	var order []string
	for _, fp := range fromPieces {
		src := from.at(fp.Addr())
		var allowed []netip.Prefix
		for _, tp := range toPieces {
			dst := to.at(tp.Addr())
			if e.Decide(&src, &dst, proto, port).Allowed {
				allowed = append(allowed, tp)
			} else {
				full = false
			}
		}
		if len(allowed) == 0 {
			continue
		}
		allowed = AggregatePrefixes(allowed)
		k := fmt.Sprint(allowed)
		g := groups[k]
		if g == nil {
			g = &group{to: allowed}
			groups[k] = g
			order = append(order, k)
		}
		g.from = append(g.from, fp)
	}
	var v RangeVerdict
	for _, k := range order {
		g := groups[k]
		v.Allowed = append(v.Allowed, AddrRange{From: AggregatePrefixes(g.from), To: g.to})
	}
	sort.SliceStable(v.Allowed, func(i, j int) bool {
		return v.Allowed[i].From[0].Addr().Less(v.Allowed[j].From[0].Addr())
	})
	v.Full = full && len(v.Allowed) > 0
	return v
}

// AllowedSiteCIDRs is the exact set of the site's addresses that may
// exchange the flow with workload w: with toSite, the destinations w may
// reach on proto/port; otherwise the sources that may reach w on
// proto/port. The prefixes have every ipBlock except cut out, are minimal
// and in address order; they are what a node's AllowedIPs for the site
// must hold for this flow.
func (e *Evaluator) AllowedSiteCIDRs(w *inventory.Workload, s *inventory.Site, toSite bool, proto inventory.Protocol, port uint16) []netip.Prefix {
	we, se := Endpoint{Workload: w}, Endpoint{Site: s}
	var v RangeVerdict
	if toSite {
		v = e.DecideRange(we, se, proto, port)
	} else {
		v = e.DecideRange(se, we, proto, port)
	}
	var out []netip.Prefix
	for _, r := range v.Allowed {
		if toSite {
			out = append(out, r.To...)
		} else {
			out = append(out, r.From...)
		}
	}
	return AggregatePrefixes(out)
}

// AggregatePrefixes returns the minimal set of prefixes that covers
// exactly the addresses of ps, in address order. The input is not
// changed.
func AggregatePrefixes(ps []netip.Prefix) []netip.Prefix {
	in := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		in[i] = p.Masked()
	}
	inventory.SortPrefixes(in)
	var out []netip.Prefix
	for _, p := range in {
		if n := len(out); n > 0 && out[n-1].Contains(p.Addr()) && out[n-1].Bits() <= p.Bits() {
			continue
		}
		out = append(out, p)
		for len(out) >= 2 {
			a, b := out[len(out)-2], out[len(out)-1]
			if a.Bits() != b.Bits() || a.Bits() == 0 || a == b {
				break
			}
			pa := netip.PrefixFrom(a.Addr(), a.Bits()-1).Masked()
			if pa != netip.PrefixFrom(b.Addr(), b.Bits()-1).Masked() {
				break
			}
			out = append(out[:len(out)-2], pa)
		}
	}
	return out
}

// SiteResult is one row of a truth table in which the source or the
// destination is a site.
type SiteResult struct {
	From     string             `json:"from"`
	To       string             `json:"to"`
	Port     uint16             `json:"port"`
	Protocol inventory.Protocol `json:"protocol"`
	PortName string             `json:"portName,omitempty"`
	// Verdict is "allow" (every address pair), "partial" or "deny".
	Verdict string `json:"verdict"`
	// Allowed are the allowed address pairs (see RangeVerdict).
	Allowed []AddrRange `json:"allowed,omitempty"`
}

// The verdicts of a SiteResult.
const (
	SiteAllow   = "allow"
	SitePartial = "partial"
	SiteDeny    = "deny"
)

// SiteTable evaluates every ordered pair of distinct endpoints of ws and
// sites of which at least one is a site, on every port the destination
// declares, sorted by from, to, protocol, port. Flows inside one site do
// not cross a gateway and are not listed.
func (e *Evaluator) SiteTable(ws []inventory.Workload, sites []inventory.Site) []SiteResult {
	var eps []Endpoint
	for i := range ws {
		eps = append(eps, Endpoint{Workload: &ws[i]})
	}
	for i := range sites {
		eps = append(eps, Endpoint{Site: &sites[i]})
	}
	var out []SiteResult
	for i, from := range eps {
		for j, to := range eps {
			if i == j || (from.Site == nil && to.Site == nil) {
				continue
			}
			ports := to.at(netip.Addr{}).Ports
			for _, p := range ports {
				v := e.DecideRange(from, to, p.Protocol, p.Port)
				r := SiteResult{From: from.Key(), To: to.Key(), Port: p.Port, Protocol: p.Protocol, PortName: p.Name,
					Verdict: SiteDeny, Allowed: v.Allowed}
				switch {
				case v.Full:
					r.Verdict = SiteAllow
				case v.Any():
					r.Verdict = SitePartial
				}
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.Port < b.Port
	})
	return out
}

// ErrNoEndpoint is wrapped by the errors of ResolveEndpoint.
var ErrNoEndpoint = errors.New("no such workload, node or site")

// ResolveEndpoint finds what key names among ws and sites:
// "namespace/name" (a workload, node or site), "namespace/site@ADDR" or
// "namespace/site@PREFIX" (part of a site), or a bare site address.
func ResolveEndpoint(ws []inventory.Workload, sites []inventory.Site, key string) (Endpoint, error) {
	if a, err := netip.ParseAddr(key); err == nil {
		for i := range sites {
			if sites[i].Contains(a) {
				return Endpoint{Site: &sites[i], CIDRs: []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}}, nil
			}
		}
		return Endpoint{}, fmt.Errorf("%q: %w: the address is in no site; give a site address or NAMESPACE/NAME", key, ErrNoEndpoint)
	}
	name, part, narrowed := strings.Cut(key, "@")
	if !narrowed {
		for i := range ws {
			if ws[i].Key() == key {
				return Endpoint{Workload: &ws[i]}, nil
			}
		}
	}
	for i := range sites {
		s := &sites[i]
		if s.Key() != name {
			continue
		}
		if !narrowed {
			return Endpoint{Site: s}, nil
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return Endpoint{}, fmt.Errorf("%q: %q is neither an address nor a prefix: give NAMESPACE/SITE@198.19.1.5 or @198.19.1.0/25", key, part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		inside := false
		for _, c := range s.CIDRs {
			if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
				inside = true
			}
		}
		if !inside || p != p.Masked() {
			return Endpoint{}, fmt.Errorf("%q: %s is not a network inside site %s (%v)", key, p, s.Key(), s.CIDRs)
		}
		return Endpoint{Site: s, CIDRs: []netip.Prefix{p}}, nil
	}
	return Endpoint{}, fmt.Errorf("%q: %w; give it as NAMESPACE/NAME, NAMESPACE/SITE@ADDRESS or a site address", key, ErrNoEndpoint)
}

// SiteAnswer is WhatIfSites' answer.
type SiteAnswer struct {
	RangeVerdict
	// Verdict, with the sides and policies, is set when both ends are
	// single addresses (a workload or one site address).
	Verdict *Verdict `json:"verdict,omitempty"`
}

// WhatIfSites is WhatIf over workloads and sites: from and to are keys
// that ResolveEndpoint reads. The answer holds the allowed address pairs
// and, when both ends are single addresses, the verdict with its
// policies.
func (e *Evaluator) WhatIfSites(ws []inventory.Workload, sites []inventory.Site, from, to string, proto inventory.Protocol, port uint16) (SiteAnswer, error) {
	src, err := ResolveEndpoint(ws, sites, from)
	if err != nil {
		return SiteAnswer{}, fmt.Errorf("source %w", err)
	}
	dst, err := ResolveEndpoint(ws, sites, to)
	if err != nil {
		return SiteAnswer{}, fmt.Errorf("destination %w", err)
	}
	a := SiteAnswer{RangeVerdict: e.DecideRange(src, dst, proto, port)}
	sp, dp := src.prefixes(), dst.prefixes()
	if len(sp) == 1 && sp[0].IsSingleIP() && len(dp) == 1 && dp[0].IsSingleIP() {
		s, d := src.at(sp[0].Addr()), dst.at(dp[0].Addr())
		v := e.Decide(&s, &d, proto, port)
		a.Verdict = &v
	}
	return a, nil
}
