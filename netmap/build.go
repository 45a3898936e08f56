package netmap

import (
	"slices"
	"strings"
	"sync"

	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

// viewScratch is per-goroutine working memory for building views.
type viewScratch struct {
	seen    []uint32 // by workload id: epoch when seen
	peer    []uint32 // by the id of a node's own workload: epoch when added
	peerIdx []int32  // by the id of a node's own workload: index in Peers
	epoch   uint32
	ids     []int32
	tmp     []int32
	lists   []idlist
	keys    []uint64
	counts  []int32
	byRep   []portSet
	slots   []int32
	pos     []int32
	hosts   []*node
}

var viewPool = sync.Pool{New: func() any { return new(viewScratch) }}

func (s *viewScratch) reset(n int) {
	if len(s.seen) < n {
		s.seen = make([]uint32, n)
		s.peer = make([]uint32, n)
		s.peerIdx = make([]int32, n)
		s.epoch = 0
	}
	s.epoch++
	if s.epoch == 0 {
		clear(s.seen)
		clear(s.peer)
		s.epoch = 1
	}
}

// buildView computes a node's view from the current flows. It only reads
// engine state, so views build in parallel.
func (e *Engine) buildView(nd *node) *view.View {
	s := viewPool.Get().(*viewScratch)
	defer viewPool.Put(s)
	s.reset(len(e.wls))
	v := &view.View{Node: nd.n.Name}

	lists := append(s.lists[:0], nd.members)
	for _, id := range nd.members {
		w := e.wls[id]
		lists = append(lists, w.in, w.out)
	}
	s.lists = lists
	ids := mergeUnion(lists, &s.ids, &s.tmp)
	if !e.ipOrdered(ids) {
		e.sortByIP(ids, &s.keys)
	}

	v.Identities = make([]view.IdentityEntry, len(ids))
	reps := map[view.Identity]int32{}
	// Count the peers and their addresses first, so that Peers is
	// allocated once and all AllowedIPs share one backing array.
	counts := s.counts[:0]
	remote := 0
	for i, id := range ids {
		h := &e.hot[id]
		v.Identities[i] = view.IdentityEntry{IP: h.ip, Identity: h.identity}
		if _, ok := reps[h.identity]; !ok {
			reps[h.identity] = id
		}
		if h.hostSlot == nd.self {
			continue
		}
		slot := h.hostSlot
		if s.peer[slot] != s.epoch {
			s.peer[slot] = s.epoch
			s.peerIdx[slot] = int32(len(counts))
			counts = append(counts, 0)
		}
		counts[s.peerIdx[slot]]++
		remote++
	}
	s.counts = counts
	// Order the peers by node name before laying them out.
	slots := s.slots[:0]
	for i := range counts {
		slots = append(slots, int32(i))
	}
	s.slots = slots
	hosts := s.hosts[:0]
	for range counts {
		hosts = append(hosts, nil)
	}
	for _, id := range ids {
		h := &e.hot[id]
		if h.hostSlot != nd.self {
			hosts[s.peerIdx[h.hostSlot]] = h.host
		}
	}
	s.hosts = hosts
	slices.SortFunc(slots, func(a, b int32) int {
		x, y := hosts[a], hosts[b]
		if x.rank >= 0 && y.rank >= 0 {
			return int(x.rank - y.rank)
		}
		return strings.Compare(x.n.Name, y.n.Name)
	})
	pos := s.pos[:0]
	for range slots {
		pos = append(pos, 0)
	}
	s.pos = pos
	v.Peers = make([]view.Peer, len(counts))
	backing := make([]view.Prefix, remote)
	off := 0
	for i, slot := range slots {
		pos[slot] = int32(i)
		n := &hosts[slot].n
		v.Peers[i] = view.Peer{Node: n.Name, PublicKey: n.PublicKey, Endpoints: n.Endpoints,
			AllowedIPs: backing[off : off : off+int(counts[slot])]}
		off += int(counts[slot])
	}
	for _, id := range ids {
		h := &e.hot[id]
		if h.hostSlot == nd.self {
			continue
		}
		pe := &v.Peers[pos[s.peerIdx[h.hostSlot]]]
		pe.AllowedIPs = append(pe.AllowedIPs, view.HostPrefix(h.ip))
	}

	repList := make([]int32, 0, len(reps))
	for _, id := range reps {
		repList = append(repList, id)
	}
	slices.Sort(repList)
	local := make([]*workload, 0, len(nd.members))
	for _, id := range nd.members {
		local = append(local, e.wls[id])
	}
	slices.SortFunc(local, func(a, b *workload) int { return strings.Compare(a.w.Key(), b.w.Key()) })
	for _, w := range local {
		v.Workloads = append(v.Workloads, view.WorkloadRules{
			Workload: w.w.Key(),
			IP:       e.hot[w.id].ip,
			Identity: w.identity,
			Ingress:  e.rules(w, true, ids, repList, s),
			Egress:   e.rules(w, false, ids, repList, s),
			Monitor:  w.ns.monitor,
		})
	}
	e.addSites(v, e.siteParts[nd.n.Name], ids, s)
	return v
}

// rules compiles one direction of a local workload's policy into the
// tables an enforcer loads. Identity rules name only the identities of
// known, the workloads in the view's identity map; for each of those the
// tables decide exactly as the policy does. reps holds one workload of
// each identity in known: workloads of one identity match the same
// selectors and resolve named ports alike.
func (e *Engine) rules(w *workload, ingress bool, known, reps []int32, s *viewScratch) view.Rules {
	pols := polsOf(w, ingress)
	if len(pols) == 0 {
		return view.Rules{AllowAll: e.baseline == policy.BaselineAllow}
	}
	r := view.Rules{Isolated: true}
	// byRep[i] collects the ports allowed to or from reps[i]'s identity.
	for len(s.byRep) < len(reps) {
		s.byRep = append(s.byRep, nil)
	}
	byRep := s.byRep[:len(reps)]
	for i := range byRep {
		byRep[i] = byRep[i][:0]
	}
	var anyPorts portSet
	var byCIDR map[view.Prefix]portSet
	for _, cp := range pols {
		rules := rulesOf(cp, ingress)
		for i := range rules {
			cr := &rules[i]
			// fixed is the part of the rule's ports that does not depend
			// on the destination; named says whether a part remains.
			fixed := func() portSet {
				if ingress {
					return cr.ports.appendTo(nil, &w.w)
				}
				return cr.ports.appendTo(nil, nil)
			}
			named := !ingress && len(cr.ports.named) > 0
			if cr.any {
				if cr.ports.all {
					r.AllowAll = true
				}
				anyPorts = append(anyPorts, fixed()...)
				if named {
					for j, id := range reps {
						byRep[j] = cr.ports.appendTo(byRep[j], &e.wls[id].w)
					}
					for _, site := range e.siteHosts {
						if byCIDR == nil {
							byCIDR = map[view.Prefix]portSet{}
						}
						for _, c := range site.cidrs {
							byCIDR[c] = cr.ports.appendTo(byCIDR[c], &site.host.w)
						}
					}
				}
				continue
			}
			for _, pe := range cr.peers {
				if pe.block != nil {
					if byCIDR == nil {
						byCIDR = map[view.Prefix]portSet{}
					}
					f := fixed()
					for _, part := range pe.block.v4 {
						byCIDR[part] = append(byCIDR[part], f...)
					}
					if named {
						// A named port resolves against each site host
						// inside the block.
						for _, site := range e.siteHosts {
							for _, c := range site.cidrs {
								for _, part := range pe.block.v4 {
									in := part
									if c.Bits > part.Bits && part.Contains(c.Addr) {
										in = c
									} else if !(c.Bits <= part.Bits && c.Contains(part.Addr)) {
										continue
									}
									byCIDR[in] = cr.ports.appendTo(byCIDR[in], &site.host.w)
								}
							}
						}
						for _, id := range known {
							p := e.wls[id]
							if pe.block.contains(p.w.IP) {
								host := view.HostPrefix(e.hot[id].ip)
								byCIDR[host] = cr.ports.appendTo(byCIDR[host], &p.w)
							}
						}
					}
					continue
				}
				// Site hosts are no workloads: a selector that matches a
				// site (all its hosts alike) allows its CIDRs.
				for _, site := range e.siteHosts {
					if pe.matches(cp.ns, site.host) {
						if byCIDR == nil {
							byCIDR = map[view.Prefix]portSet{}
						}
						ps := fixed()
						if !ingress {
							ps = cr.ports.appendTo(nil, &site.host.w)
						}
						for _, c := range site.cidrs {
							byCIDR[c] = append(byCIDR[c], ps...)
						}
					}
				}
				for j, id := range reps {
					if pe.members.has(id) {
						dst := &w.w
						if !ingress {
							dst = &e.wls[id].w
						}
						byRep[j] = cr.ports.appendTo(byRep[j], dst)
					}
				}
			}
		}
	}
	if r.AllowAll {
		return r
	}
	r.Any = anyPorts.normalize()
	// One backing array for the ports of every identity rule.
	total, n := 0, 0
	for j := range byRep {
		byRep[j] = byRep[j].normalize()
		if len(byRep[j]) > 0 {
			total += len(byRep[j])
			n++
		}
	}
	if n > 0 {
		backing := make([]view.PortRange, 0, total)
		r.Identities = make([]view.IdentityRule, 0, n)
		for j, ps := range byRep {
			if len(ps) == 0 {
				continue
			}
			start := len(backing)
			backing = append(backing, ps...)
			r.Identities = append(r.Identities, view.IdentityRule{Identity: e.hot[reps[j]].identity, Ports: backing[start:len(backing):len(backing)]})
		}
		slices.SortFunc(r.Identities, func(a, b view.IdentityRule) int { return int(a.Identity) - int(b.Identity) })
	}
	if byCIDR != nil {
		r.CIDRs = flatten(byCIDR)
	}
	return r
}

// flatten gives every prefix the ports of all prefixes that contain it, so
// a longest-prefix match finds the whole answer in one entry.
func flatten(m map[view.Prefix]portSet) []view.CIDRRule {
	out := make([]view.CIDRRule, 0, len(m))
	for p, ps := range m {
		all := append(portSet(nil), ps...)
		for q, qs := range m {
			if q != p && q.Bits < p.Bits && q.Contains(p.Addr) {
				all = append(all, qs...)
			}
		}
		if all = all.normalize(); len(all) > 0 {
			out = append(out, view.CIDRRule{Prefix: p, Ports: all})
		}
	}
	slices.SortFunc(out, func(a, b view.CIDRRule) int {
		if c := a.Prefix.Addr.Compare(b.Prefix.Addr); c != 0 {
			return c
		}
		return int(a.Prefix.Bits) - int(b.Prefix.Bits)
	})
	return out
}

// sortByIP sorts workload ids by address.
func (e *Engine) sortByIP(ids []int32, keys *[]uint64) {
	ks := (*keys)[:0]
	for _, id := range ids {
		ks = append(ks, uint64(e.hot[id].ip.Uint32())<<32|uint64(uint32(id)))
	}
	slices.Sort(ks)
	for i, k := range ks {
		ids[i] = int32(uint32(k))
	}
	*keys = ks
}

// mergeUnion returns the sorted union of sorted lists, using *buf and *tmp
// as storage.
func mergeUnion(lists []idlist, buf, tmp *[]int32) []int32 {
	out := (*buf)[:0]
	for _, l := range lists {
		if len(out) == 0 {
			out = append(out, l...)
			continue
		}
		t := (*tmp)[:0]
		i, j := 0, 0
		for i < len(out) && j < len(l) {
			switch {
			case out[i] < l[j]:
				t = append(t, out[i])
				i++
			case out[i] > l[j]:
				t = append(t, l[j])
				j++
			default:
				t = append(t, out[i])
				i++
				j++
			}
		}
		t = append(t, out[i:]...)
		t = append(t, l[j:]...)
		*tmp = out
		out = t
	}
	*buf = out
	return out
}

// ipOrdered reports whether ids are in increasing address order.
func (e *Engine) ipOrdered(ids []int32) bool {
	for i := 1; i < len(ids); i++ {
		if e.hot[ids[i-1]].ip.Uint32() >= e.hot[ids[i]].ip.Uint32() {
			return false
		}
	}
	return true
}
