package netmap

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

// buildView computes a node's view from the current flows. It only reads
// engine state, so views build in parallel.
func (e *Engine) buildView(nd *node) *view.View {
	v := &view.View{Node: nd.n.Name}
	local := make([]*workload, 0, len(nd.members))
	for _, id := range nd.members {
		local = append(local, e.wls[id])
	}
	slices.SortFunc(local, func(a, b *workload) int { return strings.Compare(a.w.Key(), b.w.Key()) })

	seen := map[int32]bool{}
	peers := map[string]*view.Peer{}
	var ids []view.IdentityEntry
	for _, w := range local {
		seen[w.id] = true
		ids = append(ids, view.IdentityEntry{IP: w.w.IP, Identity: w.identity})
	}
	addPartner := func(id int32) {
		if seen[id] {
			return
		}
		seen[id] = true
		p := e.wls[id]
		ids = append(ids, view.IdentityEntry{IP: p.w.IP, Identity: p.identity})
		if p.w.Node == nd.n.Name {
			return
		}
		pe := peers[p.w.Node]
		if pe == nil {
			rn := e.nodes[p.w.Node]
			pe = &view.Peer{Node: rn.n.Name, PublicKey: rn.n.PublicKey, Endpoints: slices.Clone(rn.n.Endpoints)}
			peers[p.w.Node] = pe
		}
		pe.AllowedIPs = append(pe.AllowedIPs, netip.PrefixFrom(p.w.IP, p.w.IP.BitLen()))
	}
	for _, w := range local {
		for _, id := range w.in {
			addPartner(id)
		}
		for _, id := range w.out {
			addPartner(id)
		}
	}
	for _, pe := range peers {
		slices.SortFunc(pe.AllowedIPs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		v.Peers = append(v.Peers, *pe)
	}
	slices.SortFunc(v.Peers, func(a, b view.Peer) int { return strings.Compare(a.Node, b.Node) })
	slices.SortFunc(ids, func(a, b view.IdentityEntry) int { return a.IP.Compare(b.IP) })
	v.Identities = ids
	known := make([]int32, 0, len(seen))
	for id := range seen {
		known = append(known, id)
	}
	slices.Sort(known)
	for _, w := range local {
		v.Workloads = append(v.Workloads, view.WorkloadRules{
			Workload: w.w.Key(),
			IP:       w.w.IP,
			Identity: w.identity,
			Ingress:  e.rules(w, true, known),
			Egress:   e.rules(w, false, known),
		})
	}
	return v
}

// rules compiles one direction of a local workload's policy into the
// tables an enforcer loads. Identity rules name only the identities of
// known, the workloads in the view's identity map; for each of those the
// tables decide exactly as the policy does.
func (e *Engine) rules(w *workload, ingress bool, known []int32) view.Rules {
	pols, partners := w.outPol, known
	if ingress {
		pols = w.inPol
	}
	if len(pols) == 0 {
		return view.Rules{AllowAll: e.baseline == policy.BaselineAllow}
	}
	r := view.Rules{Isolated: true}
	var anyPorts portSet
	byID := map[view.Identity]portSet{}
	byCIDR := map[netip.Prefix]portSet{}
	dstOf := func(remote *workload) *inventory.Workload {
		if ingress {
			return &w.w
		}
		return &remote.w
	}
	for _, cp := range pols {
		rules := cp.out
		if ingress {
			rules = cp.in
		}
		for i := range rules {
			cr := &rules[i]
			// The part of the rule's ports that does not depend on the
			// destination, and whether a named part remains.
			fixed := cr.ports.appendTo(nil, nil)
			if ingress {
				fixed = cr.ports.appendTo(nil, &w.w)
			}
			named := !ingress && len(cr.ports.named) > 0
			if cr.any {
				if cr.ports.all {
					r.AllowAll = true
				}
				anyPorts = append(anyPorts, fixed...)
				if named {
					for _, id := range partners {
						p := e.wls[id]
						byID[p.identity] = cr.ports.appendTo(byID[p.identity], &p.w)
					}
				}
				continue
			}
			for _, pe := range cr.peers {
				if pe.block != nil {
					for _, part := range pe.block.parts {
						byCIDR[part] = append(byCIDR[part], fixed...)
					}
					if named {
						for _, id := range partners {
							p := e.wls[id]
							if pe.block.contains(p.w.IP) {
								host := netip.PrefixFrom(p.w.IP, p.w.IP.BitLen())
								byCIDR[host] = cr.ports.appendTo(byCIDR[host], &p.w)
							}
						}
					}
					continue
				}
				for _, id := range partners {
					if pe.members.has(id) {
						p := e.wls[id]
						byID[p.identity] = cr.ports.appendTo(byID[p.identity], dstOf(p))
					}
				}
			}
		}
	}
	if r.AllowAll {
		return r
	}
	r.Any = anyPorts.normalize()
	for id, ps := range byID {
		if ps = ps.normalize(); len(ps) > 0 {
			r.Identities = append(r.Identities, view.IdentityRule{Identity: id, Ports: ps})
		}
	}
	slices.SortFunc(r.Identities, func(a, b view.IdentityRule) int { return int(a.Identity) - int(b.Identity) })
	r.CIDRs = flatten(byCIDR)
	return r
}

// flatten gives every prefix the ports of all prefixes that contain it, so
// a longest-prefix match finds the whole answer in one entry.
func flatten(m map[netip.Prefix]portSet) []view.CIDRRule {
	out := make([]view.CIDRRule, 0, len(m))
	for p, ps := range m {
		all := append(portSet(nil), ps...)
		for q, qs := range m {
			if q != p && q.Bits() < p.Bits() && q.Contains(p.Addr()) {
				all = append(all, qs...)
			}
		}
		if all = all.normalize(); len(all) > 0 {
			out = append(out, view.CIDRRule{Prefix: p, Ports: all})
		}
	}
	slices.SortFunc(out, func(a, b view.CIDRRule) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}
