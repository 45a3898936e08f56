package netmap

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

// oracle answers flow questions with the reference evaluator.
type oracle struct {
	ev      *policy.Evaluator
	ports   map[inventory.Protocol][]uint16
	monitor map[string]bool // namespaces in monitor mode
}

func newOracle(w *world) *oracle {
	o := &oracle{ev: policy.NewEvaluator(w.namespaces, w.policies, w.baseline), ports: candidatePorts(w), monitor: map[string]bool{}}
	for _, ns := range w.namespaces {
		o.monitor[ns.Name] = ns.Monitor
	}
	return o
}

// flow reports whether a may send to b on some protocol and port: a's
// egress and b's ingress allow it, or are not enforced (monitor mode).
func (o *oracle) flow(a, b *inventory.Workload) bool {
	for proto, ports := range o.ports {
		for _, p := range ports {
			v := o.ev.Decide(a, b, proto, p)
			if (v.Egress.Allowed || o.monitor[a.Namespace]) && (v.Ingress.Allowed || o.monitor[b.Namespace]) {
				return true
			}
		}
	}
	return false
}

// checkViews verifies every view against the reference evaluator.
func checkViews(t *testing.T, w *world, e *Engine) {
	t.Helper()
	o := newOracle(w)
	all := w.all()
	byNode := map[string][]int{}
	nodeOf := map[string]string{}
	for i := range all {
		byNode[all[i].Node] = append(byNode[all[i].Node], i)
		nodeOf[all[i].Key()] = all[i].Node
	}
	truth := o.ev.TruthTable(all)
	so := newSiteOracle(w)
	for _, n := range w.nodes {
		v := e.View(n.Name)
		if v == nil {
			t.Fatalf("no view for node %s", n.Name)
		}
		wantPeers := map[string]bool{}
		partners := map[int]bool{}
		for _, li := range byNode[n.Name] {
			partners[li] = true
			for ri := range all {
				if li == ri {
					continue
				}
				if o.flow(&all[li], &all[ri]) || o.flow(&all[ri], &all[li]) {
					partners[ri] = true
					if all[ri].Node != n.Name {
						wantPeers[all[ri].Node] = true
					}
				}
			}
		}
		// Gateways of the sites this node's workloads have flows with,
		// and on a gateway the nodes whose site flows it carries.
		sitePeers := map[string]bool{}
		for g := range so.toGW[n.Name] {
			sitePeers[g] = true
		}
		for g := range so.standby[n.Name] {
			sitePeers[g] = true
		}
		siteAddrs := map[netip.Addr]bool{}
		for other, addrs := range so.fromGW[n.Name] {
			sitePeers[other] = true
			for _, a := range addrs {
				siteAddrs[a] = true
				if id := v.IdentityOf(view.Addr(a.As4())); id == view.IdentityUnknown {
					t.Fatalf("node %s: gateway has no identity for %s, whose site flows it carries", n.Name, a)
				}
			}
		}
		for p := range sitePeers {
			wantPeers[p] = true
		}
		gotPeers := map[string]bool{}
		for _, p := range v.Peers {
			gotPeers[p.Node] = true
		}
		// Every allowed row of the truth table (declared ports) makes the
		// two nodes peers.
		for _, row := range truth {
			if !row.Allowed {
				continue
			}
			from, to := nodeOf[row.From], nodeOf[row.To]
			if from != to && (from == n.Name || to == n.Name) {
				other := from
				if other == n.Name {
					other = to
				}
				if !gotPeers[other] {
					t.Fatalf("node %s: truth table allows %s -> %s %d/%s but %s is not a peer", n.Name, row.From, row.To, row.Port, row.Protocol, other)
				}
			}
		}
		if d := cmp.Diff(wantPeers, gotPeers); d != "" {
			t.Fatalf("node %s: peers differ from the truth table (-want +got):\n%s", n.Name, d)
		}
		// AllowedIPs: exactly the partners on that peer.
		for _, p := range v.Peers {
			var want []view.Prefix
			for ri := range partners {
				if all[ri].Node == p.Node {
					a, _ := view.AddrFrom(all[ri].IP)
					want = append(want, view.HostPrefix(a))
				}
			}
			for _, a := range so.fromGW[n.Name][p.Node] {
				if va := view.HostPrefix(view.Addr(a.As4())); !slices.Contains(want, va) {
					want = append(want, va)
				}
			}
			for _, sp := range so.toGW[n.Name][p.Node] {
				vp, _ := view.PrefixFrom(sp)
				want = append(want, vp)
			}
			sort.Slice(want, func(i, j int) bool {
				if c := want[i].Addr.Compare(want[j].Addr); c != 0 {
					return c < 0
				}
				return want[i].Bits < want[j].Bits
			})
			if d := cmp.Diff(want, p.AllowedIPs); d != "" {
				t.Fatalf("node %s peer %s: AllowedIPs (-want +got):\n%s", n.Name, p.Node, d)
			}
		}
		// Nothing about any other node leaks into the view.
		js, _ := json.Marshal(v)
		text := string(js)
		for _, other := range w.nodes {
			if other.Name == n.Name || wantPeers[other.Name] {
				continue
			}
			for _, s := range []string{other.Name, other.PublicKey, other.Endpoints[0].String()} {
				if strings.Contains(text, s) {
					t.Fatalf("node %s: view names %q of non-peer node %s:\n%s", n.Name, s, other.Name, text)
				}
			}
			for ri := range all {
				if all[ri].Node == other.Name && !partners[ri] && !siteAddrs[all[ri].IP] {
					ip := all[ri].IP.String()
					if strings.Contains(text, `"`+ip+`"`) || strings.Contains(text, `"`+ip+`/32"`) {
						t.Fatalf("node %s: view holds address %s of non-peer node %s", n.Name, ip, other.Name)
					}
				}
			}
		}
		// The rule tables decide each side exactly as the evaluator does,
		// for every partner address.
		for _, li := range byNode[n.Name] {
			local := &all[li]
			var rules *view.WorkloadRules
			for i := range v.Workloads {
				if v.Workloads[i].Workload == local.Key() {
					rules = &v.Workloads[i]
				}
			}
			if rules == nil {
				t.Fatalf("node %s: no rules for %s", n.Name, local.Key())
			}
			for ri := range partners {
				if ri == li {
					continue
				}
				remote := &all[ri]
				raddr, _ := view.AddrFrom(remote.IP)
				id := v.IdentityOf(raddr)
				if id == view.IdentityUnknown {
					t.Fatalf("node %s: partner %s has no identity", n.Name, remote.Key())
				}
				for proto, ports := range o.ports {
					for _, port := range ports {
						in := o.ev.Decide(remote, local, proto, port).Ingress.Allowed
						if got := rules.Ingress.Allows(id, raddr, proto, port); got != in {
							t.Fatalf("node %s: ingress of %s from %s on %d/%s: rules say %v, evaluator %v\nrules: %+v",
								n.Name, local.Key(), remote.Key(), port, proto, got, in, rules.Ingress)
						}
						out := o.ev.Decide(local, remote, proto, port).Egress.Allowed
						if got := rules.Egress.Allows(id, raddr, proto, port); got != out {
							t.Fatalf("node %s: egress of %s to %s on %d/%s: rules say %v, evaluator %v\nrules: %+v",
								n.Name, local.Key(), remote.Key(), port, proto, got, out, rules.Egress)
						}
					}
				}
			}
		}
	}
}

