package netmap

import (
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

// A change goes in three steps: touch every workload whose own attributes
// or policy selection change (recording the nodes of its current
// partners), mutate the indexes, then finish: recompute the flows of the
// touched workloads and rebuild the views of the nodes that host them or
// any partner, old or new. Flows between two untouched workloads depend
// only on their own attributes and the policies selecting them, so they
// cannot change.
type txn struct {
	e       *Engine
	touched map[int32]bool
	nodes   map[string]bool
}

func (e *Engine) begin() *txn {
	return &txn{e: e, touched: map[int32]bool{}, nodes: map[string]bool{}}
}

func (t *txn) touch(id int32) {
	if t.touched[id] {
		return
	}
	t.touched[id] = true
	w := t.e.wls[id]
	t.nodes[w.w.Node] = true
	t.partnerNodes(w)
}

func (t *txn) partnerNodes(w *workload) {
	for _, l := range []idlist{w.in, w.out} {
		for _, p := range l {
			t.nodes[t.e.wls[p].w.Node] = true
		}
	}
}

// unlink removes a workload that is about to be deleted from its
// partners' lists.
func (t *txn) unlink(w *workload) {
	for _, p := range w.in {
		pw := t.e.wls[p]
		pw.out.remove(w.id)
	}
	for _, p := range w.out {
		pw := t.e.wls[p]
		pw.in.remove(w.id)
	}
	w.in, w.out = nil, nil
}

// finish recomputes flows and views and returns the sorted names of the
// nodes whose view changed (a name whose View is now nil was removed).
func (t *txn) finish() []string {
	e := t.e
	var s scratch
	ids := make([]int32, 0, len(t.touched))
	for id := range t.touched {
		if e.wls[id] != nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		w := e.wls[id]
		in, out := e.partnersOf(w, &s)
		diff(w.in, in, func(p int32) { e.wls[p].out.remove(id) }, func(p int32) { e.wls[p].out.add(id) })
		diff(w.out, out, func(p int32) { e.wls[p].in.remove(id) }, func(p int32) { e.wls[p].in.add(id) })
		w.in, w.out = in, out
		t.partnerNodes(w)
	}
	return e.rebuild(t.nodes)
}

// rebuild recomputes the views of the named nodes and reports those that
// changed.
func (e *Engine) rebuild(names map[string]bool) []string {
	e.refreshSites(names)
	var list []string
	var changed []string
	for name := range names {
		if _, ok := e.nodes[name]; ok {
			list = append(list, name)
		} else if name != "" {
			changed = append(changed, name) // removed
		}
	}
	views := make([]*view.View, len(list))
	parallel(len(list), func(i int) { views[i] = e.buildView(e.nodes[list[i]]) })
	for i, name := range list {
		nd := e.nodes[name]
		nv := views[i]
		if nd.view != nil {
			nv.Version = nd.view.Version
			if reflect.DeepEqual(nd.view, nv) {
				continue
			}
		}
		if nd.version == 0 {
			nd.version = e.versionBase
		}
		nd.version++
		nv.Version = nd.version
		nd.view = nv
		changed = append(changed, name)
	}
	sort.Strings(changed)
	return changed
}

// diff calls gone for members of old not in cur and added for members of
// cur not in old; both lists are sorted.
func diff(old, cur idlist, gone, added func(int32)) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i] < cur[j]):
			gone(old[i])
			i++
		case i == len(old) || cur[j] < old[i]:
			added(cur[j])
			j++
		default:
			i++
			j++
		}
	}
}

// UpsertWorkload adds a workload or replaces the one with the same
// namespace/name. Its node must exist.
func (e *Engine) UpsertWorkload(w inventory.Workload) ([]string, error) {
	if err := checkIP(&w); err != nil {
		return nil, err
	}
	if w.Node == "" {
		return nil, fmt.Errorf("workload %s: no node: say which node hosts it", w.Key())
	}
	if _, ok := e.nodes[w.Node]; !ok {
		return nil, fmt.Errorf("workload %s: node %q is unknown: add the node first", w.Key(), w.Node)
	}
	if nd, ok := e.nodes[w.Name]; ok && nd.n.Namespace == w.Namespace {
		return nil, fmt.Errorf("workload %s: the name is taken by node %q, which is itself a workload in its namespace", w.Key(), w.Name)
	}
	t := e.begin()
	if id, ok := e.byKey[w.Key()]; ok {
		t.touch(id)
		e.replaceWorkload(e.wls[id], w)
	} else {
		if err := e.addWorkload(w, false); err != nil {
			return nil, err
		}
		t.touch(e.byKey[w.Key()])
	}
	return t.finish(), nil
}

