package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
)

func workloadOf(d wire.WorkloadDecl) inventory.Workload {
	ports := append([]inventory.Port(nil), d.Ports...)
	for i := range ports {
		if ports[i].Protocol == "" {
			ports[i].Protocol = inventory.TCP
		}
	}
	return inventory.Workload{Name: d.Name, Namespace: d.Namespace, Labels: d.Labels, Ports: ports}
}

// stream sends the node its view: in full, or as a delta from the version
// it holds, then every newer version as it comes, with keepalives. At
// least once per keepalive interval it checks again that the certificate
// the stream was opened with still authorizes the node (not expired, not
// replaced by a renewal, the node not deleted); when it no longer does,
// or the node is deleted, the last line says why (StreamMessage.End) and
// the stream ends. It also ends when the client goes away.
func (s *Server) stream(c echo.Context) error {
	have := uint64(0)
	if h := c.QueryParam("have"); h != "" {
		v, err := strconv.ParseUint(h, 10, 64)
		if err != nil {
			return fail(http.StatusBadRequest, "bad_request", "have=%q: want the view version the node holds (a number)", h)
		}
		have = v
	}
	name := nodeOf(c).Name
	s.cfg.State.StreamOpened(name)
	defer s.cfg.State.StreamClosed(name)
	s.metrics.streamOpen(name, 1)
	defer s.metrics.streamOpen(name, -1)
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	enc := json.NewEncoder(w)
	ctx := c.Request().Context()
	checked := time.Now()
	for {
		wait, cancel := context.WithTimeout(ctx, s.cfg.Keepalive)
		u, err := s.cfg.State.Hub().Next(wait, name, have)
		cancel()
		var msg wire.StreamMessage
		switch {
		case err == nil:
			msg.Full, msg.Delta = u.Full, u.Delta
			have = u.Version()
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			msg.Keepalive = true
		case errors.Is(err, fanout.ErrGone):
			s.cfg.Log.Info("stream ended: node removed", "node", name)
			msg.End = &wire.Error{Error: fmt.Sprintf("node %q was deleted: enroll it again with a new join token", name), Code: "deleted"}
		default:
			return nil // client gone
		}
		if msg.End == nil && (msg.Keepalive || time.Since(checked) >= s.cfg.Keepalive) {
			checked = time.Now()
			if err := s.nodeStillAuthorized(c); err != nil {
				ae := classify(err)
				s.cfg.Log.Info("stream ended: the node's certificate no longer authorizes it", "node", name, "err", ae.err)
				msg = wire.StreamMessage{End: &wire.Error{Error: ae.err.Error(), Code: ae.code}}
			}
		}
		if err := enc.Encode(&msg); err != nil {
			return nil
		}
		w.Flush()
		if msg.End != nil {
			return nil
		}
		if err == nil {
			s.metrics.pushed(msg.Full != nil, u.Published)
		}
	}
}
