// Package netmap computes each node's view of the overlay from the
// inventory and the policies, in full and incrementally.
//
// It compiles policy once into selector → member sets (kept up to date as
// workloads change), computes the allowed workload-to-workload flows, and
// derives from them each node's peers, AllowedIPs, identity map and rule
// tables. A change recomputes only the flows of the workloads it touches and
// the views of the nodes that host them or their partners, and reports
// which views changed. Sites and approved routes add gateway peers with
// exactly the allowed site CIDRs, site rule tables and the routes on
// gateways, and follow gateways going offline (see sites.go and
// docs/sites.md).
//
// It is pure code with no I/O: it imports no echo, netlink, BPF or
// WireGuard packages. The coordinator's state layer owns an Engine; the
// admin API draws the connectivity graph with ConnectivityGraph. Only
// packages coordinator/state and coordinator/api, and tests, import it.
package netmap

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
	"k8s.io/apimachinery/pkg/labels"
)

// Input is everything a full computation needs.
type Input struct {
	Namespaces []inventory.Namespace
	Nodes      []inventory.Node
	// Workloads must each name a node in Nodes.
	Workloads []inventory.Workload
	Policies  []*policy.Policy
	Baseline  policy.Baseline
	// Sites are the networks of agentless hosts, and Routes the approved
	// routes of each node (by node name); see UpsertSite and
	// SetApprovedRoutes.
	Sites  []inventory.Site
	Routes map[string][]netip.Prefix
	// Offline are the nodes marked offline; see SetGatewayOnline.
	Offline []string
	// VersionBase is added to every view version, so that versions stay
	// unique across coordinator restarts (the first view is VersionBase+1).
	VersionBase uint64
}

// Engine holds the compiled state and the current view of every node.
// It is not safe for concurrent use: its owner serializes calls.
type Engine struct {
	baseline   policy.Baseline
	namespaces map[string]*namespace
	nodes      map[string]*node
	wls        []*workload // by id; nil marks a free id
	free       []int32
	byKey      map[string]int32
	policies   map[string]*cpolicy
	polByNS    map[string][]*cpolicy // sorted by key
	ids        identities

	// hot mirrors the fields of wls that view building reads for every
	// partner, densely, to spare it a pointer chase per entry.
	hot []hotWorkload

	versionBase uint64 // Input.VersionBase

	ipIndex []int32 // ids sorted by address; rebuilt when ipDirty
	ipDirty bool

	sites     map[string]inventory.Site // by namespace/name
	routes    map[string][]netip.Prefix // approved routes by node name
	siteParts map[string]*sitePart      // what sites add to each view; see sites.go
	siteHosts []siteHost                // one per site, by key, for the rule tables
	offline   map[string]bool           // nodes marked offline; see SetGatewayOnline
}

type namespace struct {
	name    string
	monitor bool       // monitor mode: carried into the rule tables of its workloads
	labels  labels.Set // effective labels, with kubernetes.io/metadata.name
	members idlist
	byLabel map[string]map[string]idlist
}

type node struct {
	n       inventory.Node
	rank    int32 // position by name among the nodes of New; -1 for later ones
	self    int32 // the workload standing for the node
	members idlist
	view    *view.View
	version uint64
}

type hotWorkload struct {
	ip       view.Addr
	identity view.Identity
	hostSlot int32 // the id of the host node's own workload; -1 if none yet
	host     *node
}

// syncHot copies wl's hot fields; call it after changing them.
func (e *Engine) syncHot(wl *workload) {
	for len(e.hot) <= int(wl.id) {
		e.hot = append(e.hot, hotWorkload{})
	}
	ip, _ := view.AddrFrom(wl.w.IP) // checkIP refused anything else
	slot := int32(-1)
	if wl.host != nil {
		slot = wl.host.self
	}
	e.hot[wl.id] = hotWorkload{ip: ip, identity: wl.identity, hostSlot: slot, host: wl.host}
}

type workload struct {
	id       int32
	w        inventory.Workload
	host     *node // nil only while a node is being added
	ns       *namespace
	identity view.Identity
	idKey    string
	inPol    []*cpolicy // policies selecting it for ingress
	outPol   []*cpolicy // policies selecting it for egress
	in, out  idlist     // flow partners: sources that may reach it, destinations it may reach
	// blockIn and blockOut are true when a policy selecting the workload
	// has an ipBlock peer in that direction, so its decisions depend on
	// addresses and not only on identities.
	blockIn, blockOut bool
}

