package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SpiffeIDLabel is the label that carries the SPIFFE ID of a workload
// SPIRE attests. Kubernetes label values cannot hold ':' or '/', so the
// label's value is SpiffeLabelValue(id), and a selector may name the
// SPIFFE ID itself: Parse rewrites a value of this key that starts with
// "spiffe://" in matchLabels and in matchExpressions (In, NotIn) to its
// label value. Every other key keeps the exact Kubernetes rules.
const SpiffeIDLabel = "spiffe.io/id"

// SpiffeLabelValue is the label value of a SPIFFE ID: "sha256-" and the
// first 56 hex digits of the SHA-256 of the ID (63 characters, a valid
// label value).
func SpiffeLabelValue(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "sha256-" + hex.EncodeToString(sum[:])[:56]
}

// CheckSpiffeID checks the form of a SPIFFE ID, spiffe://TD/PATH: a
// lowercase trust domain of [a-z0-9.-_] and a path of segments of
// [A-Za-z0-9.-_] (the SPIFFE specification's characters).
func CheckSpiffeID(id string) error {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return fmt.Errorf("SPIFFE ID %q does not start with spiffe://", id)
	}
	td, path, ok := strings.Cut(rest, "/")
	if td == "" {
		return fmt.Errorf("SPIFFE ID %q has no trust domain", id)
	}
	for _, c := range td {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("SPIFFE ID %q: trust domain may hold only a-z 0-9 . - _", id)
		}
	}
	if !ok || path == "" {
		return fmt.Errorf("SPIFFE ID %q has no path: a workload ID looks like spiffe://TD/ns/prod/sa/web", id)
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("SPIFFE ID %q: empty, . or .. path segment", id)
		}
		for _, c := range seg {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("SPIFFE ID %q: path may hold only A-Z a-z 0-9 . - _ and /", id)
			}
		}
	}
	return nil
}

// spiffeProblems rewrites the SPIFFE IDs in np's selectors to label values
// and reports malformed ones.
func spiffeProblems(np *networkingv1.NetworkPolicy) []problem {
	var out []problem
	fix := func(s *metav1.LabelSelector, path string) {
		if s == nil {
			return
		}
		if v, ok := s.MatchLabels[SpiffeIDLabel]; ok && strings.HasPrefix(v, "spiffe://") {
			if err := CheckSpiffeID(v); err != nil {
				out = append(out, problem{field: path + ".matchLabels", reason: err.Error()})
			} else {
				s.MatchLabels[SpiffeIDLabel] = SpiffeLabelValue(v)
			}
		}
		for i := range s.MatchExpressions {
			e := &s.MatchExpressions[i]
			if e.Key != SpiffeIDLabel {
				continue
			}
			for j, v := range e.Values {
				if !strings.HasPrefix(v, "spiffe://") {
					continue
				}
				if err := CheckSpiffeID(v); err != nil {
					out = append(out, problem{field: fmt.Sprintf("%s.matchExpressions[%d].values[%d]", path, i, j), reason: err.Error()})
					continue
				}
				e.Values[j] = SpiffeLabelValue(v)
			}
		}
	}
	fix(&np.Spec.PodSelector, "spec.podSelector")
	peers := func(dir string, i int, ps []networkingv1.NetworkPolicyPeer, side string) {
		for j := range ps {
			base := fmt.Sprintf("spec.%s[%d].%s[%d]", dir, i, side, j)
			fix(ps[j].PodSelector, base+".podSelector")
			fix(ps[j].NamespaceSelector, base+".namespaceSelector")
		}
	}
	for i := range np.Spec.Ingress {
		peers("ingress", i, np.Spec.Ingress[i].From, "from")
	}
	for i := range np.Spec.Egress {
		peers("egress", i, np.Spec.Egress[i].To, "to")
	}
	return out
}

// ReservedLabelPrefix starts the label keys that only the coordinator
// sets (SpiffeIDLabel is one). A join token, an approval, a workload
// grant, a SPIFFE mapping and a node's declaration may not carry them.
const ReservedLabelPrefix = "spiffe.io/"

// IsReservedLabel reports whether key is a label key only the coordinator
// sets: SpiffeIDLabel and every key under ReservedLabelPrefix.
func IsReservedLabel(key string) bool {
	return key == SpiffeIDLabel || strings.HasPrefix(key, ReservedLabelPrefix)
}
