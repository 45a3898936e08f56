package netmap

import (
	"github.com/latchnet/latch/view"
	"slices"

	"github.com/latchnet/latch/policy"
)

// scratch is per-goroutine working memory for flow checks.
type scratch struct {
	a, b portSet
	// cache holds decisions between identities, for pairs whose decision
	// does not depend on addresses. It lives for one computation only.
	cache map[uint64]bool
	stamp []uint32
	epoch uint32
}

func (s *scratch) reset(n int) {
	if len(s.stamp) < n {
		s.stamp = make([]uint32, n)
		s.epoch = 0
	}
	s.epoch++
	if s.epoch == 0 {
		clear(s.stamp)
		s.epoch = 1
	}
}

// first reports whether id is seen for the first time since reset.
func (s *scratch) first(id int32) bool {
	if s.stamp[id] == s.epoch {
		return false
	}
	s.stamp[id] = s.epoch
	return true
}

// polsOf returns the policies selecting w for a direction.
func polsOf(w *workload, ingress bool) []*cpolicy {
	if ingress {
		return w.inPol
	}
	return w.outPol
}

// rulesOf returns a policy's rules for a direction.
func rulesOf(cp *cpolicy, ingress bool) []crule {
	if ingress {
		return cp.in
	}
	return cp.out
}

// ruleMatches reports whether a rule's peers include other.
func ruleMatches(r *crule, other *workload) bool {
	if r.any {
		return true
	}
	for _, pe := range r.peers {
		if pe.block != nil {
			if pe.block.contains(other.w.IP) {
				return true
			}
		} else if pe.members.has(other.id) {
			return true
		}
	}
	return false
}

// sidePorts returns the ports self's policies allow to (egress) or from
// (ingress) other, appended to buf; all is true when every port is allowed.
// A workload of a namespace in monitor mode lets everything through (its
// enforcer drops nothing), so for flows, peers and identities its sides
// allow every port; its rule tables still say what policy allows.
func (e *Engine) sidePorts(self, other *workload, ingress bool, buf portSet) (ps portSet, all bool) {
	if self.ns.monitor {
		return buf, true
	}
	pols, dst := self.outPol, other
	if ingress {
		pols, dst = self.inPol, self
	}
	if len(pols) == 0 {
		return buf, e.baseline == policy.BaselineAllow
	}
	for _, cp := range pols {
		rules := rulesOf(cp, ingress)
		for i := range rules {
			r := &rules[i]
			if !ruleMatches(r, other) {
				continue
			}
			if r.ports.all {
				return buf, true
			}
			buf = r.ports.appendTo(buf, &dst.w)
		}
	}
	return buf, false
}

// flowAllowed reports whether a may send to b on some protocol and port:
// a's egress and b's ingress both allow a common port.
func (e *Engine) flowAllowed(a, b *workload, s *scratch) bool {
	if a == b {
		return false
	}
	if a.blockOut || b.blockIn {
		return e.decideFlow(a, b, s)
	}
	key := uint64(a.identity)<<32 | uint64(b.identity)
	if v, ok := s.cache[key]; ok {
		return v
	}
	v := e.decideFlow(a, b, s)
	if s.cache == nil {
		s.cache = map[uint64]bool{}
	}
	s.cache[key] = v
	return v
}

func (e *Engine) decideFlow(a, b *workload, s *scratch) bool {
	in, inAll := e.sidePorts(b, a, true, s.a[:0])
	s.a = in
	if !inAll && len(in) == 0 {
		return false
	}
	out, outAll := e.sidePorts(a, b, false, s.b[:0])
	s.b = out
	switch {
	case inAll && outAll:
		return true
	case inAll:
		return len(out) > 0
	case outAll:
		return true
	}
	return intersects(in, out)
}

