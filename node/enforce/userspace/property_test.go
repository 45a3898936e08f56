package userspace

import (
	"fmt"
	"github.com/latchnet/latch/node/enforce"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/netmap"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

var (
	propNS   = []string{"alpha", "beta", "gamma"}
	propApps = []string{"web", "api", "db"}
)

// randWorld returns a random inventory and policy set for netmap.
func randWorld(r *rand.Rand) (netmap.Input, []netip.Addr) {
	in := netmap.Input{Baseline: policy.BaselineDeny}
	if r.IntN(4) == 0 {
		in.Baseline = policy.BaselineAllow
	}
	for _, n := range propNS {
		in.Namespaces = append(in.Namespaces, inventory.Namespace{Name: n, Labels: map[string]string{"team": []string{"red", "blue"}[r.IntN(2)]},
			Monitor: r.IntN(4) == 0})
	}
	var addrs []netip.Addr
	randPorts := func() []inventory.Port {
		var ps []inventory.Port
		if r.IntN(3) > 0 {
			ps = append(ps, inventory.Port{Name: "http", Port: []uint16{80, 8080}[r.IntN(2)], Protocol: inventory.TCP})
		}
		if r.IntN(3) == 0 {
			ps = append(ps, inventory.Port{Name: "dns", Port: 53, Protocol: inventory.UDP})
		}
		return ps
	}
	for i := range 3 + r.IntN(4) {
		n := inventory.Node{
			Name: fmt.Sprintf("node-%d", i), Namespace: propNS[r.IntN(3)],
			Labels: map[string]string{"app": propApps[r.IntN(3)]},
			IP:     netip.AddrFrom4([4]byte{100, 64, byte(i), 1}),
			Ports:  randPorts(),
		}
		in.Nodes = append(in.Nodes, n)
		addrs = append(addrs, n.IP)
		for j := range r.IntN(4) {
			w := inventory.Workload{
				Name: fmt.Sprintf("wl-%d-%d", i, j), Namespace: propNS[r.IntN(3)],
				Labels: map[string]string{"app": propApps[r.IntN(3)]},
				Node:   n.Name, IP: netip.AddrFrom4([4]byte{100, 64, byte(i), byte(10 + j)}),
				Ports: randPorts(),
			}
			in.Workloads = append(in.Workloads, w)
			addrs = append(addrs, w.IP)
		}
	}
	// Sites of agentless hosts, selected by namespace and labels as
	// workloads are, carried by gateways with approved routes.
	for i, cidrs := range propSiteCIDRs {
		if r.IntN(4) == 0 {
			continue
		}
		in.Sites = append(in.Sites, inventory.Site{
			Name: fmt.Sprintf("lan-%d", i), Namespace: propNS[r.IntN(3)],
			Labels: map[string]string{"app": propApps[r.IntN(3)]},
			CIDRs:  cidrs, Ports: randPorts(),
		})
	}
	in.Routes = map[string][]netip.Prefix{}
	for _, n := range in.Nodes {
		if r.IntN(2) == 0 {
			in.Routes[n.Name] = []netip.Prefix{propRoutes[r.IntN(len(propRoutes))]}
		}
	}
	var docs []string
	for i := range r.IntN(6) {
		docs = append(docs, randPolicy(r, i))
	}
	if len(docs) > 0 {
		ps, err := policy.Parse("random.yaml", []byte(strings.Join(docs, "\n---\n")))
		if err != nil {
			panic(fmt.Sprintf("generated policy is invalid: %v\n%s", err, strings.Join(docs, "\n---\n")))
		}
		in.Policies = ps
	}
	return in, addrs
}

// propSiteCIDRs are the prefixes of the random sites, by index;
// propRoutes the routes gateways may carry (a site whole, part of one,
// or several).
var (
	propSiteCIDRs = [][]netip.Prefix{
		{netip.MustParsePrefix("198.19.1.0/24")},
		{netip.MustParsePrefix("198.19.2.0/24"), netip.MustParsePrefix("198.19.3.0/25")},
	}
	propRoutes = []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24"), netip.MustParsePrefix("198.19.1.0/25"),
		netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("198.19.2.0/23")}
)

