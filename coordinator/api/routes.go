package api

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/inventory"
)

// subnetRoutes mounts the admin routes of the subnet routes that nodes
// advertise as gateways, and of the sites behind them.
func (s *Server) subnetRoutes(g *echo.Group) {
	g.GET("/routes", s.listSubnetRoutes)
	g.POST("/routes/approve", s.decideRoute(true))
	g.POST("/routes/reject", s.decideRoute(false))
	g.GET("/sites", s.listSites)
	g.PUT("/sites/:namespace/:name", s.putSite)
	g.DELETE("/sites/:namespace/:name", s.deleteSite)
}

// listSubnetRoutes lists every advertised route; ?node= filters.
func (s *Server) listSubnetRoutes(c echo.Context) error {
	node := c.QueryParam("node")
	return s.read(c, func(tx store.Tx) (any, error) {
		all, err := tx.ListRoutes()
		out := []adminapi.SubnetRoute{}
		for _, r := range all {
			if node == "" || r.Node == node {
				out = append(out, s.routeWithState(r))
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
		return c.JSON(http.StatusOK, s.routeWithState(r))
	}
}

// routeWithState converts r with whether its node is primary for it and
// online.
func (s *Server) routeWithState(r store.Route) adminapi.SubnetRoute {
	out := toSubnetRoute(r)
	out.Primary, out.Online = s.cfg.State.RouteState(r.Node, r.Prefix)
	out.Primary = out.Primary && r.Status == store.RouteApproved
	return out
}

// listSites lists every site.
func (s *Server) listSites(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		sites, err := tx.ListSites()
		return list(sites, toSite), err
	})
}

// putSite declares or replaces the site named by the path; the body
// holds its labels, CIDRs and ports.
func (s *Server) putSite(c echo.Context) error {
	var req adminapi.SiteRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	site := store.Site{Namespace: c.Param("namespace"), Name: c.Param("name"), Labels: req.Labels}
	for i, p := range req.CIDRs {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
		if err != nil {
			return fail(http.StatusBadRequest, "invalid", "site %s/%s: cidrs[%d]: %q is not a prefix: give an IPv4 prefix such as 198.19.1.0/24",
				site.Namespace, site.Name, i, p)
		}
		site.CIDRs = append(site.CIDRs, pfx)
	}
	for _, p := range req.Ports {
		site.Ports = append(site.Ports, inventory.Port{Name: p.Name, Port: p.Port, Protocol: inventory.Protocol(strings.ToUpper(p.Protocol))})
	}
	out, err := s.cfg.State.PutSite(c.Request().Context(), PrincipalOf(c).Name, site)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSite(out))
}

func (s *Server) deleteSite(c echo.Context) error {
	if err := s.cfg.State.DeleteSite(c.Request().Context(), PrincipalOf(c).Name, c.Param("namespace"), c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
