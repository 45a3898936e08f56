package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/netmap"
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
	return c.JSON(http.StatusOK, toGraph(netmap.ConnectivityGraph(ev, ws, nodeNames, ns)))
}
