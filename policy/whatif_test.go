package policy_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

// whatIfPolicies lets every workload of prod reach every other one of
// prod, and nothing else.
const whatIfPolicies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: internal, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {}}]}]
  egress: [{to: [{podSelector: {}}]}]
`

func TestWhatIf(t *testing.T) {
	ps, err := policy.Parse("what-if policies", []byte(whatIfPolicies))
	if err != nil {
		t.Fatal(err)
	}
	nss := []inventory.Namespace{{Name: "prod"}, {Name: "jobs"}}
	ws := []inventory.Workload{
		{Namespace: "prod", Name: "web", Node: "n1", Ports: []inventory.Port{{Port: 80, Protocol: inventory.TCP}}},
		{Namespace: "prod", Name: "api", Node: "n2", Ports: []inventory.Port{{Port: 8080, Protocol: inventory.TCP}}},
		{Namespace: "jobs", Name: "batch", Node: "n3"},
	}
	internal := []string{"prod/internal"}
	for _, c := range []struct {
		name     string
		baseline policy.Baseline
		from, to string
		proto    inventory.Protocol
		port     uint16
		want     policy.Verdict
		wantErr  string // the error's text, if it fails
	}{
		{name: "allowed by both sides", baseline: policy.BaselineDeny, from: "prod/web", to: "prod/api", proto: inventory.TCP, port: 8080,
			want: policy.Verdict{Allowed: true,
				Egress:  policy.Side{Isolated: true, Allowed: true, Policies: internal},
				Ingress: policy.Side{Isolated: true, Allowed: true, Policies: internal}}},
		{name: "any port: the policy names none", baseline: policy.BaselineDeny, from: "prod/api", to: "prod/web", proto: inventory.UDP, port: 53,
			want: policy.Verdict{Allowed: true,
				Egress:  policy.Side{Isolated: true, Allowed: true, Policies: internal},
				Ingress: policy.Side{Isolated: true, Allowed: true, Policies: internal}}},
		{name: "denied by the baseline and by isolation", baseline: policy.BaselineDeny, from: "jobs/batch", to: "prod/api", proto: inventory.TCP, port: 8080,
			want: policy.Verdict{Allowed: false,
				Egress:  policy.Side{Isolated: false, Allowed: false},
				Ingress: policy.Side{Isolated: true, Allowed: false, Policies: internal}}},
		{name: "baseline allow lets the source send; isolation still denies", baseline: policy.BaselineAllow, from: "jobs/batch", to: "prod/api", proto: inventory.TCP, port: 8080,
			want: policy.Verdict{Allowed: false,
				Egress:  policy.Side{Isolated: false, Allowed: true},
				Ingress: policy.Side{Isolated: true, Allowed: false, Policies: internal}}},
		{name: "unknown source", baseline: policy.BaselineDeny, from: "prod/nope", to: "prod/api", proto: inventory.TCP, port: 8080,
			wantErr: `source "prod/nope": no such workload or node; give it as NAMESPACE/NAME (see the workloads and nodes lists)`},
		{name: "unknown destination", baseline: policy.BaselineDeny, from: "prod/web", to: "api", proto: inventory.TCP, port: 8080,
			wantErr: `destination "api": no such workload or node; give it as NAMESPACE/NAME (see the workloads and nodes lists)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := policy.NewEvaluator(nss, ps, c.baseline)
			got, err := ev.WhatIf(ws, c.from, c.to, c.proto, c.port)
			if c.wantErr != "" {
				var ue *policy.UnknownWorkloadError
				if err == nil || err.Error() != c.wantErr || !errors.Is(err, policy.ErrNoWorkload) || !errors.As(err, &ue) {
					t.Fatalf("error %v; want %q, an *UnknownWorkloadError wrapping ErrNoWorkload", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("verdict (-want +got):\n%s", d)
			}
		})
	}
}
