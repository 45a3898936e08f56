// Package suggest learns NetworkPolicy from observed traffic: given the
// flows seen in a window and the inventory, it writes for one namespace
// the smallest set of policies that allows exactly that traffic,
// generalised from addresses to workload labels and from connections to
// destination ports.
//
// For every workload group of the namespace (workloads selected by the
// same labels: the "app" label when the workload has one, else all its
// labels) that received traffic, the group's policy gets ingress rules
// naming its observed sources; for every group that sent traffic, egress
// rules naming its observed destinations. A peer is a podSelector for a
// group of the same namespace, a namespaceSelector on
// kubernetes.io/metadata.name plus a podSelector for another namespace,
// and an ipBlock /32 for an address that is no known workload. Peers
// allowed the same ports share a rule. ICMP and protocols NetworkPolicy
// cannot name are left out (ICMP echo follows from any allowed flow).
//
// Latch's baseline denies what no policy names in both directions, so a
// flow between two namespaces needs the suggestion of each: apply both.
//
// A node is believed only about the workloads it hosts: a flow teaches
// the ingress rules of its destination's group only if the node hosting
// the destination reported it, and the egress rules of its source's group
// only if the node hosting the source did. So no node's claims about the
// remote side of a flow open anything for a workload it does not host.
// Both ends are resolved from the inventory, never from the report; a
// flow whose addresses resolve to other workloads than when it was stored
// (an address that changed hands) is left out. Each rule lists the nodes
// whose reports it was learned from.
//
// It is pure: no I/O. Anything may import it.
package suggest

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/latchnet/latch/inventory"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// GroupLabel is the label that alone selects a workload's group when the
// workload carries it.
const GroupLabel = "app"

// NamePrefix starts the name of every suggested policy.
const NamePrefix = "suggested-"

// Flow is one observed flow: Src opened it to Dst's Port, as Reporter
// reported it.
type Flow struct {
	Src, Dst netip.Addr
	Protocol inventory.Protocol
	Port     uint16
	// Reporter is the node that reported the flow: the authenticated
	// node, never a name the report carries.
	Reporter string
	// SrcWorkload and DstWorkload are the workloads ("namespace/name")
	// Src and Dst belonged to when the flow was stored, "" for an address
	// of no workload.
	SrcWorkload, DstWorkload string
}

// Input is what Suggest learns from.
type Input struct {
	// Namespace is the namespace to write policies for.
	Namespace string
	// Workloads are all workloads, nodes' own included, to resolve
	// addresses and labels.
	Workloads []inventory.Workload
	// Flows are the observed flows; those with neither end in Namespace
	// are ignored.
	Flows []Flow
}

// Result is the suggestion.
type Result struct {
	Policies []networkingv1.NetworkPolicy
	// Reporters parallels Policies: the nodes behind each rule.
	Reporters []RuleReporters
	// Flows is how many distinct observed flows (source, destination,
	// protocol, port) the policies were learned from; Skipped how many
	// were left out (protocol not expressible).
	Flows, Skipped int
	// Unverified counts flow reports left out because the reporter hosts
	// no end of the flow in Namespace: a node's claim about a remote
	// workload teaches nothing.
	Unverified int
	// Stale counts flow reports left out because an address now belongs
	// to another workload than when the flow was stored.
	Stale int
}

// RuleReporters lists, for each ingress and egress rule of a policy in
// order, the nodes whose reports the rule was learned from, sorted.
type RuleReporters struct {
	Ingress, Egress [][]string
}

type peer struct {
	key string
	p   networkingv1.NetworkPolicyPeer
}

type portKey struct {
	proto inventory.Protocol
	port  uint16
}

type group struct {
	labels        map[string]string
	in, out       map[string]map[portKey]bool // peer key → ports
	inRep, outRep map[string]map[string]bool  // peer key → reporting nodes
	peers         map[string]peer
}

