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
// a port would pass, and which policies decide it.
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
	ev, ws, err := s.cfg.State.Evaluator(c.Request().Context())
	if err != nil {
		return err
	}
	v, err := ev.WhatIf(ws, from, to, proto, uint16(port))
	if errors.Is(err, policy.ErrNoWorkload) {
		return fail(http.StatusNotFound, "not_found", "%v", err)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, adminapi.WhatIf{From: from, To: to, Port: uint16(port), Protocol: string(proto), Baseline: string(ev.Baseline()),
		Allowed: v.Allowed, Egress: toSide(v.Egress), Ingress: toSide(v.Ingress)})
}
