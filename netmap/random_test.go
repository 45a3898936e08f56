package netmap

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// world is a random inventory and policy set for property tests.
type world struct {
	namespaces []inventory.Namespace
	nodes      []inventory.Node
	workloads  []inventory.Workload
	policies   []*policy.Policy
	baseline   policy.Baseline
	sites      []inventory.Site
	routes     map[string][]netip.Prefix // approved routes by node name
	offline    map[string]bool           // nodes marked offline
}

func (w *world) input() Input {
	return Input{Namespaces: w.namespaces, Nodes: w.nodes, Workloads: w.workloads, Policies: w.policies, Baseline: w.baseline,
		Sites: w.sites, Routes: w.routes, Offline: w.offlineList()}
}

func (w *world) offlineList() []string {
	var out []string
	for n := range w.offline {
		out = append(out, n)
	}
	return out
}

func (w *world) all() []inventory.Workload {
	out := append([]inventory.Workload(nil), w.workloads...)
	for i := range w.nodes {
		out = append(out, w.nodes[i].AsWorkload())
	}
	return out
}

var (
	nsNames = []string{"alpha", "beta", "gamma"}
	apps    = []string{"web", "api", "db"}
	tiers   = []string{"front", "back"}
)

func randLabels(r *rand.Rand) map[string]string {
	l := map[string]string{}
	if r.IntN(5) > 0 {
		l["app"] = apps[r.IntN(len(apps))]
	}
	if r.IntN(2) == 0 {
		l["tier"] = tiers[r.IntN(len(tiers))]
	}
	return l
}

func randPorts(r *rand.Rand) []inventory.Port {
	var ps []inventory.Port
	if r.IntN(4) > 0 {
		ps = append(ps, inventory.Port{Name: "http", Port: []uint16{80, 8080}[r.IntN(2)], Protocol: inventory.TCP})
	}
	if r.IntN(3) == 0 {
		ps = append(ps, inventory.Port{Name: "dns", Port: 53, Protocol: inventory.UDP})
	}
	if r.IntN(4) == 0 {
		ps = append(ps, inventory.Port{Port: 5432, Protocol: inventory.TCP})
	}
	if r.IntN(5) == 0 {
		ps = append(ps, inventory.Port{Name: "sig", Port: 9000, Protocol: inventory.SCTP})
	}
	return ps
}

func newWorld(r *rand.Rand) *world {
	w := &world{baseline: policy.BaselineDeny}
	if r.IntN(4) == 0 {
		w.baseline = policy.BaselineAllow
	}
	for _, n := range nsNames {
		ns := inventory.Namespace{Name: n}
		if r.IntN(2) == 0 {
			ns.Labels = map[string]string{"team": []string{"red", "blue"}[r.IntN(2)]}
		}
		ns.Monitor = r.IntN(3) == 0
		w.namespaces = append(w.namespaces, ns)
	}
	nn := 3 + r.IntN(5)
	for i := 0; i < nn; i++ {
		w.nodes = append(w.nodes, w.randNode(r, i))
	}
	for i := range w.nodes {
		k := r.IntN(4)
		for j := 0; j < k; j++ {
			w.workloads = append(w.workloads, w.randWorkload(r, i, j))
		}
	}
	np := r.IntN(7)
	for i := 0; i < np; i++ {
		w.policies = append(w.policies, randPolicy(r, fmt.Sprintf("p%d", i)))
	}
	w.routes = map[string][]netip.Prefix{}
	w.offline = map[string]bool{}
	if r.IntN(2) == 0 {
		w.addSites(r)
	}
	return w
}

// addSites gives the world sites and some nodes approved routes.
func (w *world) addSites(r *rand.Rand) {
	for i := 0; i < 2; i++ {
		if r.IntN(4) > 0 {
			w.sites = append(w.sites, randSite(r, i))
		}
	}
	for _, n := range w.nodes {
		if r.IntN(3) == 0 {
			w.routes[n.Name] = randRoutes(r)
			if r.IntN(4) == 0 {
				w.offline[n.Name] = true
			}
		}
	}
}