// replaceWorkload updates a workload in place, keeping its id.
func (e *Engine) replaceWorkload(wl *workload, w inventory.Workload) {
	wl.ns.unindex(wl.id, wl.w.Labels)
	if nd, ok := e.nodes[wl.w.Node]; ok {
		nd.members.remove(wl.id)
	}
	e.ids.release(wl.idKey)

	wl.w = w
	ns, ok := e.namespaces[w.Namespace]
	if !ok {
		ns = e.putNamespace(inventory.Namespace{Name: w.Namespace})
	}
	wl.ns = ns
	ns.index(wl.id, w.Labels)
	if nd, ok := e.nodes[w.Node]; ok {
		nd.members.add(wl.id)
		wl.host = nd
	}
	wl.idKey = identityKey(&w)
	wl.identity = e.ids.acquire(wl.idKey)
	e.syncHot(wl)
	e.ipDirty = true
	e.indexInPolicies(wl)
}

// DeleteWorkload removes a declared workload.
func (e *Engine) DeleteWorkload(key string) ([]string, error) {
	id, ok := e.byKey[key]
	if !ok {
		return nil, fmt.Errorf("workload %s does not exist", key)
	}
	wl := e.wls[id]
	if nd, ok := e.nodes[wl.w.Node]; ok && nd.self == id {
		return nil, fmt.Errorf("workload %s stands for node %q: delete the node instead", key, wl.w.Node)
	}
	t := e.begin()
	t.touch(id)
	t.unlink(wl)
	e.removeWorkload(wl)
	return t.finish(), nil
}

// UpsertNode adds a node or updates one (labels, address, key, endpoints).
func (e *Engine) UpsertNode(n inventory.Node) ([]string, error) {
	t := e.begin()
	if err := e.upsertNode(t, n); err != nil {
		return nil, err
	}
	return t.finish(), nil
}

func (e *Engine) checkNode(n inventory.Node) error {
	if n.Name == "" || n.Namespace == "" {
		return fmt.Errorf("node %q: name and namespace are required", n.Name)
	}
	if w := n.AsWorkload(); checkIP(&w) != nil {
		return fmt.Errorf("node %q: address %v: the overlay is IPv4 (100.64.0.0/10); give an IPv4 address", n.Name, n.IP)
	}
	if id, taken := e.byKey[n.Namespace+"/"+n.Name]; taken {
		if nd, ok := e.nodes[n.Name]; !ok || nd.self != id {
			return fmt.Errorf("node %q: workload %s/%s already has that name", n.Name, n.Namespace, n.Name)
		}
	}
	return nil
}

func (e *Engine) upsertNode(t *txn, n inventory.Node) error {
	if err := e.checkNode(n); err != nil {
		return err
	}
	n.Endpoints = slices.Clone(n.Endpoints)
	nd, exists := e.nodes[n.Name]
	if !exists {
		nd = &node{n: n, rank: -1}
		e.nodes[n.Name] = nd
		if err := e.addWorkload(n.AsWorkload(), false); err != nil {
			delete(e.nodes, n.Name)
			return err
		}
		nd.self = e.byKey[n.Namespace+"/"+n.Name]
		e.syncHot(e.wls[nd.self])
		t.touch(nd.self)
		return nil
	}
	self := e.wls[nd.self]
	if self.w.Key() != n.Namespace+"/"+n.Name {
		delete(e.byKey, self.w.Key())
		e.byKey[n.Namespace+"/"+n.Name] = nd.self
	}
	// Every node that has this one as a peer sees its key and endpoints.
	t.nodes[n.Name] = true
	for _, id := range nd.members {
		t.partnerNodes(e.wls[id])
	}
	nd.n = n
	t.touch(nd.self)
	e.replaceWorkload(self, n.AsWorkload())
	return nil
}

// SetNode adds or updates a node together with the complete list of the
// workloads it declares, in one change: workloads of the node missing from
// ws are removed. Each workload's Node is set to n.Name. Nothing is changed
// when an error is returned.
func (e *Engine) SetNode(n inventory.Node, ws []inventory.Workload) ([]string, error) {
	if err := e.checkNode(n); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for i := range ws {
		ws[i].Node = n.Name
		k := ws[i].Key()
		if want[k] || k == n.Namespace+"/"+n.Name {
			return nil, fmt.Errorf("node %q: workload %s is declared twice (the node itself is a workload named after it)", n.Name, k)
		}
		want[k] = true
		if err := checkIP(&ws[i]); err != nil {
			return nil, err
		}
		if id, ok := e.byKey[k]; ok && e.wls[id].w.Node != n.Name {
			return nil, fmt.Errorf("node %q: workload %s already runs on node %q", n.Name, k, e.wls[id].w.Node)
		}
		if other, ok := e.nodes[ws[i].Name]; ok && other.n.Namespace == ws[i].Namespace {
			return nil, fmt.Errorf("node %q: workload %s: the name is taken by node %q", n.Name, k, ws[i].Name)
		}
	}
	t := e.begin()
	if err := e.upsertNode(t, n); err != nil {
		return nil, err
	}
	nd := e.nodes[n.Name]
	for _, id := range append(idlist(nil), nd.members...) {
		wl := e.wls[id]
		if id == nd.self || want[wl.w.Key()] {
			continue
		}
		t.touch(id)
		t.unlink(wl)
		e.removeWorkload(wl)
	}
	for _, w := range ws {
		if id, ok := e.byKey[w.Key()]; ok {
			t.touch(id)
			e.replaceWorkload(e.wls[id], w)
			continue
		}
		if err := e.addWorkload(w, false); err != nil {
			return nil, err // not reached: checked above
		}
		t.touch(e.byKey[w.Key()])
	}
	return t.finish(), nil
}