func randPeer(r *rand.Rand) string {
	switch r.IntN(7) {
	case 5:
		return fmt.Sprintf("{ipBlock: {cidr: 198.19.%d.0/24}}", 1+r.IntN(3))
	case 6:
		return "{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.1.128/25]}}"
	case 0:
		return fmt.Sprintf("{podSelector: {matchLabels: {app: %s}}}", propApps[r.IntN(3)])
	case 1:
		return fmt.Sprintf("{namespaceSelector: {matchLabels: {team: %s}}}", []string{"red", "blue"}[r.IntN(2)])
	case 2:
		return fmt.Sprintf("{namespaceSelector: {}, podSelector: {matchLabels: {app: %s}}}", propApps[r.IntN(3)])
	case 3:
		return fmt.Sprintf("{ipBlock: {cidr: 100.64.0.0/16, except: [100.64.%d.0/24]}}", r.IntN(6))
	default:
		return fmt.Sprintf("{ipBlock: {cidr: 100.64.%d.0/24}}", r.IntN(6))
	}
}

func randPortSpec(r *rand.Rand) string {
	proto := []string{"TCP", "UDP", "SCTP"}[r.IntN(3)]
	switch r.IntN(4) {
	case 0:
		return fmt.Sprintf("{protocol: %s}", proto)
	case 1:
		return fmt.Sprintf("{protocol: %s, port: %d}", proto, []int{53, 80, 443, 8080}[r.IntN(4)])
	case 2:
		return fmt.Sprintf("{protocol: %s, port: %s}", proto, []string{"http", "dns"}[r.IntN(2)])
	default:
		lo := []int{50, 1000, 8000}[r.IntN(3)]
		return fmt.Sprintf("{protocol: %s, port: %d, endPort: %d}", proto, lo, lo+[]int{0, 10, 500}[r.IntN(3)])
	}
}

func randRule(r *rand.Rand, peerKey string) string {
	var peers, ps []string
	for range r.IntN(3) {
		peers = append(peers, randPeer(r))
	}
	for range r.IntN(3) {
		ps = append(ps, randPortSpec(r))
	}
	s := "{"
	if len(peers) > 0 {
		s += peerKey + ": [" + strings.Join(peers, ", ") + "]"
	}
	if len(ps) > 0 {
		if len(peers) > 0 {
			s += ", "
		}
		s += "ports: [" + strings.Join(ps, ", ") + "]"
	}
	return s + "}"
}

func randPolicy(r *rand.Rand, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p%d, namespace: %s}\nspec:\n", i, propNS[r.IntN(3)])
	if r.IntN(4) == 0 {
		b.WriteString("  podSelector: {}\n")
	} else {
		fmt.Fprintf(&b, "  podSelector: {matchLabels: {app: %s}}\n", propApps[r.IntN(3)])
	}
	b.WriteString("  policyTypes: [" + []string{"Ingress", "Egress", "Ingress, Egress"}[r.IntN(3)] + "]\n")
	var in, eg []string
	for range r.IntN(3) {
		in = append(in, randRule(r, "from"))
	}
	for range r.IntN(3) {
		eg = append(eg, randRule(r, "to"))
	}
	if len(in) > 0 {
		b.WriteString("  ingress: [" + strings.Join(in, ", ") + "]\n")
	}
	if len(eg) > 0 {
		b.WriteString("  egress: [" + strings.Join(eg, ", ") + "]\n")
	}
	return b.String()
}

// propPorts are the ports at which random policies' answers change.
var propPorts = []uint16{1, 49, 50, 51, 53, 60, 61, 80, 443, 999, 1000, 1010, 1011, 1500, 1501, 7999, 8000, 8010, 8011, 8080, 8500, 8501, 65535}