// candidates calls visit for every workload that w's rules could let reach
// it (ingress) or that it could reach (egress), possibly more than once.
// It returns true without visiting when that is every workload.
func (e *Engine) candidates(w *workload, ingress bool, visit func(int32)) (all bool) {
	if w.ns.monitor {
		return true
	}
	pols := polsOf(w, ingress)
	if len(pols) == 0 {
		return e.baseline == policy.BaselineAllow
	}
	for _, cp := range pols {
		rules := rulesOf(cp, ingress)
		for i := range rules {
			if rules[i].any {
				return true
			}
		}
	}
	if visit == nil {
		return false
	}
	for _, cp := range pols {
		rules := rulesOf(cp, ingress)
		for i := range rules {
			for _, pe := range rules[i].peers {
				if pe.block != nil {
					e.eachInBlock(pe.block, visit)
				} else {
					pe.members.each(visit)
				}
			}
		}
	}
	return false
}

func (e *Engine) isAll(w *workload, ingress bool) bool {
	return e.candidates(w, ingress, nil)
}

// eachInBlock visits the workloads whose address is in the block.
func (e *Engine) eachInBlock(b *cblock, visit func(int32)) {
	e.refreshIPIndex()
	for _, part := range b.parts {
		lo, _ := slices.BinarySearchFunc(e.ipIndex, part.Addr(), func(id int32, a netipAddr) int {
			return e.wls[id].w.IP.Compare(a)
		})
		for i := lo; i < len(e.ipIndex); i++ {
			id := e.ipIndex[i]
			if !part.Contains(e.wls[id].w.IP) {
				break
			}
			visit(id)
		}
	}
}

func (e *Engine) refreshIPIndex() {
	if !e.ipDirty {
		return
	}
	e.ipIndex = e.ipIndex[:0]
	for id, w := range e.wls {
		if w != nil {
			e.ipIndex = append(e.ipIndex, int32(id))
		}
	}
	slices.SortFunc(e.ipIndex, func(a, b int32) int { return e.wls[a].w.IP.Compare(e.wls[b].w.IP) })
	e.ipDirty = false
}

type pair struct{ from, to int32 }

// groupMembers fills each selector peer's groups: its members bucketed by
// identity. Only allFlows reads them, right after this call.
func (e *Engine) groupMembers() {
	var peers []*cpeer
	for _, cp := range e.policies {
		for _, rules := range [][]crule{cp.in, cp.out} {
			for _, r := range rules {
				for _, pe := range r.peers {
					if pe.block == nil {
						peers = append(peers, pe)
					}
				}
			}
		}
	}
	parallel(len(peers), func(i int) {
		pe := peers[i]
		byID := map[view.Identity][]int32{}
		var order []view.Identity
		pe.members.each(func(id int32) {
			ident := e.wls[id].identity
			if _, ok := byID[ident]; !ok {
				order = append(order, ident)
			}
			byID[ident] = append(byID[ident], id)
		})
		pe.groups = pe.groups[:0]
		for _, ident := range order {
			pe.groups = append(pe.groups, byID[ident])
		}
	})
}

// candidateGroups is candidates with the workloads of selector peers
// grouped by identity; ipBlock members come one by one. It must follow
// groupMembers, and the caller must have handled the all case.
func (e *Engine) candidateGroups(w *workload, ingress bool, visit func([]int32)) {
	pols := polsOf(w, ingress)
	var one [1]int32
	for _, cp := range pols {
		rules := rulesOf(cp, ingress)
		for i := range rules {
			for _, pe := range rules[i].peers {
				if pe.block != nil {
					e.eachInBlock(pe.block, func(id int32) {
						one[0] = id
						visit(one[:])
					})
					continue
				}
				for _, g := range pe.groups {
					visit(g)
				}
			}
		}
	}
}

