package api

import (
	"context"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/relay"
)

// newRelay is the relay embedded in the node API (package relay), unless
// Config.NoRelay: its gate is state.MutualPeers, and an open connection
// checks its node's certificate again every keepalive, as the view
// stream does.
func (s *Server) newRelay() *relay.Server {
	if s.cfg.NoRelay {
		return nil
	}
	return relay.NewServer(relay.Config{Gate: relay.GateFunc(s.cfg.State.MutualPeers), Log: s.cfg.Log, CheckInterval: s.cfg.Keepalive})
}

// relayConn serves a node's relay connection (a WebSocket), the node
// authenticated by nodeAuth like every node call.
func (s *Server) relayConn(c echo.Context) error {
	s.relay.Serve(c.Response(), c.Request(), nodeOf(c).Name, func(context.Context) error { return s.nodeStillAuthorized(c) })
	return nil
}