// siteCIDRs are the prefixes of the random sites, by index.
var siteCIDRs = [][]netip.Prefix{
	{netip.MustParsePrefix("198.19.1.0/24")},
	{netip.MustParsePrefix("198.19.2.0/24"), netip.MustParsePrefix("198.19.3.0/25")},
}

func randSite(r *rand.Rand, i int) inventory.Site {
	return inventory.Site{
		Name:      fmt.Sprintf("lan-%d", i),
		Namespace: nsNames[r.IntN(len(nsNames))],
		Labels:    randLabels(r),
		CIDRs:     siteCIDRs[i],
		Ports:     randPorts(r),
	}
}

// randRoutes picks routes that cover sites whole, in part, or together.
func randRoutes(r *rand.Rand) []netip.Prefix {
	choices := []string{"198.19.1.0/24", "198.19.1.0/25", "198.19.0.0/16", "198.19.2.0/23", "198.19.3.0/24", "203.0.113.0/24"}
	var out []netip.Prefix
	for i, n := 0, 1+r.IntN(2); i < n; i++ {
		out = append(out, netip.MustParsePrefix(choices[r.IntN(len(choices))]))
	}
	return out
}

func (w *world) randNode(r *rand.Rand, i int) inventory.Node {
	n := inventory.Node{
		Name:      fmt.Sprintf("node-%03d-q", i),
		Namespace: nsNames[r.IntN(len(nsNames))],
		Labels:    randLabels(r),
		IP:        netip.AddrFrom4([4]byte{100, 64, byte(i), 1}),
		PublicKey: fmt.Sprintf("KEY-%03d-Z", i),
		Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), 51820)},
	}
	if r.IntN(3) == 0 {
		n.Ports = []inventory.Port{{Name: "ssh", Port: 22, Protocol: inventory.TCP}}
	}
	return n
}

func (w *world) randWorkload(r *rand.Rand, node, j int) inventory.Workload {
	return w.randWorkloadOn(r, w.nodes[node].Name, node, j)
}

func (w *world) randWorkloadOn(r *rand.Rand, nodeName string, node, j int) inventory.Workload {
	return inventory.Workload{
		Name:      fmt.Sprintf("wl-%d-%d", node, j),
		Namespace: nsNames[r.IntN(len(nsNames))],
		Labels:    randLabels(r),
		Node:      nodeName,
		IP:        netip.AddrFrom4([4]byte{100, 64, byte(node), byte(10 + j)}),
		Ports:     randPorts(r),
	}
}

func randSelector(r *rand.Rand) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch r.IntN(6) {
	case 0: // empty: everything
	case 1, 2:
		s.MatchLabels = map[string]string{"app": apps[r.IntN(len(apps))]}
	case 3:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{apps[r.IntN(3)], apps[r.IntN(3)]}}}
	case 4:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "tier", Operator: []metav1.LabelSelectorOperator{metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}[r.IntN(2)]}}
	case 5:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{apps[r.IntN(3)]}}}
	}
	return s
}

func randNSSelector(r *rand.Rand) *metav1.LabelSelector {
	switch r.IntN(3) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{inventory.NamespaceNameLabel: nsNames[r.IntN(3)]}}
	default:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": []string{"red", "blue"}[r.IntN(2)]}}
	}
}