func TestViewsMatchEvaluator(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			w := newWorld(r)
			e, err := New(w.input())
			if err != nil {
				t.Fatal(err)
			}
			checkViews(t, w, e)
		})
	}
}

// views returns every view with versions zeroed, for comparison.
func views(e *Engine) map[string]view.View {
	out := map[string]view.View{}
	for _, n := range e.Nodes() {
		v := *e.View(n)
		v.Version = 0
		out[n] = v
	}
	return out
}

// TestIncrementalMatchesFull applies random changes one at a time; after
// each, the engine must equal a fresh full computation, and the reported
// nodes must be exactly those whose view changed.
func TestIncrementalMatchesFull(t *testing.T) {
	seeds := uint64(120)
	if testing.Short() { // make quick
		seeds = 20
	}
	for seed := uint64(0); seed < seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 11))
			w := newWorld(r)
			e, err := New(w.input())
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; step < 25; step++ {
				before := views(e)
				prev := map[string]uint64{}
				prevViews := map[string]*view.View{}
				for _, n := range e.Nodes() {
					prev[n] = e.View(n).Version
					prevViews[n] = e.View(n)
				}
				desc, changed := applyRandomChange(t, r, w, e)
				after := views(e)
				full, err := New(w.input())
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(canonical(full), canonical(e), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
					cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
					cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
					t.Fatalf("step %d (%s): incremental differs from full (-full +incremental):\n%s", step, desc, d)
				}
				var want []string
				for n := range unionKeys(before, after) {
					b, inB := before[n]
					a, inA := after[n]
					if inB != inA || !reflect.DeepEqual(b, a) {
						want = append(want, n)
					}
				}
				sort.Strings(want)
				if d := cmp.Diff(want, changed); d != "" {
					t.Fatalf("step %d (%s): reported changed nodes (-want +got):\n%s", step, desc, d)
				}
				for _, n := range changed {
					// The delta from the old view rebuilds the new one.
					if old, cur := prevViews[n], e.View(n); old != nil && cur != nil {
						d := view.Diff(old, cur)
						got, err := d.Apply(old)
						if err != nil {
							t.Fatal(err)
						}
						if diff := cmp.Diff(cur, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
							t.Fatalf("step %d: node %s: delta does not rebuild the view (-want +got):\n%s", step, n, diff)
						}
						if d.Empty() {
							t.Fatalf("step %d: node %s reported changed but the delta is empty", step, n)
						}
					}
					if v := e.View(n); v != nil && v.Version <= prev[n] {
						t.Fatalf("step %d: node %s changed but its version went from %d to %d", step, n, prev[n], v.Version)
					}
				}
			}
			checkViews(t, w, e)
		})
	}
}