// Suggest computes the policies for in.Namespace.
func Suggest(in Input) (Result, error) {
	if in.Namespace == "" {
		return Result{}, fmt.Errorf("suggest: no namespace given")
	}
	byIP := make(map[netip.Addr]*inventory.Workload, len(in.Workloads))
	for i := range in.Workloads {
		w := &in.Workloads[i]
		if w.IP.IsValid() {
			byIP[w.IP.Unmap()] = w
		}
	}
	groups := map[string]*group{}
	groupOf := func(w *inventory.Workload) *group {
		l := selectorLabels(w.Labels)
		k := labelsKey(l)
		g := groups[k]
		if g == nil {
			g = &group{labels: l, in: map[string]map[portKey]bool{}, out: map[string]map[portKey]bool{},
				inRep: map[string]map[string]bool{}, outRep: map[string]map[string]bool{}, peers: map[string]peer{}}
			groups[k] = g
		}
		return g
	}
	var res Result
	seen := map[Flow]bool{}
	type flowKey struct {
		src, dst netip.Addr
		proto    inventory.Protocol
		port     uint16
	}
	learned, skipped := map[flowKey]bool{}, map[flowKey]bool{}
	for _, f := range in.Flows {
		f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
		if seen[f] {
			continue
		}
		seen[f] = true
		s, d := byIP[f.Src], byIP[f.Dst]
		local := (s != nil && s.Namespace == in.Namespace) || (d != nil && d.Namespace == in.Namespace)
		if !local {
			continue
		}
		if keyOf(s) != f.SrcWorkload || keyOf(d) != f.DstWorkload {
			res.Stale++
			continue
		}
		// Learn only the sides the reporter hosts.
		learnIn := d != nil && d.Namespace == in.Namespace && f.Reporter != "" && d.Node == f.Reporter
		learnOut := s != nil && s.Namespace == in.Namespace && f.Reporter != "" && s.Node == f.Reporter
		if !learnIn && !learnOut {
			res.Unverified++
			continue
		}
		fk := flowKey{f.Src, f.Dst, f.Protocol, f.Port}
		if !f.Protocol.Valid() {
			skipped[fk] = true
			continue
		}
		learned[fk] = true
		pk := portKey{f.Protocol, f.Port}
		if learnIn {
			g := groupOf(d)
			p := peerOf(s, f.Src, in.Namespace)
			add(g.in, p.key, pk)
			add(g.inRep, p.key, f.Reporter)
			g.peers[p.key] = p
		}
		if learnOut {
			g := groupOf(s)
			p := peerOf(d, f.Dst, in.Namespace)
			add(g.out, p.key, pk)
			add(g.outRep, p.key, f.Reporter)
			g.peers[p.key] = p
		}
	}
	res.Flows, res.Skipped = len(learned), len(skipped)
	keys := slices.Sorted(maps.Keys(groups))
	used := map[string]bool{}
	for _, k := range keys {
		g := groups[k]
		name := policyName(g.labels, used)
		np := networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: in.Namespace},
			Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: g.labels}},
		}
		var rep RuleReporters
		if len(g.in) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
			for _, r := range rules(g.in, g.peers, g.inRep) {
				np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: r.peers, Ports: r.ports})
				rep.Ingress = append(rep.Ingress, r.reporters)
			}
		}
		if len(g.out) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			for _, r := range rules(g.out, g.peers, g.outRep) {
				np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: r.peers, Ports: r.ports})
				rep.Egress = append(rep.Egress, r.reporters)
			}
		}
		res.Policies = append(res.Policies, np)
		res.Reporters = append(res.Reporters, rep)
	}
	return res, nil
}

func add[K comparable](m map[string]map[K]bool, peer string, k K) {
	if m[peer] == nil {
		m[peer] = map[K]bool{}
	}
	m[peer][k] = true
}

// keyOf is w's "namespace/name", "" for no workload.
func keyOf(w *inventory.Workload) string {
	if w == nil {
		return ""
	}
	return w.Key()
}

// selectorLabels is the label set that selects w's group.
func selectorLabels(l map[string]string) map[string]string {
	if v, ok := l[GroupLabel]; ok {
		return map[string]string{GroupLabel: v}
	}
	return maps.Clone(l)
}

func labelsKey(l map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(l)) {
		fmt.Fprintf(&b, "%s=%s,", k, l[k])
	}
	return b.String()
}

// peerOf is the peer standing for w (address a) seen from namespace ns.
func peerOf(w *inventory.Workload, a netip.Addr, ns string) peer {
	if w == nil {
		cidr := netip.PrefixFrom(a, a.BitLen()).String()
		return peer{key: "0|" + cidr, p: networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr}}}
	}
	l := selectorLabels(w.Labels)
	p := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: l}}
	key := "1|" + labelsKey(l)
	if w.Namespace != ns {
		p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{inventory.NamespaceNameLabel: w.Namespace}}
		key = "2|" + w.Namespace + "|" + labelsKey(l)
	}
	return peer{key: key, p: p}
}

