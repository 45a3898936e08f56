package policy

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/latchnet/latch/inventory"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Baseline decides a direction of traffic that no policy isolates.
type Baseline string

// The baselines. Deny is Latch's default (zero trust); Allow is exactly
// Kubernetes.
const (
	BaselineDeny  Baseline = "deny"
	BaselineAllow Baseline = "allow"
)

// ParseBaseline reads "deny" or "allow".
func ParseBaseline(s string) (Baseline, error) {
	switch Baseline(s) {
	case BaselineDeny, BaselineAllow:
		return Baseline(s), nil
	}
	return "", fmt.Errorf("baseline %q: must be \"deny\" (zero trust, the default) or \"allow\" (Kubernetes behaviour)", s)
}

// Isolation tells which directions a policy isolates, with the implied
// types of Kubernetes when policyTypes is absent: Ingress always, Egress
// when the policy has egress rules.
func Isolation(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// Selector converts a validated label selector. A nil selector matches
// nothing, an empty one everything.
func Selector(s *metav1.LabelSelector) labels.Selector {
	if s == nil {
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		// Validation refuses such selectors before they get here.
		return labels.Nothing()
	}
	return sel
}

// IPBlockContains reports whether addr is in the block's cidr and in none
// of its excepts.
func IPBlockContains(b *networkingv1.IPBlock, addr netip.Addr) bool {
	c, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !c.Contains(addr) {
		return false
	}
	for _, ex := range b.Except {
		e, err := netip.ParsePrefix(ex)
		if err == nil && e.Contains(addr) {
			return false
		}
	}
	return true
}

// PortProtocol returns the protocol of a policy port (TCP when absent).
func PortProtocol(p *networkingv1.NetworkPolicyPort) inventory.Protocol {
	if p.Protocol == nil {
		return inventory.TCP
	}
	return inventory.Protocol(*p.Protocol)
}

// PortRange resolves a policy port against the destination workload: it
// returns the protocol and the inclusive port range the entry allows, and
// false when a named port is not declared by dst. An entry without port
// covers 1-65535.
func PortRange(p *networkingv1.NetworkPolicyPort, dst *inventory.Workload) (proto inventory.Protocol, lo, hi uint16, ok bool) {
	proto = PortProtocol(p)
	switch {
	case p.Port == nil:
		return proto, 1, 65535, true
	case p.Port.Type == intstr.String:
		if dst == nil {
			return proto, 0, 0, false
		}
		n, found := dst.NamedPort(p.Port.StrVal, proto)
		return proto, n, n, found
	default:
		lo = uint16(p.Port.IntVal)
		hi = lo
		if p.EndPort != nil {
			hi = uint16(*p.EndPort)
		}
		return proto, lo, hi, true
	}
}

// Side is one direction's decision.
type Side struct {
	// Isolated is true when some policy selects the workload for this
	// direction; otherwise the baseline decided.
	Isolated bool `json:"isolated"`
	Allowed  bool `json:"allowed"`
	// Policies are the policies that allowed the traffic, or, when an
	// isolated side denies it, the policies that isolate it.
	Policies []string `json:"policies,omitempty"`
}

// Verdict is the decision for one flow: it passes iff the source's egress
// and the destination's ingress both allow it.
type Verdict struct {
	Allowed bool `json:"allowed"`
	Egress  Side `json:"egress"`
	Ingress Side `json:"ingress"`
}

type refPolicy struct {
	p        *Policy
	pods     labels.Selector
	ingress  bool
	egress   bool
	inPeers  [][]refPeer // per ingress rule; nil = any peer
	outPeers [][]refPeer // per egress rule
}

type refPeer struct {
	pods, namespaces labels.Selector // nil: not set
	block            *networkingv1.IPBlock
}

// Evaluator decides flows directly from the policy objects. It is the
// reference implementation of the semantics: simple and exact, used for
// truth tables, "what if" checks and as the oracle that the compiled views
// are tested against.
type Evaluator struct {
	baseline   Baseline
	namespaces map[string]labels.Set
	byNS       map[string][]*refPolicy
	// cuts are every ipBlock cidr and except of the policies, masked: the
	// only boundaries at which a verdict can change with the address.
	cuts []netip.Prefix
}

// NewEvaluator prepares policies for evaluation.
func NewEvaluator(namespaces []inventory.Namespace, policies []*Policy, baseline Baseline) *Evaluator {
	e := &Evaluator{baseline: baseline, namespaces: map[string]labels.Set{}, byNS: map[string][]*refPolicy{}}
	for _, ns := range namespaces {
		e.namespaces[ns.Name] = labels.Set(ns.EffectiveLabels())
	}
	sorted := append([]*Policy(nil), policies...)
	SortPolicies(sorted)
	peers := func(list []networkingv1.NetworkPolicyPeer) []refPeer {
		if len(list) == 0 {
			return nil
		}
		out := make([]refPeer, len(list))
		for i := range list {
			pp := &list[i]
			if pp.PodSelector != nil {
				out[i].pods = Selector(pp.PodSelector)
			}
			if pp.NamespaceSelector != nil {
				out[i].namespaces = Selector(pp.NamespaceSelector)
			}
			out[i].block = pp.IPBlock
			if b := pp.IPBlock; b != nil {
				for _, c := range append([]string{b.CIDR}, b.Except...) {
					if p, err := netip.ParsePrefix(c); err == nil {
						e.cuts = append(e.cuts, p.Masked())
					}
				}
			}
		}
		return out
	}
	for _, p := range sorted {
		rp := &refPolicy{p: p, pods: Selector(&p.Spec.PodSelector)}
		rp.ingress, rp.egress = Isolation(&p.NetworkPolicy)
		for _, r := range p.Spec.Ingress {
			rp.inPeers = append(rp.inPeers, peers(r.From))
		}
		for _, r := range p.Spec.Egress {
			rp.outPeers = append(rp.outPeers, peers(r.To))
		}
		e.byNS[p.Namespace] = append(e.byNS[p.Namespace], rp)
	}
	return e
}

// Baseline returns the evaluator's baseline.
func (e *Evaluator) Baseline() Baseline { return e.baseline }

func (e *Evaluator) peerMatches(pr refPeer, policyNS string, w *inventory.Workload) bool {
	if pr.block != nil {
		return IPBlockContains(pr.block, w.IP)
	}
	nsLabels, known := e.namespaces[w.Namespace]
	if !known {
		return false
	}
	if pr.namespaces != nil {
		if !pr.namespaces.Matches(nsLabels) {
			return false
		}
	} else if w.Namespace != policyNS {
		return false
	}
	if pr.pods != nil {
		return pr.pods.Matches(labels.Set(w.Labels))
	}
	return true
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dst *inventory.Workload, proto inventory.Protocol, port uint16) bool {
	if len(ports) == 0 {
		return true
	}
	for i := range ports {
		pr, lo, hi, ok := PortRange(&ports[i], dst)
		if ok && pr == proto && lo <= port && port <= hi {
			return true
		}
	}
	return false
}

// side decides one direction for the workload self talking to other.
func (e *Evaluator) side(self, other *inventory.Workload, ingress bool, proto inventory.Protocol, port uint16) Side {
	var s Side
	var isolating []string
	dst := other
	if ingress {
		dst = self
	}
	for _, rp := range e.byNS[self.Namespace] {
		if !rp.pods.Matches(labels.Set(self.Labels)) {
			continue
		}
		if (ingress && !rp.ingress) || (!ingress && !rp.egress) {
			continue
		}
		s.Isolated = true
		isolating = append(isolating, rp.p.Key())
		rules, peerLists := rp.p.Spec.Ingress, rp.inPeers
		n := len(rules)
		if !ingress {
			n = len(rp.p.Spec.Egress)
		}
		for i := 0; i < n; i++ {
			var ports []networkingv1.NetworkPolicyPort
			var pl []refPeer
			if ingress {
				ports, pl = rules[i].Ports, peerLists[i]
			} else {
				ports, pl = rp.p.Spec.Egress[i].Ports, rp.outPeers[i]
			}
			if !portsMatch(ports, dst, proto, port) {
				continue
			}
			matched := len(pl) == 0
			for _, pr := range pl {
				if e.peerMatches(pr, rp.p.Namespace, other) {
					matched = true
					break
				}
			}
			if matched {
				s.Allowed = true
				s.Policies = append(s.Policies, rp.p.Key())
				break
			}
		}
	}
	if !s.Isolated {
		s.Allowed = e.baseline == BaselineAllow
		return s
	}
	if !s.Allowed {
		s.Policies = isolating
	}
	return s
}

// Decide evaluates one flow from one workload to another on a protocol and
// destination port.
func (e *Evaluator) Decide(from, to *inventory.Workload, proto inventory.Protocol, port uint16) Verdict {
	v := Verdict{
		Egress:  e.side(from, to, false, proto, port),
		Ingress: e.side(to, from, true, proto, port),
	}
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	return v
}

// Result is one row of a truth table.
type Result struct {
	From     string             `json:"from"`
	To       string             `json:"to"`
	Port     uint16             `json:"port"`
	Protocol inventory.Protocol `json:"protocol"`
	PortName string             `json:"portName,omitempty"`
	Allowed  bool               `json:"allowed"`
	Egress   Side               `json:"egress"`
	Ingress  Side               `json:"ingress"`
}

// TruthTable evaluates every ordered pair of distinct workloads on every
// port the destination declares, sorted by from, to, protocol, port.
func (e *Evaluator) TruthTable(ws []inventory.Workload) []Result {
	var out []Result
	for i := range ws {
		for j := range ws {
			if i == j {
				continue
			}
			from, to := &ws[i], &ws[j]
			for _, p := range to.Ports {
				v := e.Decide(from, to, p.Protocol, p.Port)
				out = append(out, Result{
					From: from.Key(), To: to.Key(), Port: p.Port, Protocol: p.Protocol, PortName: p.Name,
					Allowed: v.Allowed, Egress: v.Egress, Ingress: v.Ingress,
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.Port < b.Port
	})
	return out
}
