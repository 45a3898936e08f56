package netmap_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/netmap"
	"github.com/latchnet/latch/policy"
)

// graphPolicies: prod talks within itself; prod/api also takes jobs on
// 8080; jobs may send anywhere.
const graphPolicies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: internal, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {}}]}]
  egress: [{to: [{podSelector: {}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-jobs, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: jobs}}}]
    ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: jobs}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {}}]}]
`

func TestConnectivityGraph(t *testing.T) {
	ps, err := policy.Parse("graph policies", []byte(graphPolicies))
	if err != nil {
		t.Fatal(err)
	}
	ev := policy.NewEvaluator([]inventory.Namespace{{Name: "prod"}, {Name: "jobs"}, {Name: "dev"}}, ps, policy.BaselineDeny)
	tcp := func(p uint16) inventory.Port { return inventory.Port{Port: p, Protocol: inventory.TCP} }
	ws := []inventory.Workload{
		{Namespace: "prod", Name: "web", Node: "n1", Labels: map[string]string{"app": "web"}, Ports: []inventory.Port{tcp(443), tcp(80)}},
		{Namespace: "prod", Name: "api", Node: "n2", Labels: map[string]string{"app": "api"},
			Ports: []inventory.Port{{Port: 9090, Protocol: inventory.UDP}, tcp(8080)}},
		{Namespace: "jobs", Name: "batch", Node: "n3"},
		{Namespace: "dev", Name: "lonely", Node: "n3", Ports: []inventory.Port{tcp(22)}},
		{Namespace: "prod", Name: "n1", Node: "n1"}, // node n1 standing for itself
	}
	nodes := map[string]bool{"prod/n1": true}
	var (
		web    = netmap.GraphNode{Key: "prod/web", Namespace: "prod", Name: "web", Node: "n1"}
		api    = netmap.GraphNode{Key: "prod/api", Namespace: "prod", Name: "api", Node: "n2"}
		batch  = netmap.GraphNode{Key: "jobs/batch", Namespace: "jobs", Name: "batch", Node: "n3"}
		lonely = netmap.GraphNode{Key: "dev/lonely", Namespace: "dev", Name: "lonely", Node: "n3"}
		n1     = netmap.GraphNode{Key: "prod/n1", Namespace: "prod", Name: "n1", Node: "n1", IsNode: true}

		batchAPI = netmap.GraphEdge{From: "jobs/batch", To: "prod/api", Ports: []string{"8080/TCP"}}
		apiWeb   = netmap.GraphEdge{From: "prod/api", To: "prod/web", Ports: []string{"80/TCP", "443/TCP"}}
		n1API    = netmap.GraphEdge{From: "prod/n1", To: "prod/api", Ports: []string{"8080/TCP", "9090/UDP"}}
		n1Web    = netmap.GraphEdge{From: "prod/n1", To: "prod/web", Ports: []string{"80/TCP", "443/TCP"}}
		webAPI   = netmap.GraphEdge{From: "prod/web", To: "prod/api", Ports: []string{"8080/TCP", "9090/UDP"}}
	)
	for _, c := range []struct {
		namespace string
		want      netmap.Graph
	}{
		{"", netmap.Graph{Nodes: []netmap.GraphNode{web, api, batch, lonely, n1}, Edges: []netmap.GraphEdge{batchAPI, apiWeb, n1API, n1Web, webAPI}}},
		// jobs/batch and the other end of its edge.
		{"jobs", netmap.Graph{Nodes: []netmap.GraphNode{api, batch}, Edges: []netmap.GraphEdge{batchAPI}}},
		{"prod", netmap.Graph{Nodes: []netmap.GraphNode{web, api, batch, n1}, Edges: []netmap.GraphEdge{batchAPI, apiWeb, n1API, n1Web, webAPI}}},
		// A workload with no edges is still in its namespace's graph.
		{"dev", netmap.Graph{Nodes: []netmap.GraphNode{lonely}, Edges: []netmap.GraphEdge{}}},
		{"none", netmap.Graph{Nodes: []netmap.GraphNode{}, Edges: []netmap.GraphEdge{}}},
	} {
		t.Run("namespace="+c.namespace, func(t *testing.T) {
			got := netmap.ConnectivityGraph(ev, ws, nodes, c.namespace)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("graph (-want +got):\n%s", d)
			}
		})
	}
}
