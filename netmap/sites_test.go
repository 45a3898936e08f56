package netmap

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// siteOracle is what the views must hold for sites, computed with the
// evaluator's AllowedSiteCIDRs.
type siteOracle struct {
	// toGW[node][gateway] are the site prefixes node's view gives gateway.
	toGW map[string]map[string][]netip.Prefix
	// fromGW[gateway][node] are the addresses of node's workloads whose
	// site flows gateway carries.
	fromGW map[string]map[string][]netip.Addr
	// standby[a][b]: a holds b as a peer because b is a standby gateway
	// for site addresses a (or a's workloads) exchange flows with, or
	// the other way round.
	standby map[string]map[string]bool
}

// standbys returns the live, online gateways other than primary whose
// approved routes hold some address of part.
func standbys(w *world, part []netip.Prefix, primary string) []string {
	var out []string
	for _, n := range w.nodes {
		g := n.Name
		if g == primary || w.offline[g] || len(w.routes[g]) == 0 {
			continue
		}
		if len(intersect(part, w.routes[g])) > 0 {
			out = append(out, g)
		}
	}
	return out
}

func (o *siteOracle) addStandby(n string, gws []string) {
	for _, g := range gws {
		if g == n {
			continue
		}
		for _, pair := range [2][2]string{{n, g}, {g, n}} {
			if o.standby[pair[0]] == nil {
				o.standby[pair[0]] = map[string]bool{}
			}
			o.standby[pair[0]][pair[1]] = true
		}
	}
}

