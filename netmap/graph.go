package netmap

import (
	"fmt"
	"slices"
	"strings"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

// GraphNode is a workload in the connectivity graph, or a node standing
// for itself.
type GraphNode struct {
	Key       string // namespace/name
	Namespace string
	Name      string
	Node      string // the node hosting the workload
	IsNode    bool   // the workload is a node standing for itself
}

// GraphEdge says From may reach To on Ports ("PORT/PROTOCOL", in the
// order of ev.TruthTable: by protocol, then port).
type GraphEdge struct {
	From, To string
	Ports    []string
}

// Graph is who may talk to whom on the ports destinations declare.
type Graph struct {
	Nodes []GraphNode // in the order of the workloads given
	Edges []GraphEdge // sorted by From, then To
}

// ConnectivityGraph evaluates every ordered pair of workloads of ws on
// every port the destination declares and returns the allowed ones as
// edges. nodes holds the keys (namespace/name) of the workloads that are
// nodes standing for themselves. With namespace set, the graph has only
// the workloads of that namespace and the edges that touch them, with
// their other ends; with namespace "", everything.
func ConnectivityGraph(ev *policy.Evaluator, ws []inventory.Workload, nodes map[string]bool, namespace string) Graph {
	edges := map[[2]string][]string{}
	for _, r := range ev.TruthTable(ws) {
		if r.Allowed {
			k := [2]string{r.From, r.To}
			edges[k] = append(edges[k], fmt.Sprintf("%d/%s", r.Port, r.Protocol))
		}
	}
	inNS := func(key string) bool { return namespace == "" || strings.HasPrefix(key, namespace+"/") }
	keep := map[string]bool{}
	out := Graph{Nodes: []GraphNode{}, Edges: []GraphEdge{}}
	for k, ports := range edges {
		if inNS(k[0]) || inNS(k[1]) {
			keep[k[0]], keep[k[1]] = true, true
			out.Edges = append(out.Edges, GraphEdge{From: k[0], To: k[1], Ports: ports})
		}
	}
	for _, w := range ws {
		if keep[w.Key()] || inNS(w.Key()) {
			out.Nodes = append(out.Nodes, GraphNode{Key: w.Key(), Namespace: w.Namespace, Name: w.Name, Node: w.Node, IsNode: nodes[w.Key()]})
		}
	}
	slices.SortFunc(out.Edges, func(a, b GraphEdge) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	return out
}
