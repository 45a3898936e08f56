package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

// whatIf answers whether traffic from one workload (or node) to another on
// a port would pass, and which policies decide it; an end may also be a
// site, part of one or a site address (policy.ResolveEndpoint reads it),
// and the answer then holds the allowed address pairs.
func (s *Server) whatIf(c echo.Context) error {
	from, to := c.QueryParam("from"), c.QueryParam("to")
	port, err := strconv.ParseUint(c.QueryParam("port"), 10, 16)
	if err != nil || port == 0 {
		return fail(http.StatusBadRequest, "invalid", "port %q: want a port number from 1 to 65535", c.QueryParam("port"))
	}
	proto := inventory.Protocol(strings.ToUpper(c.QueryParam("protocol")))
	if proto == "" {
		proto = inventory.TCP
	}
	if !proto.Valid() {
		return fail(http.StatusBadRequest, "invalid", "protocol %q: want TCP, UDP or SCTP", proto)
	}
	ev, ws, sites, err := s.cfg.State.SiteEvaluator(c.Request().Context())
	if err != nil {
		return err
	}
	out := adminapi.WhatIf{From: from, To: to, Port: uint16(port), Protocol: string(proto), Baseline: string(ev.Baseline())}
	if isWorkload(ws, from) && isWorkload(ws, to) {
		v, err := ev.WhatIf(ws, from, to, proto, uint16(port))
		if err != nil {
			return err
		}
		out.Allowed, out.Egress, out.Ingress = v.Allowed, toSide(v.Egress), toSide(v.Ingress)
		return c.JSON(http.StatusOK, out)
	}
	if len(sites) == 0 {
		// The answer (and its message) of a coordinator without sites.
		_, err := ev.WhatIf(ws, from, to, proto, uint16(port))
		if errors.Is(err, policy.ErrNoWorkload) {
			return fail(http.StatusNotFound, "not_found", "%v", err)
		}
		return err
	}
	a, err := ev.WhatIfSites(ws, sites, from, to, proto, uint16(port))
	if errors.Is(err, policy.ErrNoEndpoint) {
		return fail(http.StatusNotFound, "not_found", "%v", err)
	}
	if err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	out.Allowed = a.Full
	out.Verdict = policy.SiteDeny
	switch {
	case a.Full:
		out.Verdict = policy.SiteAllow
	case a.Any():
		out.Verdict = policy.SitePartial
	}
	for _, r := range a.Allowed {
		out.AllowedRanges = append(out.AllowedRanges, adminapi.AddrRange{From: r.From, To: r.To})
	}
	if a.Verdict != nil {
		out.Egress, out.Ingress = toSide(a.Verdict.Egress), toSide(a.Verdict.Ingress)
	}
	return c.JSON(http.StatusOK, out)
}

// isWorkload reports whether key names one of ws (a workload or a node).
func isWorkload(ws []inventory.Workload, key string) bool {
	for i := range ws {
		if ws[i].Key() == key {
			return true
		}
	}
	return false
}
