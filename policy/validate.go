package policy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

type problem struct {
	field  string
	reason string
}

// validate checks a decoded NetworkPolicy the way the Kubernetes API server
// does, with messages that say how to fix what is wrong.
func validate(np *networkingv1.NetworkPolicy) []problem {
	var out []problem
	add := func(p *field.Path, format string, a ...any) {
		out = append(out, problem{field: p.String(), reason: fmt.Sprintf(format, a...)})
	}
	fromList := func(list field.ErrorList) {
		for _, e := range list {
			out = append(out, problem{field: e.Field, reason: e.ErrorBody()})
		}
	}
	md := field.NewPath("metadata")
	switch {
	case np.Name == "":
		add(md.Child("name"), "required: give the policy a name")
	default:
		for _, m := range validation.IsDNS1123Subdomain(np.Name) {
			add(md.Child("name"), "%q is not a valid name: %s", np.Name, m)
		}
	}
	switch {
	case np.Namespace == "":
		add(md.Child("namespace"), "required: set the namespace whose workloads the policy selects")
	default:
		for _, m := range validation.IsDNS1123Label(np.Namespace) {
			add(md.Child("namespace"), "%q is not a valid namespace: %s", np.Namespace, m)
		}
	}
	spec := field.NewPath("spec")
	fromList(validateSelector(&np.Spec.PodSelector, spec.Child("podSelector")))
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range np.Spec.PolicyTypes {
		p := spec.Child("policyTypes").Index(i)
		switch t {
		case networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress:
			if seen[t] {
				add(p, "%q is listed twice", t)
			}
			seen[t] = true
		default:
			add(p, "unsupported value %q: use \"Ingress\" or \"Egress\"", t)
		}
	}
	for i, r := range np.Spec.Ingress {
		rp := spec.Child("ingress").Index(i)
		for j := range r.From {
			out = append(out, validatePeer(&r.From[j], rp.Child("from").Index(j))...)
		}
		for j := range r.Ports {
			out = append(out, validatePort(&r.Ports[j], rp.Child("ports").Index(j))...)
		}
	}
	for i, r := range np.Spec.Egress {
		rp := spec.Child("egress").Index(i)
		for j := range r.To {
			out = append(out, validatePeer(&r.To[j], rp.Child("to").Index(j))...)
		}
		for j := range r.Ports {
			out = append(out, validatePort(&r.Ports[j], rp.Child("ports").Index(j))...)
		}
	}
	return out
}

func validateSelector(s *metav1.LabelSelector, p *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, p)
	for _, e := range errs {
		if strings.Contains(e.Detail, "not a valid selector operator") {
			e.Detail += ": use In, NotIn, Exists or DoesNotExist"
		}
	}
	return errs
}

func validatePeer(peer *networkingv1.NetworkPolicyPeer, p *field.Path) []problem {
	var out []problem
	add := func(p *field.Path, format string, a ...any) {
		out = append(out, problem{field: p.String(), reason: fmt.Sprintf(format, a...)})
	}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil && peer.IPBlock == nil {
		add(p, "required: a peer must set podSelector, namespaceSelector or ipBlock (to match everything, leave out the whole from/to list)")
		return out
	}
	if peer.IPBlock != nil && (peer.PodSelector != nil || peer.NamespaceSelector != nil) {
		add(p.Child("ipBlock"), "forbidden: ipBlock cannot be combined with podSelector or namespaceSelector in one peer; make them separate peers")
	}
	for _, s := range []struct {
		sel  *metav1.LabelSelector
		name string
	}{{peer.PodSelector, "podSelector"}, {peer.NamespaceSelector, "namespaceSelector"}} {
		if s.sel != nil {
			for _, e := range validateSelector(s.sel, p.Child(s.name)) {
				out = append(out, problem{field: e.Field, reason: e.ErrorBody()})
			}
		}
	}
	if b := peer.IPBlock; b != nil {
		bp := p.Child("ipBlock")
		cidr, err := parseCIDR(b.CIDR)
		if err != nil {
			add(bp.Child("cidr"), "%v", err)
			return out
		}
		for i, ex := range b.Except {
			ep := bp.Child("except").Index(i)
			e, err := parseCIDR(ex)
			switch {
			case err != nil:
				add(ep, "%v", err)
			case e.Addr().Is4() != cidr.Addr().Is4():
				add(ep, "%s and cidr %s are of different IP families", e, cidr)
			case e.Bits() <= cidr.Bits() || !cidr.Contains(e.Addr()):
				add(ep, "%s is not a strict subset of cidr %s: except may only carve addresses out of cidr", e, cidr)
			}
		}
	}
	return out
}

// parseCIDR accepts only canonical prefixes such as 10.0.0.0/8.
func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("required: give a CIDR such as 198.19.0.0/16")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR (want address/bits, such as 198.19.0.0/16)", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s?", s, p.Masked())
	}
	return p, nil
}

func validatePort(np *networkingv1.NetworkPolicyPort, p *field.Path) []problem {
	var out []problem
	add := func(p *field.Path, format string, a ...any) {
		out = append(out, problem{field: p.String(), reason: fmt.Sprintf(format, a...)})
	}
	if np.Protocol != nil {
		switch *np.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			add(p.Child("protocol"), "unsupported protocol %q: use TCP, UDP or SCTP", *np.Protocol)
		}
	}
	named := false
	if np.Port != nil {
		switch np.Port.Type {
		case intstr.Int:
			if np.Port.IntVal < 1 || np.Port.IntVal > 65535 {
				add(p.Child("port"), "%d is out of range: a port is between 1 and 65535", np.Port.IntVal)
			}
		case intstr.String:
			named = true
			for _, m := range validation.IsValidPortName(np.Port.StrVal) {
				add(p.Child("port"), "%q is not a valid port name: %s", np.Port.StrVal, m)
			}
		}
	}
	if np.EndPort != nil {
		ep := p.Child("endPort")
		switch {
		case np.Port == nil:
			add(ep, "forbidden without port: set port to the first port of the range")
		case named:
			add(ep, "forbidden with a named port (%q): a range needs a numeric port", np.Port.StrVal)
		case *np.EndPort < 1 || *np.EndPort > 65535:
			add(ep, "%d is out of range: a port is between 1 and 65535", *np.EndPort)
		case *np.EndPort < np.Port.IntVal:
			add(ep, "%d is below port %d: endPort must be greater than or equal to port", *np.EndPort, np.Port.IntVal)
		}
	}
	return out
}