// markBlocks recomputes wl.blockIn and wl.blockOut from its policies.
func markBlocks(wl *workload) {
	wl.blockIn, wl.blockOut = false, false
	for _, cp := range wl.inPol {
		wl.blockIn = wl.blockIn || cp.blockIn
	}
	for _, cp := range wl.outPol {
		wl.blockOut = wl.blockOut || cp.blockOut
	}
}

type cpolicy struct {
	p        *policy.Policy
	key, ns  string
	pods     labels.Selector
	ingress  bool
	egress   bool
	in, out  []crule
	selected idlist
	// blockIn and blockOut are true when a rule has an ipBlock peer.
	blockIn, blockOut bool
}

type crule struct {
	any   bool // no peers listed: every address
	peers []*cpeer
	ports compiledPorts
}

type cpeer struct {
	pods, nss labels.Selector // nil when not set
	block     *cblock
	members   bitset    // workloads the selectors match
	groups    [][]int32 // members by identity; see groupMembers
}

type cblock struct {
	cidr   netip.Prefix
	except []netip.Prefix
	parts  []netip.Prefix // cidr minus except, as disjoint prefixes
	v4     []view.Prefix  // parts that can match in the IPv4 overlay
}

func (b *cblock) contains(a netip.Addr) bool {
	if !b.cidr.Contains(a) {
		return false
	}
	for _, e := range b.except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

// New computes everything from scratch.
func New(in Input) (*Engine, error) {
	if _, err := policy.ParseBaseline(string(in.Baseline)); err != nil {
		return nil, err
	}
	e := &Engine{
		baseline:    in.Baseline,
		namespaces:  map[string]*namespace{},
		nodes:       map[string]*node{},
		byKey:       map[string]int32{},
		policies:    map[string]*cpolicy{},
		polByNS:     map[string][]*cpolicy{},
		ids:         newIdentities(),
		ipDirty:     true,
		versionBase: in.VersionBase,
		sites:       map[string]inventory.Site{},
		routes:      map[string][]netip.Prefix{},
		siteParts:   map[string]*sitePart{},
		offline:     map[string]bool{},
	}
	for _, ns := range in.Namespaces {
		e.putNamespace(ns)
	}
	for _, s := range in.Sites {
		if _, dup := e.sites[s.Key()]; dup {
			return nil, fmt.Errorf("site %s is listed twice", s.Key())
		}
		if err := e.checkSite(&s); err != nil {
			return nil, err
		}
		e.putSite(s)
	}
	e.indexSites()
	for _, name := range in.Offline {
		e.offline[name] = true
	}
	for name, rs := range in.Routes {
		if err := checkRoutes(name, rs); err != nil {
			return nil, err
		}
		if len(rs) > 0 {
			e.routes[name] = slices.Clone(rs)
		}
	}
	// Workloads get ids in address order, which lets view building merge
	// sorted partner lists instead of sorting them.
	all := make([]inventory.Workload, 0, len(in.Nodes)+len(in.Workloads))
	for i := range in.Nodes {
		n := in.Nodes[i]
		if _, dup := e.nodes[n.Name]; dup {
			return nil, fmt.Errorf("node %q is listed twice", n.Name)
		}
		n.Endpoints = slices.Clone(n.Endpoints)
		e.nodes[n.Name] = &node{n: n, self: -1}
		all = append(all, n.AsWorkload())
	}
	all = append(all, in.Workloads...)
	slices.SortStableFunc(all, func(a, b inventory.Workload) int { return a.IP.Compare(b.IP) })
	for i := range all {
		if err := e.addWorkload(all[i], true); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(e.nodes))
	for name, nd := range e.nodes {
		nd.self = e.byKey[nd.n.Namespace+"/"+nd.n.Name]
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		e.nodes[name].rank = int32(i)
	}
	for _, w := range e.wls {
		e.syncHot(w)
	}
	for _, p := range in.Policies {
		if _, dup := e.policies[p.Key()]; dup {
			return nil, fmt.Errorf("policy %s is listed twice", p.Key())
		}
		e.policies[p.Key()] = &cpolicy{p: p}
	}
	ps := make([]*cpolicy, 0, len(e.policies))
	for _, cp := range e.policies {
		ps = append(ps, cp)
	}
	parallel(len(ps), func(i int) { e.compile(ps[i], ps[i].p) })
	for _, cp := range ps {
		e.polByNS[cp.ns] = append(e.polByNS[cp.ns], cp)
		for _, id := range cp.selected {
			w := e.wls[id]
			if cp.ingress {
				w.inPol = append(w.inPol, cp)
			}
			if cp.egress {
				w.outPol = append(w.outPol, cp)
			}
		}
	}
	for ns := range e.polByNS {
		sortPolicies(e.polByNS[ns])
	}
	for _, w := range e.wls {
		if w != nil {
			markBlocks(w)
		}
	}
	e.allFlows()
	e.refreshSites(map[string]bool{})
	views := make([]*view.View, len(names))
	parallel(len(names), func(i int) { views[i] = e.buildView(e.nodes[names[i]]) })
	for i, name := range names {
		nd := e.nodes[name]
		nd.version = in.VersionBase + 1
		views[i].Version = nd.version
		nd.view = views[i]
	}
	return e, nil
}

func sortPolicies(ps []*cpolicy) {
	slices.SortFunc(ps, func(a, b *cpolicy) int { return strings.Compare(a.key, b.key) })
}

// Baseline returns the engine's baseline.
func (e *Engine) Baseline() policy.Baseline { return e.baseline }

// View returns the current view of a node, or nil. The view must not be
// modified.
func (e *Engine) View(nodeName string) *view.View {
	if nd, ok := e.nodes[nodeName]; ok {
		return nd.view
	}
	return nil
}

// Nodes returns the names of all nodes, sorted.
func (e *Engine) Nodes() []string {
	out := make([]string, 0, len(e.nodes))
	for n := range e.nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Stats describes the size of the computed state.
type Stats struct {
	Nodes, Workloads, Policies, Identities int
	// Flows is the number of allowed (source, destination) workload pairs.
	Flows int
	// PeerEntries is the sum over nodes of the number of peers in the view.
	PeerEntries int
}

// Stats counts what the engine holds.
func (e *Engine) Stats() Stats {
	s := Stats{Nodes: len(e.nodes), Policies: len(e.policies), Identities: len(e.ids.byKey)}
	for _, w := range e.wls {
		if w != nil {
			s.Workloads++
			s.Flows += len(w.out)
		}
	}
	for _, nd := range e.nodes {
		s.PeerEntries += len(nd.view.Peers)
	}
	return s
}

// index adds a workload to the namespace's member list and label index.
func (ns *namespace) index(id int32, l map[string]string) {
	ns.members.add(id)
	for k, v := range l {
		m := ns.byLabel[k]
		if m == nil {
			m = map[string]idlist{}
			ns.byLabel[k] = m
		}
		list := m[v]
		list.add(id)
		m[v] = list
	}
}

// unindex removes what index added.
func (ns *namespace) unindex(id int32, l map[string]string) {
	ns.members.remove(id)
	for k, v := range l {
		list := ns.byLabel[k][v]
		list.remove(id)
		if len(list) == 0 {
			delete(ns.byLabel[k], v)
		} else {
			ns.byLabel[k][v] = list
		}
	}
}

func (e *Engine) putNamespace(ns inventory.Namespace) *namespace {
	n, ok := e.namespaces[ns.Name]
	if !ok {
		n = &namespace{name: ns.Name, byLabel: map[string]map[string]idlist{}}
		e.namespaces[ns.Name] = n
	}
	n.labels = labels.Set(ns.EffectiveLabels())
	n.monitor = ns.Monitor
	return n
}

// checkIP refuses overlay addresses that are not IPv4.
func checkIP(w *inventory.Workload) error {
	if _, ok := view.AddrFrom(w.IP); !ok {
		return fmt.Errorf("workload %s: address %v: the overlay is IPv4 (100.64.0.0/10); give an IPv4 address", w.Key(), w.IP)
	}
	return nil
}

// addWorkload indexes a new workload. When bulk is false it also updates
// policy selections and peer member sets.
func (e *Engine) addWorkload(w inventory.Workload, bulk bool) error {
	key := w.Key()
	if err := checkIP(&w); err != nil {
		return err
	}
	if _, dup := e.byKey[key]; dup {
		return fmt.Errorf("workload %s is listed twice (a node is itself a workload named after it in its namespace)", key)
	}
	if w.Node == "" {
		return fmt.Errorf("workload %s: no node: say which node hosts it", key)
	}
	nd, ok := e.nodes[w.Node]
	if !ok && !(bulk && w.Name == w.Node) {
		return fmt.Errorf("workload %s: node %q is unknown: add the node first", key, w.Node)
	}
	ns, ok := e.namespaces[w.Namespace]
	if !ok {
		ns = e.putNamespace(inventory.Namespace{Name: w.Namespace})
	}
	var id int32
	if n := len(e.free); n > 0 {
		id = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		id = int32(len(e.wls))
		e.wls = append(e.wls, nil)
	}
	wl := &workload{id: id, w: w, ns: ns}
	wl.idKey = identityKey(&w)
	wl.identity = e.ids.acquire(wl.idKey)
	e.wls[id] = wl
	e.byKey[key] = id
	ns.index(id, w.Labels)
	if nd != nil {
		nd.members.add(id)
		wl.host = nd
	}
	e.syncHot(wl)
	e.ipDirty = true
	if !bulk {
		e.indexInPolicies(wl)
	}
	return nil
}

// removeWorkload drops a workload from every index. Its partners' lists
// must already be updated by the caller.
func (e *Engine) removeWorkload(wl *workload) {
	for _, cp := range e.policies {
		cp.selected.remove(wl.id)
		for _, rules := range [][]crule{cp.in, cp.out} {
			for _, r := range rules {
				for _, pe := range r.peers {
					pe.members.clear(wl.id)
				}
			}
		}
	}
	wl.ns.unindex(wl.id, wl.w.Labels)
	if nd, ok := e.nodes[wl.w.Node]; ok {
		nd.members.remove(wl.id)
	}
	e.ids.release(wl.idKey)
	delete(e.byKey, wl.w.Key())
	e.wls[wl.id] = nil
	e.hot[wl.id] = hotWorkload{}
	e.free = append(e.free, wl.id)
	e.ipDirty = true
}

// indexInPolicies recomputes which policies select wl and which peers match
// it.
func (e *Engine) indexInPolicies(wl *workload) {
	set := labels.Set(wl.w.Labels)
	for _, cp := range e.policies {
		if cp.ns == wl.w.Namespace && cp.pods.Matches(set) {
			cp.selected.add(wl.id)
		} else {
			cp.selected.remove(wl.id)
		}
		for _, rules := range [][]crule{cp.in, cp.out} {
			for _, r := range rules {
				for _, pe := range r.peers {
					if pe.block != nil {
						continue
					}
					if pe.matches(cp.ns, wl) {
						pe.members.set(wl.id)
					} else {
						pe.members.clear(wl.id)
					}
				}
			}
		}
	}
	e.setPolicies(wl)
}

// setPolicies recomputes which policies select wl, per direction, from the
// policies' selections.
func (e *Engine) setPolicies(wl *workload) {
	wl.inPol, wl.outPol = wl.inPol[:0], wl.outPol[:0]
	for _, cp := range e.polByNS[wl.w.Namespace] {
		if cp.selected.has(wl.id) {
			if cp.ingress {
				wl.inPol = append(wl.inPol, cp)
			}
			if cp.egress {
				wl.outPol = append(wl.outPol, cp)
			}
		}
	}
	markBlocks(wl)
}

func (pe *cpeer) matches(policyNS string, wl *workload) bool {
	if pe.nss != nil {
		if !pe.nss.Matches(wl.ns.labels) {
			return false
		}
	} else if wl.w.Namespace != policyNS {
		return false
	}
	return pe.pods == nil || pe.pods.Matches(labels.Set(wl.w.Labels))
}

// compile fills cp from p, computing selections with the label index.
// It only reads engine state, so policies compile in parallel.
func (e *Engine) compile(cp *cpolicy, p *policy.Policy) {
	cp.p, cp.key, cp.ns = p, p.Key(), p.Namespace
	cp.pods = policy.Selector(&p.Spec.PodSelector)
	cp.ingress, cp.egress = policy.Isolation(&p.NetworkPolicy)
	cp.in, cp.out, cp.selected = nil, nil, nil
	if ns, ok := e.namespaces[cp.ns]; ok {
		e.eachSelected(ns, cp.pods, func(id int32) { cp.selected = append(cp.selected, id) })
		slices.Sort(cp.selected)
	}
	for _, r := range p.Spec.Ingress {
		cp.in = append(cp.in, e.compileRule(cp.ns, r.From, r.Ports))
	}
	for _, r := range p.Spec.Egress {
		cp.out = append(cp.out, e.compileRule(cp.ns, r.To, r.Ports))
	}
	cp.blockIn, cp.blockOut = hasBlock(cp.in), hasBlock(cp.out)
}

func hasBlock(rules []crule) bool {
	for _, r := range rules {
		for _, pe := range r.peers {
			if pe.block != nil {
				return true
			}
		}
	}
	return false
}

func (e *Engine) compileRule(policyNS string, peers []networkingPeer, ports []networkingPort) crule {
	r := crule{any: len(peers) == 0, ports: compilePorts(ports)}
	for i := range peers {
		pp := &peers[i]
		pe := &cpeer{}
		if pp.IPBlock != nil {
			b := &cblock{cidr: netip.MustParsePrefix(pp.IPBlock.CIDR)}
			for _, ex := range pp.IPBlock.Except {
				b.except = append(b.except, netip.MustParsePrefix(ex))
			}
			b.parts = subtract(b.cidr, b.except)
			for _, part := range b.parts {
				if vp, ok := view.PrefixFrom(part); ok {
					b.v4 = append(b.v4, vp)
				}
			}
			pe.block = b
			r.peers = append(r.peers, pe)
			continue
		}
		if pp.PodSelector != nil {
			pe.pods = policy.Selector(pp.PodSelector)
		}
		if pp.NamespaceSelector != nil {
			pe.nss = policy.Selector(pp.NamespaceSelector)
		}
		pods := pe.pods
		if pods == nil {
			pods = labels.Everything()
		}
		visit := func(id int32) { pe.members.set(id) }
		if pe.nss == nil {
			if ns, ok := e.namespaces[policyNS]; ok {
				e.eachSelected(ns, pods, visit)
			}
		} else {
			for _, ns := range e.namespaces {
				if pe.nss.Matches(ns.labels) {
					e.eachSelected(ns, pods, visit)
				}
			}
		}
		r.peers = append(r.peers, pe)
	}
	return r
}

// eachSelected calls f for each workload of ns that sel matches, using the
// label index to narrow the candidates.
func (e *Engine) eachSelected(ns *namespace, sel labels.Selector, f func(int32)) {
	cands := ns.members
	reqs, _ := sel.Requirements()
	var union []idlist
	for _, r := range reqs {
		var lists []idlist
		switch r.Operator() {
		case "=", "==", "in":
			for v := range r.Values() {
				lists = append(lists, ns.byLabel[r.Key()][v])
			}
		case "exists":
			for _, l := range ns.byLabel[r.Key()] {
				lists = append(lists, l)
			}
		default:
			continue
		}
		n := 0
		for _, l := range lists {
			n += len(l)
		}
		if union == nil || n < total(union) {
			union = lists
		}
	}
	if union != nil {
		if len(union) == 1 {
			cands = union[0]
		} else {
			var merged idlist
			for _, l := range union {
				merged = append(merged, l...)
			}
			slices.Sort(merged)
			cands = slices.Compact(merged)
		}
	}
	for _, id := range cands {
		if sel.Matches(labels.Set(e.wls[id].w.Labels)) {
			f(id)
		}
	}
}

func total(ls []idlist) int {
	n := 0
	for _, l := range ls {
		n += len(l)
	}
	return n
}

// subtract returns cidr minus the except prefixes as disjoint prefixes.
func subtract(cidr netip.Prefix, except []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	var walk func(p netip.Prefix)
	walk = func(p netip.Prefix) {
		overlap := false
		for _, e := range except {
			if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
				return // p lies inside an except
			}
			if p.Contains(e.Addr()) {
				overlap = true
			}
		}
		if !overlap || p.Bits() == p.Addr().BitLen() {
			out = append(out, p)
			return
		}
		lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
		hiAddr := p.Addr().AsSlice()
		bit := p.Bits()
		hiAddr[bit/8] |= 0x80 >> (bit % 8)
		a, _ := netip.AddrFromSlice(hiAddr)
		walk(lo)
		walk(netip.PrefixFrom(a, p.Bits()+1))
	}
	walk(cidr)
	return out
}

// parallel runs f(0..n-1) on all cores.
func parallel(n int, f func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	const chunk = 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				start := next
				next += chunk
				mu.Unlock()
				if start >= n {
					return
				}
				end := min(start+chunk, n)
				for i := start; i < end; i++ {
					f(i)
				}
			}
		}()
	}
	wg.Wait()
}

// WorkloadAt returns the workload (a node's own workload included) with
// overlay address a.
func (e *Engine) WorkloadAt(a netip.Addr) (inventory.Workload, bool) {
	e.refreshIPIndex()
	i, ok := slices.BinarySearchFunc(e.ipIndex, a, func(id int32, a netip.Addr) int { return e.wls[id].w.IP.Compare(a) })
	if !ok {
		return inventory.Workload{}, false
	}
	return e.wls[e.ipIndex[i]].w, true
}