// region returns the site addresses each gateway is primary for: its
// approved routes minus those of every online gateway and of every
// gateway with a lower name and the same state (online or not).
func region(w *world) map[string][]netip.Prefix {
	live := map[string]bool{}
	for _, n := range w.nodes {
		live[n.Name] = true
	}
	var gws []string
	for g := range w.routes {
		if live[g] {
			gws = append(gws, g)
		}
	}
	// Online gateways first, each group by name.
	slices.SortFunc(gws, func(a, b string) int {
		if w.offline[a] != w.offline[b] {
			if w.offline[a] {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	out := map[string][]netip.Prefix{}
	var earlier []netip.Prefix
	for _, g := range gws {
		var mine []netip.Prefix
		for _, r := range w.routes[g] {
			mine = append(mine, subtract(r, earlier)...)
		}
		out[g] = policy.AggregatePrefixes(mine)
		earlier = append(earlier, w.routes[g]...)
	}
	return out
}

// intersect returns the addresses in both prefix sets.
func intersect(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range a {
		for _, y := range b {
			switch {
			case x.Bits() <= y.Bits() && x.Contains(y.Addr()):
				out = append(out, y)
			case y.Bits() <= x.Bits() && y.Contains(x.Addr()):
				out = append(out, x)
			}
		}
	}
	return policy.AggregatePrefixes(out)
}

// monitorPolicies stand for monitor mode in the evaluator: a namespace in
// monitor mode lets everything through on its side, as an allow-all
// policy in it would.
func monitorPolicies(w *world) []*policy.Policy {
	var out []*policy.Policy
	for _, ns := range w.namespaces {
		if !ns.Monitor {
			continue
		}
		np := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "monitor-allow-all", Namespace: ns.Name}}
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		out = append(out, &policy.Policy{NetworkPolicy: np})
	}
	return out
}

func newSiteOracle(w *world) *siteOracle {
	ev := policy.NewEvaluator(w.namespaces, append(slices.Clone(w.policies), monitorPolicies(w)...), w.baseline)
	ports := candidatePorts(w)
	for _, s := range w.sites {
		for _, p := range s.Ports {
			ports[p.Protocol] = append(ports[p.Protocol], p.Port)
		}
	}
	o := &siteOracle{toGW: map[string]map[string][]netip.Prefix{}, fromGW: map[string]map[string][]netip.Addr{}, standby: map[string]map[string]bool{}}
	regions := region(w)
	all := w.all()
	for i := range w.sites {
		s := &w.sites[i]
		for j := range all {
			wl := &all[j]
			// The union over protocols, ports and directions of the
			// exact allowed site CIDRs.
			var allowed []netip.Prefix
			for proto, ps := range ports {
				for _, port := range ps {
					allowed = append(allowed, ev.AllowedSiteCIDRs(wl, s, true, proto, port)...)
					allowed = append(allowed, ev.AllowedSiteCIDRs(wl, s, false, proto, port)...)
				}
			}
			allowed = policy.AggregatePrefixes(allowed)
			for g, reg := range regions {
				if g == wl.Node {
					continue
				}
				part := intersect(allowed, reg)
				if len(part) == 0 {
					continue
				}
				if o.toGW[wl.Node] == nil {
					o.toGW[wl.Node] = map[string][]netip.Prefix{}
				}
				o.toGW[wl.Node][g] = policy.AggregatePrefixes(append(o.toGW[wl.Node][g], part...))
				o.addStandby(wl.Node, standbys(w, part, g))
				if o.fromGW[g] == nil {
					o.fromGW[g] = map[string][]netip.Addr{}
				}
				if !slices.Contains(o.fromGW[g][wl.Node], wl.IP) {
					o.fromGW[g][wl.Node] = append(o.fromGW[g][wl.Node], wl.IP)
				}
			}
		}
	}
	// Site to site: for one address of every /27 of each site (routes
	// and the random ipBlocks cut sites no finer), the addresses of every
	// other site it may exchange a flow with, behind another gateway.
	regionOf := func(a netip.Addr) string {
		for g, reg := range regions {
			for _, p := range reg {
				if p.Contains(a) {
					return g
				}
			}
		}
		return ""
	}
	add := func(n, g string, ps []netip.Prefix) {
		if o.toGW[n] == nil {
			o.toGW[n] = map[string][]netip.Prefix{}
		}
		o.toGW[n][g] = policy.AggregatePrefixes(append(o.toGW[n][g], ps...))
	}
	for i := range w.sites {
		s := &w.sites[i]
		for _, c := range s.CIDRs {
			for off := 0; off < 1<<(32-c.Bits()); off += 32 {
				a4 := c.Addr().As4()
				a4[3] += byte(off)
				a := netip.AddrFrom4(a4)
				ga := regionOf(a)
				if ga == "" {
					continue
				}
				host := s.Host(a)
				for j := range w.sites {
					if j == i {
						continue
					}
					t := &w.sites[j]
					var allowed []netip.Prefix
					for proto, ps := range ports {
						for _, port := range ps {
							allowed = append(allowed, ev.AllowedSiteCIDRs(&host, t, true, proto, port)...)
							allowed = append(allowed, ev.AllowedSiteCIDRs(&host, t, false, proto, port)...)
						}
					}
					allowed = policy.AggregatePrefixes(allowed)
					for gb, reg := range regions {
						if gb == ga {
							continue
						}
						if part := intersect(allowed, reg); len(part) > 0 {
							add(ga, gb, part)
							add(gb, ga, []netip.Prefix{netip.PrefixFrom(a, 27)})
							o.addStandby(ga, standbys(w, part, gb))
							o.addStandby(gb, standbys(w, []netip.Prefix{netip.PrefixFrom(a, 27)}, ga))
						}
					}
				}
			}
		}
	}
	return o
}

// siteAllowedIPs returns the AllowedIPs of a peer outside the overlay.
func siteAllowedIPs(p *view.Peer) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range p.AllowedIPs {
		if !inventory.OverlayRange.Contains(a.Addr.Netip()) {
			out = append(out, a.Netip())
		}
	}
	return out
}

// TestSiteViewsMatchEvaluator: for random sites, routes and policies,
// each node's AllowedIPs for each gateway are exactly the union over its
// workloads of the evaluator's allowed site CIDRs within the gateway's
// primary region, a node without such flows holds no gateway peer, and
// the gateway holds the node with exactly those workloads' addresses.
func TestSiteViewsMatchEvaluator(t *testing.T) {
	withSites := 0
	for seed := uint64(0); seed < 200; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 23))
			w := newWorld(r)
			if len(w.sites) == 0 {
				w.addSites(r)
			}
			e, err := New(w.input())
			if err != nil {
				t.Fatal(err)
			}
			o := newSiteOracle(w)
			if len(o.toGW) > 0 {
				withSites++
			}
			for _, n := range w.nodes {
				v := e.View(n.Name)
				got := map[string][]netip.Prefix{}
				for i := range v.Peers {
					if ps := siteAllowedIPs(&v.Peers[i]); len(ps) > 0 {
						got[v.Peers[i].Node] = ps
					}
				}
				want := o.toGW[n.Name]
				if want == nil {
					want = map[string][]netip.Prefix{}
				}
				if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
					t.Fatalf("node %s: site AllowedIPs by gateway (-want +got):\n%s", n.Name, d)
				}
			}
			checkViews(t, w, e)
			checkSiteRules(t, w, e)
		})
	}
	if withSites < 50 {
		t.Fatalf("only %d of 200 worlds had a site flow through a gateway; the test covers too little", withSites)
	}
}