type rule struct {
	peers     []networkingv1.NetworkPolicyPeer
	ports     []networkingv1.NetworkPolicyPort
	reporters []string
}

// rules turns peer → ports into rules, one per distinct port set, peers
// and ports sorted; each rule's reporters are those of its peers (rep:
// peer key → nodes).
func rules(m map[string]map[portKey]bool, peers map[string]peer, rep map[string]map[string]bool) []rule {
	byPorts := map[string][]string{}
	portsOf := map[string][]portKey{}
	for pk, ps := range m {
		list := slices.SortedFunc(maps.Keys(ps), func(a, b portKey) int {
			return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
		})
		var b strings.Builder
		for _, p := range list {
			fmt.Fprintf(&b, "%s/%d,", p.proto, p.port)
		}
		byPorts[b.String()] = append(byPorts[b.String()], pk)
		portsOf[b.String()] = list
	}
	var out []rule
	// Order rules by their first peer, for stable output.
	sets := slices.Collect(maps.Keys(byPorts))
	for _, s := range sets {
		slices.Sort(byPorts[s])
	}
	slices.SortFunc(sets, func(a, b string) int { return strings.Compare(byPorts[a][0], byPorts[b][0]) })
	for _, s := range sets {
		var r rule
		nodes := map[string]bool{}
		for _, pk := range byPorts[s] {
			r.peers = append(r.peers, peers[pk].p)
			maps.Copy(nodes, rep[pk])
		}
		r.reporters = slices.Sorted(maps.Keys(nodes))
		for _, p := range portsOf[s] {
			proto := corev1.Protocol(strings.ToUpper(string(p.proto)))
			port := intstr.FromInt32(int32(p.port))
			r.ports = append(r.ports, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port})
		}
		out = append(out, r)
	}
	return out
}

var notName = regexp.MustCompile(`[^a-z0-9-]+`)

// policyName is NamePrefix plus the group's label values, made a valid
// and unique DNS-1123 name.
func policyName(l map[string]string, used map[string]bool) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, l[k])
	}
	base := notName.ReplaceAllString(strings.ToLower(strings.Join(parts, "-")), "-")
	base = strings.Trim(base, "-")
	if base == "" {
		base = "all"
	}
	if len(base) > 50 {
		base = strings.Trim(base[:50], "-")
	}
	name := NamePrefix + base
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s%s-%d", NamePrefix, base, i)
	}
	used[name] = true
	return name
}

// commentNames joins node names for a YAML comment; a name that is not
// plain (lowercase letters, digits, '-', '.') is quoted, so that no name
// can end the comment.
func commentNames(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if n == "" || strings.ContainsFunc(n, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') }) {
			out[i] = strconv.QuoteToASCII(n)
		}
	}
	return strings.Join(out, ", ")
}

// YAML writes the policies as a multi-document YAML stream that `latch
// policy validate` and `latch policy apply` accept, preceded by a comment
// saying what it was learned from; a comment atop each policy names the
// nodes that reported the flows behind each of its rules.
func YAML(r Result, header string) ([]byte, error) {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		if line != "" {
			fmt.Fprintf(&b, "# %s\n", line)
		}
	}
	for i := range r.Policies {
		doc, err := yaml.Marshal(&r.Policies[i])
		if err != nil {
			return nil, fmt.Errorf("encoding policy %s: %w", r.Policies[i].Name, err)
		}
		doc = bytes.ReplaceAll(doc, []byte("  creationTimestamp: null\n"), nil)
		b.WriteString("---\n")
		if i < len(r.Reporters) {
			b.WriteString("# Learned from flows reported by:\n")
			for j, nodes := range r.Reporters[i].Ingress {
				fmt.Fprintf(&b, "#   ingress[%d]: %s\n", j, commentNames(nodes))
			}
			for j, nodes := range r.Reporters[i].Egress {
				fmt.Fprintf(&b, "#   egress[%d]: %s\n", j, commentNames(nodes))
			}
		}
		b.Write(doc)
	}
	return b.Bytes(), nil
}
