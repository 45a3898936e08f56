package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/store"
)

// subnetRoutes mounts the admin routes of the subnet routes that nodes
// advertise as gateways.
func (s *Server) subnetRoutes(g *echo.Group) {
	g.GET("/routes", s.listSubnetRoutes)
	g.POST("/routes/approve", s.decideRoute(true))
	g.POST("/routes/reject", s.decideRoute(false))
}

// listSubnetRoutes lists every advertised route; ?node= filters.
func (s *Server) listSubnetRoutes(c echo.Context) error {
	node := c.QueryParam("node")
	return s.read(c, func(tx store.Tx) (any, error) {
		all, err := tx.ListRoutes()
		out := []adminapi.SubnetRoute{}
		for _, r := range all {
			if node == "" || r.Node == node {
				out = append(out, toSubnetRoute(r))
			}
		}
		return out, err
	})
}

func (s *Server) decideRoute(approve bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req adminapi.RouteDecision
		if err := bind(c, &req); err != nil {
			return err
		}
		if req.Node == "" || req.Prefix == "" {
			return fail(http.StatusBadRequest, "invalid", "name the route: the node that advertises it and its prefix, {\"node\":\"gw-1\",\"prefix\":\"198.19.1.0/24\"}")
		}
		decide := s.cfg.State.RejectRoute
		if approve {
			decide = s.cfg.State.ApproveRoute
		}
		r, err := decide(c.Request().Context(), PrincipalOf(c).Name, req.Node, req.Prefix)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toSubnetRoute(r))
	}
}