// canonical returns the views with identity numbers replaced by their rank
// among the live identity keys, so engines that allocated numbers in
// different orders compare equal when they agree.
func canonical(e *Engine) map[string]view.View {
	keys := make([]string, 0, len(e.ids.byKey))
	for k := range e.ids.byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rank := map[view.Identity]view.Identity{}
	for i, k := range keys {
		rank[e.ids.byKey[k].id] = view.Identity(i + 1)
	}
	out := map[string]view.View{}
	for name, v := range views(e) {
		v.Identities = append([]view.IdentityEntry(nil), v.Identities...)
		for i := range v.Identities {
			v.Identities[i].Identity = rank[v.Identities[i].Identity]
		}
		v.Workloads = append([]view.WorkloadRules(nil), v.Workloads...)
		for i := range v.Workloads {
			wr := &v.Workloads[i]
			wr.Identity = rank[wr.Identity]
			for _, r := range []*view.Rules{&wr.Ingress, &wr.Egress} {
				r.Identities = append([]view.IdentityRule(nil), r.Identities...)
				for j := range r.Identities {
					r.Identities[j].Identity = rank[r.Identities[j].Identity]
				}
				sort.Slice(r.Identities, func(a, b int) bool { return r.Identities[a].Identity < r.Identities[b].Identity })
			}
		}
		v.Sites = append([]view.SiteRules(nil), v.Sites...)
		for i := range v.Sites {
			for _, r := range []*view.Rules{&v.Sites[i].Ingress, &v.Sites[i].Egress} {
				r.Identities = append([]view.IdentityRule(nil), r.Identities...)
				for j := range r.Identities {
					r.Identities[j].Identity = rank[r.Identities[j].Identity]
				}
				sort.Slice(r.Identities, func(a, b int) bool { return r.Identities[a].Identity < r.Identities[b].Identity })
			}
		}
		out[name] = v
	}
	return out
}