// TestFirstPacketMatchesRules checks, for random views computed by the
// coordinator's engine, that the filter's decision on the first packet of
// every flow is exactly view.Rules.Allows, in both directions, for every
// workload of the view and, on gateways, for hosts of every site the view
// carries (View.Sites), to and from workloads and site hosts.
func TestFirstPacketMatchesRules(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 20
	}
	checked, allowed, siteChecked, siteAllowed := 0, 0, 0, 0
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		input, addrs := randWorld(r)
		eng, err := netmap.New(input)
		if err != nil {
			t.Fatalf("seed %d: netmap.New: %v", seed, err)
		}
		// Remote addresses: every workload, site hosts, plus addresses no
		// workload or site has.
		remotes := append([]netip.Addr(nil), addrs...)
		for _, a := range []string{"100.64.5.77", "100.65.0.1", "198.19.0.1", "198.19.1.5", "198.19.1.200", "198.19.2.7", "198.19.3.100", "198.19.3.200"} {
			remotes = append(remotes, netip.MustParseAddr(a))
		}
		for _, n := range input.Nodes {
			v := eng.View(n.Name)
			if v == nil {
				t.Fatalf("seed %d: no view for %s", seed, n.Name)
			}
			f := New(Options{EventBuffer: -1})
			if err := f.Apply(v); err != nil {
				t.Fatalf("seed %d: Apply: %v", seed, err)
			}
			sport := uint16(20000)
			// check compares both directions of flows between local (a
			// workload of the view, or a site host) and every remote.
			check := func(name string, local view.Addr, ingress, egress *view.Rules, monitor bool) (cnt, allowed int) {
				for _, ra := range remotes {
					rem, _ := view.AddrFrom(ra)
					if rem == local {
						continue
					}
					id := v.IdentityOf(rem)
					for _, proto := range inventory.Protocols {
						for _, port := range propPorts {
							sport++
							if sport == 0 {
								f = New(Options{EventBuffer: -1})
								f.Apply(v)
								sport = 20000
							}
							// Monitor mode passes what the rules deny.
							wantOut := egress.Allows(id, rem, proto, port) || monitor
							gotOut := f.Outbound(first(proto, local, rem, sport, port)) == enforce.Allowed
							wantIn := ingress.Allows(id, rem, proto, port) || monitor
							gotIn := f.Inbound(first(proto, rem, local, sport, port)) == enforce.Allowed
							if gotOut != wantOut || gotIn != wantIn {
								t.Fatalf("seed %d node %s: %s %s, remote %s (identity %d) %s/%d: outbound %v want %v, inbound %v want %v\negress %+v\ningress %+v",
									seed, n.Name, name, local, rem, id, proto, port, gotOut, wantOut, gotIn, wantIn, egress, ingress)
							}
							cnt += 2
							if wantOut {
								allowed++
							}
							if wantIn {
								allowed++
							}
						}
					}
				}
				return cnt, allowed
			}
			for i := range v.Workloads {
				w := &v.Workloads[i]
				c, a := check(w.Workload, w.IP, &w.Ingress, &w.Egress, w.Monitor)
				checked, allowed = checked+c, allowed+a
			}
			for i := range v.Sites {
				s := &v.Sites[i]
				for _, p := range s.CIDRs {
					// The first host and the last address of each prefix.
					lo := p.Addr
					lo[3]++
					hi := view.Addr{p.Addr[0], p.Addr[1], p.Addr[2], p.Addr[3] | byte(1<<(32-int(p.Bits))-1)}
					for _, host := range []view.Addr{lo, hi} {
						c, a := check(s.Site, host, &s.Ingress, &s.Egress, s.Monitor)
						siteChecked, siteAllowed = siteChecked+c, siteAllowed+a
					}
				}
			}
		}
	}
	t.Logf("%d first-packet decisions for workloads and %d for site hosts (both directions) checked against Rules.Allows, %d and %d allowed",
		checked, siteChecked, allowed, siteAllowed)
	if allowed == 0 || allowed == checked {
		t.Fatalf("random views allowed %d of %d workload decisions: the generator is degenerate", allowed, checked)
	}
	if siteAllowed == 0 || siteAllowed == siteChecked {
		t.Fatalf("random views allowed %d of %d site host decisions: the generator is degenerate", siteAllowed, siteChecked)
	}
}

// first builds the first packet of a flow: a SYN for TCP.
func first(proto inventory.Protocol, src, dst view.Addr, sport, dport uint16) []byte {
	s, d := src.String(), dst.String()
	switch proto {
	case inventory.TCP:
		return syn(s, d, sport, dport)
	case inventory.UDP:
		return udp(s, d, sport, dport)
	}
	return sctp(s, d, sport, dport)
}
