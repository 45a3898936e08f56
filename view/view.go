// Package view defines a node's view of the overlay: the peers it may talk
// to, with AllowedIPs narrowed to the addresses involved, the numeric
// identities of those addresses, and the rule tables of the node's own
// workloads in the form an enforcer loads directly.
//
// It holds only data types. The coordinator computes views (package
// netmap) and streams them; the node agent and the enforcers read them.
// Anything may import it.
package view

import (
	"net/netip"

	"github.com/latchnet/latch/inventory"
)

// Identity is a numeric security identity. Workloads with the same
// namespace, labels and declared ports share one. Identities below
// FirstIdentity are reserved.
type Identity uint32

// Reserved identities.
const (
	// IdentityUnknown is the identity of an address that is not in the view
	// (an address outside the overlay, for example a site host).
	IdentityUnknown Identity = 0
	// FirstIdentity is the first identity given to workloads.
	FirstIdentity Identity = 256
)

// View is what one node is told. It names no node, key or address beyond
// those the node may exchange traffic with.
type View struct {
	Node    string `json:"node"`
	Version uint64 `json:"version"`
	// Peers are the nodes hosting at least one workload with an allowed
	// flow to or from a workload of this node, sorted by name, and the
	// gateways carrying (or standing by to carry) site addresses such a
	// flow reaches; a standby gateway has no AllowedIPs until it takes
	// over.
	Peers []Peer `json:"peers,omitempty"`
	// Identities maps the addresses of this node's workloads and of every
	// remote workload it may exchange traffic with to their identities,
	// sorted by address.
	Identities []IdentityEntry `json:"identities,omitempty"`
	// Workloads are the rule tables of this node's own workloads (the node
	// itself included), sorted by key.
	Workloads []WorkloadRules `json:"workloads,omitempty"`
	// Sites are, on a gateway, the rule tables of the sites whose
	// addresses it is the primary gateway for, sorted by site.
	Sites []SiteRules `json:"sites,omitempty"`
	// Routes are this node's approved routes, sorted by prefix, each
	// with whether the node is the primary gateway for some of its
	// addresses. A node without approved routes has none.
	Routes []Route `json:"routes,omitempty"`
}

// Route is one approved route of a gateway.
type Route struct {
	Prefix Prefix `json:"prefix"`
	// Primary is true when this node is the primary gateway for at least
	// part of the prefix (the part its View.Sites names).
	Primary bool `json:"primary,omitempty"`
}

// SiteRules are the compiled rules of the hosts of one site, which run no
// agent: the gateway that carries their traffic checks it on their
// behalf. Every host of a site has the same rules (policy selects site
// hosts by the site's namespace and labels); site hosts have no identity
// (IdentityUnknown), so other workloads' and sites' rules name them by
// CIDR.
type SiteRules struct {
	Site string `json:"site"` // namespace/name
	// CIDRs are the site's addresses this node is the primary gateway
	// for, minimal and in address order.
	CIDRs   []Prefix `json:"cidrs"`
	Ingress Rules    `json:"ingress"`
	Egress  Rules    `json:"egress"`
	// Monitor is true when the site's namespace is in monitor mode.
	Monitor bool `json:"monitor,omitempty"`
}

// Peer is a remote node and the addresses this node may reach through it.
type Peer struct {
	Node       string           `json:"node"`
	PublicKey  string           `json:"publicKey,omitempty"`
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"`
	AllowedIPs []Prefix         `json:"allowedIPs"`
}

// IdentityEntry gives the identity of one overlay address.
type IdentityEntry struct {
	IP       Addr     `json:"ip"`
	Identity Identity `json:"identity"`
}

// WorkloadRules are the compiled rules of one local workload.
type WorkloadRules struct {
	Workload string   `json:"workload"` // namespace/name
	IP       Addr     `json:"ip"`
	Identity Identity `json:"identity"`
	Ingress  Rules    `json:"ingress"`
	Egress   Rules    `json:"egress"`
	// Monitor is true when the workload's namespace is in monitor mode:
	// the enforcer lets through what the rules deny, tracks it like an
	// allowed flow and reports it with the verdict would-deny.
	Monitor bool `json:"monitor,omitempty"`
}

// Rules decide one direction of one workload's traffic. For a packet with
// remote address A (the source on ingress, the destination on egress),
// protocol P and destination port N, the traffic is allowed iff AllowAll,
// or (P, N) is in Any, or in the ports of Identities[identity(A)], or in the
// ports of the longest CIDR prefix containing A. CIDR prefixes are
// flattened: a prefix's ports already include those of every shorter prefix
// that contains it.
type Rules struct {
	// Isolated is true when a policy selects the workload for this
	// direction; when false the baseline decided and AllowAll says how.
	Isolated   bool           `json:"isolated"`
	AllowAll   bool           `json:"allowAll,omitempty"`
	Any        []PortRange    `json:"any,omitempty"`
	Identities []IdentityRule `json:"identities,omitempty"`
	CIDRs      []CIDRRule     `json:"cidrs,omitempty"`
}

// PortRange is an inclusive range of destination ports of one protocol.
type PortRange struct {
	Protocol inventory.Protocol `json:"protocol"`
	First    uint16             `json:"first"`
	Last     uint16             `json:"last"`
}

// IdentityRule allows ports to or from one identity.
type IdentityRule struct {
	Identity Identity    `json:"identity"`
	Ports    []PortRange `json:"ports"`
}

// CIDRRule allows ports to or from a prefix. IPv6 ipBlocks never match in
// the IPv4 overlay and produce no CIDR rules.
type CIDRRule struct {
	Prefix Prefix      `json:"prefix"`
	Ports  []PortRange `json:"ports"`
}

// Allows reports whether the rules let through traffic with the remote
// address addr (whose identity is id) on protocol proto and port port.
// It is the reference reading of Rules that enforcers must match.
func (r *Rules) Allows(id Identity, addr Addr, proto inventory.Protocol, port uint16) bool {
	if r.AllowAll || portsContain(r.Any, proto, port) {
		return true
	}
	if id != IdentityUnknown {
		for i := range r.Identities {
			if r.Identities[i].Identity == id {
				if portsContain(r.Identities[i].Ports, proto, port) {
					return true
				}
				break
			}
		}
	}
	best := -1
	for i := range r.CIDRs {
		p := r.CIDRs[i].Prefix
		if p.Contains(addr) && (best < 0 || p.Bits > r.CIDRs[best].Prefix.Bits) {
			best = i
		}
	}
	return best >= 0 && portsContain(r.CIDRs[best].Ports, proto, port)
}

func portsContain(rs []PortRange, proto inventory.Protocol, port uint16) bool {
	for _, r := range rs {
		if r.Protocol == proto && r.First <= port && port <= r.Last {
			return true
		}
	}
	return false
}

// IdentityOf returns the identity of addr in the view, or IdentityUnknown.
func (v *View) IdentityOf(addr Addr) Identity {
	lo, hi := 0, len(v.Identities)
	for lo < hi {
		m := (lo + hi) / 2
		if v.Identities[m].IP.Compare(addr) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(v.Identities) && v.Identities[lo].IP == addr {
		return v.Identities[lo].Identity
	}
	return IdentityUnknown
}