func randPeers(r *rand.Rand) []networkingv1.NetworkPolicyPeer {
	n := r.IntN(3)
	var out []networkingv1.NetworkPolicyPeer
	for i := 0; i < n; i++ {
		var p networkingv1.NetworkPolicyPeer
		switch r.IntN(4) {
		case 0:
			p.PodSelector = randSelector(r)
		case 1:
			p.NamespaceSelector = randNSSelector(r)
		case 2:
			p.PodSelector = randSelector(r)
			p.NamespaceSelector = randNSSelector(r)
		case 3:
			b := &networkingv1.IPBlock{}
			switch r.IntN(5) {
			case 3: // site addresses
				b.CIDR = "198.19.0.0/16"
				b.Except = []string{fmt.Sprintf("198.19.%d.128/26", 1+r.IntN(3))}
			case 4:
				x := 1 + r.IntN(3)
				b.CIDR = fmt.Sprintf("198.19.%d.0/25", x)
				if r.IntN(2) == 0 {
					b.Except = []string{fmt.Sprintf("198.19.%d.32/27", x)}
				}
			case 0:
				b.CIDR = "100.64.0.0/10"
				b.Except = []string{fmt.Sprintf("100.64.%d.0/24", r.IntN(8))}
			case 1:
				b.CIDR = fmt.Sprintf("100.64.%d.0/24", r.IntN(8))
			default:
				b.CIDR = fmt.Sprintf("100.64.%d.0/24", r.IntN(8))
				b.Except = []string{fmt.Sprintf("100.64.%d.%d/28", 0, 0)}
				b.CIDR = "100.64.0.0/16"
				b.Except = []string{fmt.Sprintf("100.64.%d.0/28", r.IntN(8)), fmt.Sprintf("100.64.%d.0/25", r.IntN(8))}
			}
			p.IPBlock = b
		}
		out = append(out, p)
	}
	return out
}

func randPortsRule(r *rand.Rand) []networkingv1.NetworkPolicyPort {
	n := r.IntN(3)
	var out []networkingv1.NetworkPolicyPort
	for i := 0; i < n; i++ {
		var p networkingv1.NetworkPolicyPort
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[r.IntN(3)]
		if r.IntN(3) > 0 {
			p.Protocol = &proto
		}
		switch r.IntN(5) {
		case 0: // protocol only
		case 1:
			v := intstr.FromInt32([]int32{80, 53, 5432, 8080, 9000, 22}[r.IntN(6)])
			p.Port = &v
		case 2:
			v := intstr.FromString([]string{"http", "dns", "sig", "ssh"}[r.IntN(4)])
			p.Port = &v
		case 3, 4:
			lo := []int32{50, 80, 1000, 5000}[r.IntN(4)]
			v := intstr.FromInt32(lo)
			hi := lo + []int32{0, 10, 5000}[r.IntN(3)]
			p.Port, p.EndPort = &v, &hi
		}
		out = append(out, p)
	}
	return out
}

func randPolicy(r *rand.Rand, name string) *policy.Policy {
	np := networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: policy.APIVersion, Kind: policy.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsNames[r.IntN(len(nsNames))]},
	}
	np.Spec.PodSelector = *randSelector(r)
	switch r.IntN(4) {
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	for i, n := 0, r.IntN(3); i < n; i++ {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: randPeers(r), Ports: randPortsRule(r)})
	}
	for i, n := 0, r.IntN(3); i < n; i++ {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: randPeers(r), Ports: randPortsRule(r)})
	}
	data, err := yaml.Marshal(&np)
	if err != nil {
		panic(err)
	}
	ps, err := policy.Parse(name+".yaml", data)
	if err != nil {
		panic(fmt.Sprintf("generated policy is invalid: %v\n%s", err, data))
	}
	return ps[0]
}

// candidatePorts are the ports at which the allowed port sets can change:
// if two unions of ranges meet, they meet at the start of some range.
func candidatePorts(w *world) map[inventory.Protocol][]uint16 {
	set := map[inventory.Protocol]map[uint16]bool{}
	add := func(p inventory.Protocol, n uint16) {
		if set[p] == nil {
			set[p] = map[uint16]bool{}
		}
		set[p][n] = true
	}
	for _, p := range inventory.Protocols {
		add(p, 1)
	}
	for _, wl := range w.all() {
		for _, p := range wl.Ports {
			add(p.Protocol, p.Port)
		}
	}
	for _, p := range w.policies {
		var ports []networkingv1.NetworkPolicyPort
		for _, r := range p.Spec.Ingress {
			ports = append(ports, r.Ports...)
		}
		for _, r := range p.Spec.Egress {
			ports = append(ports, r.Ports...)
		}
		for i := range ports {
			if pr, lo, _, ok := policy.PortRange(&ports[i], nil); ok {
				add(pr, lo)
			}
		}
	}
	out := map[inventory.Protocol][]uint16{}
	for p, m := range set {
		for n := range m {
			out[p] = append(out[p], n)
		}
	}
	return out
}
