package state

import (
	"net/netip"
	"slices"

	"github.com/latchnet/latch/view"
)

// Gateway failover. The primary gateway of a site address is the
// lowest-named online node whose approved routes contain it (package
// netmap). A node is online while it has an open view stream: its last
// stream closing (a killed agent's TCP connection closes; a dead host's
// stream is cut by the HTTP server's pings) marks it offline, and a
// stream opening marks it online, each time recomputing the views at
// once. For Options.GatewayGrace after Open, nodes that have not opened
// a stream yet still count as online, so that a coordinator restart does
// not move every site while the gateways reconnect; when it passes, every
// node without a stream is offline, and so is a node that joins later
// until it connects.

// gateways is what the failover keeps; guarded by State.mu.
type gateways struct {
	graceOver bool
	// seen are the nodes that opened a stream since Open.
	seen map[string]bool
	// offline are the nodes the engine holds as offline.
	offline   map[string]bool
	stopGrace func() bool
}

func newGateways() gateways {
	return gateways{seen: map[string]bool{}, offline: map[string]bool{}}
}

func (g *gateways) offlineList() []string {
	out := make([]string, 0, len(g.offline))
	for n := range g.offline {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// startGrace starts the grace period. Must hold s.mu.
func (s *State) startGrace() {
	if s.opts.GatewayGrace <= 0 {
		return
	}
	s.gw.stopGrace = s.opts.AfterFunc(s.opts.GatewayGrace, s.endGrace)
}

// endGrace marks offline every node without a stream.
func (s *State) endGrace() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gw.graceOver = true
	var changed []string
	for _, n := range s.eng.Nodes() {
		changed = union(changed, s.syncOnlineLocked(n))
	}
	s.publishFailover("grace period over", changed)
}

// Close stops the grace period's timer.
func (s *State) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gw.stopGrace != nil {
		s.gw.stopGrace()
	}
}

// syncOnlineLocked gives the engine the online state of node and returns
// the nodes whose views that changed. Must hold s.mu.
func (s *State) syncOnlineLocked(node string) []string {
	s.ev.mu.Lock()
	streams := s.ev.streams[node]
	s.ev.mu.Unlock()
	offline := s.eng.View(node) != nil && streams == 0 && (s.gw.graceOver || s.gw.seen[node])
	if offline == s.gw.offline[node] {
		return nil
	}
	if offline {
		s.gw.offline[node] = true
	} else {
		delete(s.gw.offline, node)
	}
	return s.eng.SetGatewayOnline(node, !offline)
}

// streamChanged follows a node's stream opening or closing.
func (s *State) streamChanged(node string, opened bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if opened {
		s.gw.seen[node] = true
	}
	what := "node offline"
	if opened {
		what = "node online"
	}
	s.publishFailover(what, s.syncOnlineLocked(node))
}

// publishFailover publishes the views an online state change changed.
// Must hold s.mu.
func (s *State) publishFailover(what string, changed []string) {
	for _, n := range changed {
		if v := s.eng.View(n); v != nil {
			s.hub.Publish(v)
		}
	}
	if len(changed) > 0 {
		s.opts.Log.Info("gateway failover: views changed", logChange, what, logViews, len(changed))
	}
}

// RouteState reports whether node is the primary gateway for some site
// address in its approved route prefix (as its view says) and whether it
// is online (has an open view stream).
func (s *State) RouteState(node string, prefix netip.Prefix) (primary, online bool) {
	s.ev.mu.Lock()
	online = s.ev.streams[node] > 0
	s.ev.mu.Unlock()
	if v := s.View(node); v != nil {
		vp, ok := view.PrefixFrom(prefix)
		for _, r := range v.Routes {
			if ok && r.Prefix == vp {
				primary = r.Primary
			}
		}
	}
	return primary, online
}
