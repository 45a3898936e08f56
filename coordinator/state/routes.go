package state

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// checkRoutes validates the routes a node advertises, before anything is
// looked up: each an IPv4 network outside the overlay, at least
// wire.MinRouteBits long, none twice, none overlapping another, at most
// wire.MaxRoutes.
func (s *State) checkRoutes(name string, rs []wire.Route) ([]netip.Prefix, error) {
	ps, err := wire.CheckRoutes(rs, s.opts.Pool)
	if err != nil {
		return nil, fmt.Errorf("%w: node %s: %v; fix its --advertise-routes (or advertiseRoutes in its config file) and restart it", ErrInvalid, name, err)
	}
	return ps, nil
}

// setRoutes replaces the routes node advertises inside a change. A route
// the node advertised before keeps its status (an approved one stays
// approved, a rejected one rejected); a new one waits for an admin; a
// route left out is withdrawn. A prefix that overlaps a different prefix
// another node advertises (and an admin has not rejected) is refused with
// ErrConflict; the same prefix is allowed (several gateways for one
// subnet). Must hold s.mu.
func (s *State) setRoutes(tx store.Tx, node string, rs []wire.Route, ps []netip.Prefix) error {
	all, err := tx.ListRoutes()
	if err != nil {
		return err
	}
	mine := map[netip.Prefix]store.Route{}
	for _, r := range all {
		if r.Node == node {
			mine[r.Prefix] = r
		}
	}
	now := s.opts.Now()
	out := make([]store.Route, len(rs))
	for i, p := range ps {
		if err := overlapsOthers(all, node, p); err != nil {
			return err
		}
		r, ok := mine[p]
		if !ok {
			r = store.Route{Node: node, Prefix: p, Status: store.RouteAdvertised, AdvertisedAt: now}
		}
		r.SNAT = rs[i].SNAT
		out[i] = r
	}
	return tx.SetRoutes(node, out)
}

// overlapsOthers refuses p if it overlaps a different prefix that another
// node than node advertises and that is not rejected.
func overlapsOthers(all []store.Route, node string, p netip.Prefix) error {
	for _, o := range all {
		if o.Node == node || o.Status == store.RouteRejected || o.Prefix == p || !o.Prefix.Overlaps(p) {
			continue
		}
		return fmt.Errorf("%w: route %s overlaps %s, which node %s advertises: advertise exactly %s (several gateways may advertise the same subnet) or a subnet no other gateway covers, or have an admin reject the other route (latch admin route reject %s %s)",
			ErrConflict, p, o.Prefix, o.Node, o.Prefix, o.Node, o.Prefix)
	}
	return nil
}

// approvedByNode returns the approved prefixes of each node, the routes
// the view engine uses.
func approvedByNode(routes []store.Route) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, r := range routes {
		if r.Status == store.RouteApproved {
			out[r.Node] = append(out[r.Node], r.Prefix)
		}
	}
	return out
}

// syncRoutes gives the view engine node's approved routes as the store
// now holds them (inside a change, after the store was written) and
// returns changed with the nodes whose views that changes added. Must
// hold s.mu.
func (s *State) syncRoutes(tx store.Tx, node string, changed []string) ([]string, error) {
	routes, err := tx.ListRoutes()
	if err != nil {
		return nil, err
	}
	s.touched = true // the engine may have changed before this call
	more, err := s.eng.SetApprovedRoutes(node, approvedByNode(routes)[node])
	if err != nil {
		return nil, err
	}
	return union(changed, more), nil
}

// union returns the names in a or b, each once, sorted.
func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Routes returns every advertised route ordered by node, prefix; node ""
// for all nodes.
func (s *State) Routes(ctx context.Context, node string) ([]store.Route, error) {
	var out []store.Route
	err := s.st.View(ctx, func(tx store.Tx) error {
		all, err := tx.ListRoutes()
		for _, r := range all {
			if node == "" || r.Node == node {
				out = append(out, r)
			}
		}
		return err
	})
	return out, err
}

// ApproveRoute approves the route prefix that node advertises (waiting
// or rejected), audited as route.approve. A route that overlaps a
// different one another node advertises is refused (ErrConflict).
func (s *State) ApproveRoute(ctx context.Context, actor, node, prefix string) (store.Route, error) {
	return s.decideRoute(ctx, "route.approve", store.RouteApproved, actor, node, prefix)
}

// RejectRoute rejects the route prefix that node advertises, audited as
// route.reject. It stays rejected while the node advertises it, until an
// admin approves it.
func (s *State) RejectRoute(ctx context.Context, actor, node, prefix string) (store.Route, error) {
	return s.decideRoute(ctx, "route.reject", store.RouteRejected, actor, node, prefix)
}

func (s *State) decideRoute(ctx context.Context, action, status, actor, node, prefix string) (store.Route, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return store.Route{}, fmt.Errorf("%w: %q is not a prefix in CIDR notation, such as 198.19.1.0/24", ErrInvalid, prefix)
	}
	var out store.Route
	detail := map[string]any{"node": node, "prefix": prefix}
	err = s.change(ctx, action, actor, node+" "+prefix, detail, func(tx store.Tx) ([]string, error) {
		all, err := tx.ListRoutes()
		if err != nil {
			return nil, err
		}
		var mine []store.Route
		found := -1
		for _, r := range all {
			if r.Node == node {
				if r.Prefix == p {
					found = len(mine)
				}
				mine = append(mine, r)
			}
		}
		if found < 0 {
			if _, err := tx.GetNode(node); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("node %s advertises no route %s: see latch admin route list: %w", node, prefix, ErrNotFound)
		}
		detail["before"] = mine[found].Status
		if status == store.RouteApproved {
			if err := overlapsOthers(all, node, p); err != nil {
				return nil, err
			}
		}
		mine[found].Status, mine[found].DecidedAt, mine[found].DecidedBy = status, s.opts.Now(), actor
		out = mine[found]
		if err := tx.SetRoutes(node, slices.Clone(mine)); err != nil {
			return nil, err
		}
		return s.syncRoutes(tx, node, nil)
	})
	return out, err
}