// DeleteNode removes a node and every workload it hosts.
func (e *Engine) DeleteNode(name string) ([]string, error) {
	nd, ok := e.nodes[name]
	if !ok {
		return nil, fmt.Errorf("node %q does not exist", name)
	}
	t := e.begin()
	members := append(idlist(nil), nd.members...)
	for _, id := range members {
		t.touch(id)
	}
	for _, id := range members {
		t.unlink(e.wls[id])
	}
	for _, id := range members {
		e.removeWorkload(e.wls[id])
	}
	delete(e.nodes, name)
	return t.finish(), nil
}

// UpsertNamespace adds a namespace or changes its labels or mode. A mode
// change alone changes only the views of the nodes hosting the
// namespace's workloads (their rule tables carry the mode).
func (e *Engine) UpsertNamespace(ns inventory.Namespace) ([]string, error) {
	t := e.begin()
	n, ok := e.namespaces[ns.Name]
	if ok {
		for _, id := range n.members {
			t.touch(id)
		}
	}
	n = e.putNamespace(ns)
	for _, sh := range e.siteHosts {
		if sh.host.ns == n {
			// Selectors in any node's rule tables may match the
			// namespace's sites.
			for name := range e.allNodes() {
				t.nodes[name] = true
			}
			break
		}
	}
	for _, cp := range e.policies {
		for _, rules := range [][]crule{cp.in, cp.out} {
			for _, r := range rules {
				for _, pe := range r.peers {
					if pe.nss == nil {
						continue
					}
					for _, id := range n.members {
						if pe.matches(cp.ns, e.wls[id]) {
							pe.members.set(id)
						} else {
							pe.members.clear(id)
						}
					}
				}
			}
		}
	}
	return t.finish(), nil
}

// UpsertPolicy adds a policy or replaces the one with the same key. The
// policy must come from policy.Parse (validated).
func (e *Engine) UpsertPolicy(p *policy.Policy) ([]string, error) {
	t := e.begin()
	key := p.Key()
	old := e.policies[key]
	if old != nil {
		for _, id := range old.selected {
			t.touch(id)
		}
	}
	cp := &cpolicy{}
	e.compile(cp, p)
	e.policies[key] = cp
	e.unlistPolicy(cp.ns, key)
	e.polByNS[cp.ns] = append(e.polByNS[cp.ns], cp)
	sortPolicies(e.polByNS[cp.ns])
	for _, id := range cp.selected {
		t.touch(id)
	}
	e.reselect(t)
	return t.finish(), nil
}

// DeletePolicy removes a policy by namespace/name.
func (e *Engine) DeletePolicy(key string) ([]string, error) {
	old, ok := e.policies[key]
	if !ok {
		return nil, fmt.Errorf("policy %s does not exist", key)
	}
	t := e.begin()
	for _, id := range old.selected {
		t.touch(id)
	}
	delete(e.policies, key)
	e.unlistPolicy(old.ns, key)
	e.reselect(t)
	return t.finish(), nil
}

// unlistPolicy drops a policy from its namespace's list.
func (e *Engine) unlistPolicy(ns, key string) {
	list := e.polByNS[ns]
	for i, q := range list {
		if q.key == key {
			e.polByNS[ns] = append(list[:i], list[i+1:]...)
			return
		}
	}
}

// reselect recomputes which policies select each touched workload.
func (e *Engine) reselect(t *txn) {
	for id := range t.touched {
		wl := e.wls[id]
		if wl == nil {
			continue
		}
		e.setPolicies(wl)
	}
}

// SetBaseline changes the baseline and recomputes everything.
func (e *Engine) SetBaseline(b policy.Baseline) ([]string, error) {
	if _, err := policy.ParseBaseline(string(b)); err != nil {
		return nil, err
	}
	e.baseline = b
	e.allFlows()
	all := map[string]bool{}
	for name := range e.nodes {
		all[name] = true
	}
	return e.rebuild(all), nil
}