// TestGatewayPeerExample: a workload allowed to reach part of a site gets
// the primary gateway with exactly that part; a node with no flow to the
// site gets no gateway; the gateway gets the workload's node as a peer.
func TestGatewayPeerExample(t *testing.T) {
	site := inventory.Site{Name: "db", Namespace: "site-eu", Labels: map[string]string{"role": "db"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}, Ports: []inventory.Port{{Port: 5432, Protocol: inventory.TCP}}}
	data, err := os.ReadFile(filepath.Join("testdata", "web-to-db.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := policy.Parse("web-to-db.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	node := func(name string, i byte) inventory.Node {
		return inventory.Node{Name: name, Namespace: "infra", IP: netip.AddrFrom4([4]byte{100, 64, i, 1}), PublicKey: "K" + name,
			Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, i}), 51820)}}
	}
	in := Input{
		Namespaces: []inventory.Namespace{{Name: "prod"}, {Name: "infra"}, {Name: "site-eu"}},
		Nodes:      []inventory.Node{node("app", 1), node("gw-a", 2), node("gw-b", 3), node("other", 4)},
		Workloads: []inventory.Workload{
			{Name: "web", Namespace: "prod", Node: "app", Labels: map[string]string{"app": "web"}, IP: netip.MustParseAddr("100.64.1.10")},
			{Name: "batch", Namespace: "prod", Node: "other", Labels: map[string]string{"app": "batch"}, IP: netip.MustParseAddr("100.64.4.10")},
		},
		Policies: ps,
		Baseline: policy.BaselineDeny,
		Sites:    []inventory.Site{site},
		// Both gateways cover the site; gw-a, the lower name, is primary.
		Routes: map[string][]netip.Prefix{"gw-b": {netip.MustParsePrefix("198.19.0.0/16")}, "gw-a": {netip.MustParsePrefix("198.19.1.0/24")}},
	}
	e, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	pfx := func(ss ...string) []view.Prefix {
		var out []view.Prefix
		for _, s := range ss {
			out = append(out, view.MustPrefix(s))
		}
		return out
	}
	app := e.View("app")
	// gw-b, the standby, is a peer without AllowedIPs: its tunnel is up
	// when it takes over.
	want := []view.Peer{{Node: "gw-a", PublicKey: "Kgw-a", Endpoints: in.Nodes[1].Endpoints, AllowedIPs: pfx("198.19.1.0/25", "198.19.1.192/26")},
		{Node: "gw-b", PublicKey: "Kgw-b", Endpoints: in.Nodes[2].Endpoints}}
	if d := cmp.Diff(want, app.Peers, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Fatalf("app's peers (-want +got):\n%s", d)
	}
	if got := e.View("other").Peers; len(got) != 0 {
		t.Fatalf("other has no flow to the site but holds peers %+v", got)
	}
	if got := e.View("gw-b"); len(got.Peers) != 1 || got.Peers[0].Node != "app" || len(got.Peers[0].AllowedIPs) != 0 || len(got.Sites) != 0 {
		t.Fatalf("gw-b, the standby, holds peers %+v and sites %+v; want app without AllowedIPs, no sites", got.Peers, got.Sites)
	}
	gw := e.View("gw-a")
	want = []view.Peer{{Node: "app", PublicKey: "Kapp", Endpoints: in.Nodes[0].Endpoints, AllowedIPs: pfx("100.64.1.10/32")}}
	if d := cmp.Diff(want, gw.Peers, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Fatalf("gw-a's peers (-want +got):\n%s", d)
	}
	if gw.IdentityOf(view.MustAddr("100.64.1.10")) == view.IdentityUnknown {
		t.Fatalf("gw-a has no identity for web: %+v", gw.Identities)
	}

	// Rejecting gw-a's route moves the site to gw-b, on both sides.
	changed, err := e.SetApprovedRoutes("gw-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"app", "gw-a", "gw-b"}, changed); d != "" {
		t.Fatalf("changed nodes (-want +got):\n%s", d)
	}
	if p := e.View("app").Peers; len(p) != 1 || p[0].Node != "gw-b" {
		t.Fatalf("app's peers after the reject: %+v", p)
	}
	// Deleting the site withdraws the gateway.
	if _, err := e.DeleteSite(site.Key()); err != nil {
		t.Fatal(err)
	}
	for _, n := range e.Nodes() {
		if p := e.View(n).Peers; len(p) != 0 {
			t.Fatalf("node %s holds peers %+v after the site is deleted", n, p)
		}
	}
}

