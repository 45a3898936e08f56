package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/latchnet/latch/inventory"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

const spiffePolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {spiffe.io/id: "spiffe://latch.test/prod/web/api"}}
  ingress:
  - from:
    - podSelector:
        matchExpressions:
        - {key: spiffe.io/id, operator: In, values: ["spiffe://latch.test/prod/client", "spiffe://latch.test/prod/laptop"]}
`

// TestSpiffeSelectors: a selector may name a SPIFFE ID under the key
// spiffe.io/id; it selects the workload whose label carries the ID's label
// value, and nothing else.
func TestSpiffeSelectors(t *testing.T) {
	ps, err := Parse("p.yaml", []byte(spiffePolicy))
	if err != nil {
		t.Fatal(err)
	}
	wl := func(name, id string, last byte) inventory.Workload {
		return inventory.Workload{Name: name, Namespace: "prod", Node: name, IP: netip.AddrFrom4([4]byte{100, 64, 0, last}),
			Labels: map[string]string{SpiffeIDLabel: SpiffeLabelValue(id)}}
	}
	api := wl("api", "spiffe://latch.test/prod/web/api", 2)
	client := wl("client", "spiffe://latch.test/prod/client", 3)
	other := wl("other", "spiffe://latch.test/prod/other", 4)
	sel := Selector(&ps[0].Spec.PodSelector)
	if !sel.Matches(labels.Set(api.Labels)) || sel.Matches(labels.Set(client.Labels)) {
		t.Fatalf("podSelector %v: matches api %v, client %v", sel, sel.Matches(labels.Set(api.Labels)), sel.Matches(labels.Set(client.Labels)))
	}
	from := Selector(ps[0].Spec.Ingress[0].From[0].PodSelector)
	if !from.Matches(labels.Set(client.Labels)) || from.Matches(labels.Set(other.Labels)) {
		t.Fatalf("from selector %v: client %v, other %v", from, from.Matches(labels.Set(client.Labels)), from.Matches(labels.Set(other.Labels)))
	}
	if v := SpiffeLabelValue("spiffe://latch.test/prod/web/api"); len(validation.IsValidLabelValue(v)) > 0 || len(v) != 63 {
		t.Errorf("SpiffeLabelValue = %q: not a valid label value of 63 characters", v)
	}

	// Only this key takes SPIFFE IDs; a malformed ID is refused with its field.
	for name, doc := range map[string]string{
		"other key":    strings.ReplaceAll(spiffePolicy, "{spiffe.io/id: ", "{app: "),
		"malformed ID": strings.ReplaceAll(spiffePolicy, "spiffe://latch.test/prod/web/api", "spiffe://latch.test//api"),
		"bad td":       strings.ReplaceAll(spiffePolicy, "spiffe://latch.test/prod/client", "spiffe://Latch.test/prod/client"),
	} {
		if _, err := Parse("p.yaml", []byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name == "malformed ID" && !strings.Contains(err.Error(), "spec.podSelector.matchLabels") {
			t.Errorf("%s: the error does not name the field: %v", name, err)
		}
	}
}
