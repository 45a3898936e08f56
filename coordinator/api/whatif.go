package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/inventory"
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
	find := func(key, what string) (*inventory.Workload, error) {
		for i := range ws {
			if ws[i].Key() == key {
				return &ws[i], nil
			}
		}
		return nil, fail(http.StatusNotFound, "not_found", "%s %q: no such workload or node; give it as NAMESPACE/NAME (see the workloads and nodes lists)", what, key)
	}
	src, err := find(from, "source")
	if err != nil {
		return err
	}
	dst, err := find(to, "destination")
	if err != nil {
		return err
	}
	v := ev.Decide(src, dst, proto, uint16(port))
	return c.JSON(http.StatusOK, adminapi.WhatIf{From: from, To: to, Port: uint16(port), Protocol: string(proto), Baseline: string(ev.Baseline()),
		Allowed: v.Allowed, Egress: toSide(v.Egress), Ingress: toSide(v.Ingress)})
}