func TestSiteErrors(t *testing.T) {
	e, err := New(Input{Baseline: policy.BaselineDeny, Sites: []inventory.Site{{Name: "a", Namespace: "x", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []inventory.Site{
		{Name: "b", Namespace: "x", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.128/25")}},
		{Name: "c", Namespace: "x", CIDRs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/24")}},
		{Name: "d", Namespace: "x", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.2.5/24")}},
		{Name: "e", Namespace: "x"},
	} {
		if _, err := e.UpsertSite(s); err == nil {
			t.Errorf("site %s %v: accepted", s.Key(), s.CIDRs)
		}
	}
	if _, err := e.SetApprovedRoutes("n", []netip.Prefix{netip.MustParsePrefix("198.19.2.5/24")}); err == nil {
		t.Error("route 198.19.2.5/24 accepted")
	}
}

// checkSiteRules verifies that the rule tables of every workload decide
// its side of the flows with site hosts as the evaluator does, at one
// address of every /27 of each site (the random ipBlocks cut sites no
// finer).
func checkSiteRules(t *testing.T, w *world, e *Engine) {
	t.Helper()
	ev := policy.NewEvaluator(w.namespaces, w.policies, w.baseline)
	ports := candidatePorts(w)
	for _, s := range w.sites {
		for _, p := range s.Ports {
			ports[p.Protocol] = append(ports[p.Protocol], p.Port)
		}
	}
	all := w.all()
	byIP := map[netip.Addr]*inventory.Workload{}
	for i := range all {
		byIP[all[i].IP] = &all[i]
	}
	// samples returns one address of every /27 of the prefixes.
	samples := func(ps []netip.Prefix) []netip.Addr {
		var out []netip.Addr
		for _, c := range ps {
			for off := 0; off < 1<<(32-c.Bits()); off += 32 {
				a4 := c.Addr().As4()
				a4[3] += byte(off)
				out = append(out, netip.AddrFrom4(a4))
			}
		}
		return out
	}
	// A gateway's site rules decide the site hosts' side of their flows
	// with every workload in its view, and with other sites' hosts.
	sites := map[string]*inventory.Site{}
	for i := range w.sites {
		sites[w.sites[i].Key()] = &w.sites[i]
	}
	for _, n := range w.nodes {
		v := e.View(n.Name)
		for _, sr := range v.Sites {
			s := sites[sr.Site]
			var cidrs []netip.Prefix
			for _, c := range sr.CIDRs {
				cidrs = append(cidrs, c.Netip())
			}
			if got, want := cidrs, intersect(region(w)[n.Name], s.CIDRs); !slices.Equal(got, want) {
				t.Fatalf("gateway %s, site %s: CIDRs %v, want %v", n.Name, s.Key(), got, want)
			}
			for _, a := range samples(cidrs) {
				host := s.Host(a)
				type remote struct {
					w  *inventory.Workload
					id view.Identity
				}
				var remotes []remote
				for _, ie := range v.Identities {
					remotes = append(remotes, remote{byIP[ie.IP.Netip()], ie.Identity})
				}
				for _, o := range w.sites {
					if o.Key() == s.Key() {
						continue
					}
					for _, b := range samples(o.CIDRs) {
						h := o.Host(b)
						remotes = append(remotes, remote{&h, view.IdentityUnknown})
					}
				}
				for _, r := range remotes {
					ra, _ := view.AddrFrom(r.w.IP)
					for proto, ps := range ports {
						for _, port := range ps {
							in := ev.Decide(r.w, &host, proto, port).Ingress.Allowed
							if got := sr.Ingress.Allows(r.id, ra, proto, port); got != in {
								t.Fatalf("gateway %s: ingress of %s at %s from %s on %d/%s: rules say %v, evaluator %v\nrules: %+v",
									n.Name, s.Key(), a, r.w.Key(), port, proto, got, in, sr.Ingress)
							}
							out := ev.Decide(&host, r.w, proto, port).Egress.Allowed
							if got := sr.Egress.Allows(r.id, ra, proto, port); got != out {
								t.Fatalf("gateway %s: egress of %s at %s to %s on %d/%s: rules say %v, evaluator %v\nrules: %+v",
									n.Name, s.Key(), a, r.w.Key(), port, proto, got, out, sr.Egress)
							}
						}
					}
				}
			}
		}
	}
	for i := range all {
		local := &all[i]
		var rules *view.WorkloadRules
		for j, wr := range e.View(local.Node).Workloads {
			if wr.Workload == local.Key() {
				rules = &e.View(local.Node).Workloads[j]
			}
		}
		if rules == nil {
			t.Fatalf("no rules for %s", local.Key())
		}
		for _, s := range w.sites {
			for _, c := range s.CIDRs {
				for off := 0; off < 1<<(32-c.Bits()); off += 32 {
					a4 := c.Addr().As4()
					a4[3] += byte(off)
					addr := netip.AddrFrom4(a4)
					host := s.Host(addr)
					va := view.Addr(a4)
					for proto, ps := range ports {
						for _, port := range ps {
							out := ev.Decide(local, &host, proto, port).Egress.Allowed
							if got := rules.Egress.Allows(view.IdentityUnknown, va, proto, port); got != out {
								t.Fatalf("egress of %s to %s (site %s) on %d/%s: rules say %v, evaluator %v\nrules: %+v",
									local.Key(), addr, s.Key(), port, proto, got, out, rules.Egress)
							}
							in := ev.Decide(&host, local, proto, port).Ingress.Allowed
							if got := rules.Ingress.Allows(view.IdentityUnknown, va, proto, port); got != in {
								t.Fatalf("ingress of %s from %s (site %s) on %d/%s: rules say %v, evaluator %v\nrules: %+v",
									local.Key(), addr, s.Key(), port, proto, got, in, rules.Ingress)
							}
						}
					}
				}
			}
		}
	}
}