func unionKeys(a, b map[string]view.View) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func applyRandomChange(t *testing.T, r *rand.Rand, w *world, e *Engine) (string, []string) {
	t.Helper()
	must := func(ch []string, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	switch r.IntN(12) {
	case 0: // relabel a workload
		if len(w.workloads) == 0 {
			break
		}
		i := r.IntN(len(w.workloads))
		w.workloads[i].Labels = randLabels(r)
		w.workloads[i].Ports = randPorts(r)
		return "relabel " + w.workloads[i].Key(), must(e.UpsertWorkload(w.workloads[i]))
	case 1: // add a workload
		ni := r.IntN(len(w.nodes))
		var node int
		fmt.Sscanf(w.nodes[ni].Name, "node-%03d-q", &node)
		wl := w.randWorkloadOn(r, w.nodes[ni].Name, node, 100+r.IntN(100))
		for _, x := range w.all() {
			if x.Key() == wl.Key() || x.IP == wl.IP {
				return "none", nil
			}
		}
		w.workloads = append(w.workloads, wl)
		return "add " + wl.Key(), must(e.UpsertWorkload(wl))
	case 2: // delete a workload
		if len(w.workloads) == 0 {
			break
		}
		i := r.IntN(len(w.workloads))
		key := w.workloads[i].Key()
		w.workloads = append(w.workloads[:i], w.workloads[i+1:]...)
		return "delete " + key, must(e.DeleteWorkload(key))
	case 3, 4: // add or replace a policy
		p := randPolicy(r, fmt.Sprintf("p%d", r.IntN(9)))
		for i, q := range w.policies {
			if q.Key() == p.Key() {
				w.policies = append(w.policies[:i], w.policies[i+1:]...)
				break
			}
		}
		w.policies = append(w.policies, p)
		return "upsert policy " + p.Key(), must(e.UpsertPolicy(p))
	case 5: // delete a policy
		if len(w.policies) == 0 {
			break
		}
		i := r.IntN(len(w.policies))
		key := w.policies[i].Key()
		w.policies = append(w.policies[:i], w.policies[i+1:]...)
		return "delete policy " + key, must(e.DeletePolicy(key))
	case 6: // a node joins
		i := 20 + r.IntN(20)
		n := w.randNode(r, i)
		for _, x := range w.nodes {
			if x.Name == n.Name {
				return "none", nil
			}
		}
		for _, x := range w.all() {
			if x.Key() == n.Namespace+"/"+n.Name {
				return "none", nil
			}
		}
		w.nodes = append(w.nodes, n)
		if r.IntN(2) == 0 {
			return "join " + n.Name, must(e.UpsertNode(n))
		}
		var ws []inventory.Workload
		for j, k := 0, r.IntN(3); j < k; j++ {
			ws = append(ws, w.randWorkloadOn(r, n.Name, i, j))
		}
		w.workloads = append(w.workloads, ws...)
		return "join with workloads " + n.Name, must(e.SetNode(n, ws))
	case 7: // a node leaves, or changes its labels or key
		if len(w.nodes) <= 1 {
			break
		}
		i := r.IntN(len(w.nodes))
		n := w.nodes[i]
		switch r.IntN(3) {
		case 0:
			n.Labels = randLabels(r)
			n.PublicKey = n.PublicKey + "x"
			w.nodes[i] = n
			return "update node " + n.Name, must(e.UpsertNode(n))
		case 1: // re-register with a changed workload list
			var ws, keep []inventory.Workload
			for _, x := range w.workloads {
				if x.Node != n.Name {
					keep = append(keep, x)
				} else if r.IntN(3) > 0 {
					x.Labels = randLabels(r)
					ws = append(ws, x)
				}
			}
			w.workloads = append(keep, ws...)
			return "re-register " + n.Name, must(e.SetNode(n, ws))
		}
		w.nodes = append(w.nodes[:i], w.nodes[i+1:]...)
		var keep []inventory.Workload
		for _, x := range w.workloads {
			if x.Node != n.Name {
				keep = append(keep, x)
			}
		}
		w.workloads = keep
		return "leave " + n.Name, must(e.DeleteNode(n.Name))
	case 8: // relabel a namespace, or switch its mode
		i := r.IntN(len(w.namespaces))
		if r.IntN(2) == 0 {
			w.namespaces[i].Monitor = !w.namespaces[i].Monitor
			return "switch mode of namespace " + w.namespaces[i].Name, must(e.UpsertNamespace(w.namespaces[i]))
		}
		w.namespaces[i].Labels = map[string]string{"team": []string{"red", "blue", "green"}[r.IntN(3)]}
		return "relabel namespace " + w.namespaces[i].Name, must(e.UpsertNamespace(w.namespaces[i]))
	case 9: // add, change or delete a site
		s := randSite(r, r.IntN(len(siteCIDRs)))
		for i, x := range w.sites {
			if x.Name == s.Name {
				w.sites = append(w.sites[:i], w.sites[i+1:]...)
				if r.IntN(3) == 0 {
					return "delete site " + x.Key(), must(e.DeleteSite(x.Key()))
				}
				s.Namespace = x.Namespace // replace it, keeping its key
				break
			}
		}
		w.sites = append(w.sites, s)
		return "upsert site " + s.Key(), must(e.UpsertSite(s))
	case 10: // approve or withdraw a node's routes (the node may be gone)
		name := w.nodes[r.IntN(len(w.nodes))].Name
		if r.IntN(5) == 0 {
			name = fmt.Sprintf("node-%03d-q", 20+r.IntN(20))
		}
		var routes []netip.Prefix
		if r.IntN(3) > 0 {
			routes = randRoutes(r)
			w.routes[name] = routes
		} else {
			delete(w.routes, name)
		}
		return fmt.Sprintf("routes of %s: %v", name, routes), must(e.SetApprovedRoutes(name, routes))
	case 11: // a node goes offline or comes back (the node may be gone)
		name := w.nodes[r.IntN(len(w.nodes))].Name
		if r.IntN(5) == 0 {
			name = fmt.Sprintf("node-%03d-q", 20+r.IntN(20))
		}
		online := w.offline[name]
		if online {
			delete(w.offline, name)
		} else {
			w.offline[name] = true
		}
		return fmt.Sprintf("%s online: %v", name, online), e.SetGatewayOnline(name, online)
	}
	return "none", nil
}