// allFlows computes every allowed flow from scratch. Each allowed pair is
// found exactly once: through the destination's ingress candidates when
// those are restricted, else through the source's egress candidates when
// those are, else among the pairs whose both sides are open.
func (e *Engine) allFlows() {
	e.refreshIPIndex()
	n := len(e.wls)
	inAll := make([]bool, n)
	outAll := make([]bool, n)
	for id, w := range e.wls {
		if w != nil {
			inAll[id] = e.isAll(w, true)
			outAll[id] = e.isAll(w, false)
		}
	}
	e.groupMembers()
	workers := max(1, min(n, parallelism()))
	results := make([][]pair, workers)
	scr := make([]scratch, workers)
	chunks := splitRange(n, workers)
	runWorkers(workers, func(k int) {
		s := &scr[k]
		var out []pair
		for id := chunks[k]; id < chunks[k+1]; id++ {
			b := e.wls[id]
			if b == nil {
				continue
			}
			if !inAll[id] {
				s.reset(n)
				e.candidateGroups(b, true, func(g []int32) {
					// Sources of one identity get one decision, unless
					// addresses matter (ipBlock peers on either side).
					exact := b.blockIn || e.wls[g[0]].blockOut
					decided, allowed := false, false
					for _, a := range g {
						if a == int32(id) || !s.first(a) {
							continue
						}
						if exact || !decided {
							allowed, decided = e.flowAllowed(e.wls[a], b, s), true
						}
						if allowed {
							out = append(out, pair{a, int32(id)})
						}
					}
				})
			}
			a := b // the same id seen as a source
			if !outAll[id] {
				s.reset(n)
				e.candidateGroups(a, false, func(g []int32) {
					exact := a.blockOut || e.wls[g[0]].blockIn
					decided, allowed := false, false
					for _, d := range g {
						if d == int32(id) || !inAll[d] || !s.first(d) {
							continue
						}
						if exact || !decided {
							allowed, decided = e.flowAllowed(a, e.wls[d], s), true
						}
						if allowed {
							out = append(out, pair{int32(id), d})
						}
					}
				})
			} else {
				for d, dw := range e.wls {
					if dw != nil && inAll[d] && e.flowAllowed(a, dw, s) {
						out = append(out, pair{int32(id), int32(d)})
					}
				}
			}
		}
		results[k] = out
	})
	// Transpose the pairs into per-workload lists: count, carve one
	// backing array, fill, then sort each list.
	outN := make([]int32, n)
	inN := make([]int32, n)
	total := 0
	for _, rs := range results {
		for _, p := range rs {
			outN[p.from]++
			inN[p.to]++
		}
		total += len(rs)
	}
	backing := make([]int32, 2*total)
	off := 0
	for id, w := range e.wls {
		if w == nil {
			continue
		}
		w.out = backing[off : off : off+int(outN[id])]
		off += int(outN[id])
		w.in = backing[off : off : off+int(inN[id])]
		off += int(inN[id])
	}
	for _, rs := range results {
		for _, p := range rs {
			a, b := e.wls[p.from], e.wls[p.to]
			a.out = append(a.out, p.to)
			b.in = append(b.in, p.from)
		}
	}
	parallel(n, func(id int) {
		if w := e.wls[id]; w != nil {
			slices.Sort(w.in)
			slices.Sort(w.out)
		}
	})
}

// partnersOf computes w's flows in both directions against current state.
func (e *Engine) partnersOf(w *workload, s *scratch) (in, out idlist) {
	n := len(e.wls)
	s.reset(n)
	if e.candidates(w, true, func(a int32) {
		if s.first(a) && e.flowAllowed(e.wls[a], w, s) {
			in = append(in, a)
		}
	}) {
		for a, aw := range e.wls {
			if aw != nil && e.flowAllowed(aw, w, s) {
				in = append(in, int32(a))
			}
		}
	}
	s.reset(n)
	if e.candidates(w, false, func(d int32) {
		if s.first(d) && e.flowAllowed(w, e.wls[d], s) {
			out = append(out, d)
		}
	}) {
		for d, dw := range e.wls {
			if dw != nil && e.flowAllowed(w, dw, s) {
				out = append(out, int32(d))
			}
		}
	}
	slices.Sort(in)
	slices.Sort(out)
	return in, out
}
