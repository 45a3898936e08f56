package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/store"
)

// graph returns the connectivity graph; with ?namespace=NS only the
// workloads of NS and the edges that touch them (and their other ends).
func (s *Server) graph(c echo.Context) error {
	ns := c.QueryParam("namespace")
	ev, ws, err := s.cfg.State.Evaluator(c.Request().Context())
	if err != nil {
		return err
	}
	nodeNames := map[string]bool{}
	err = s.cfg.State.Read(c.Request().Context(), func(tx store.Tx) error {
		nodes, err := tx.ListNodes()
		for _, n := range nodes {
			nodeNames[n.Namespace+"/"+n.Name] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	edges := map[[2]string][]string{}
	for _, r := range ev.TruthTable(ws) {
		if r.Allowed {
			k := [2]string{r.From, r.To}
			edges[k] = append(edges[k], fmt.Sprintf("%d/%s", r.Port, r.Protocol))
		}
	}
	inNS := func(key string) bool { return ns == "" || strings.HasPrefix(key, ns+"/") }
	keep := map[string]bool{}
	out := adminapi.Graph{Nodes: []adminapi.GraphNode{}, Edges: []adminapi.GraphEdge{}}
	for k, ports := range edges {
		if inNS(k[0]) || inNS(k[1]) {
			keep[k[0]], keep[k[1]] = true, true
			out.Edges = append(out.Edges, adminapi.GraphEdge{From: k[0], To: k[1], Ports: ports})
		}
	}
	for _, w := range ws {
		if keep[w.Key()] || inNS(w.Key()) {
			out.Nodes = append(out.Nodes, adminapi.GraphNode{Key: w.Key(), Namespace: w.Namespace, Name: w.Name, Node: w.Node, IsNode: nodeNames[w.Key()]})
		}
	}
	slices.SortFunc(out.Edges, func(a, b adminapi.GraphEdge) int { return strings.Compare(a.From+" "+a.To, b.From+" "+b.To) })
	return c.JSON(http.StatusOK, out)
}
