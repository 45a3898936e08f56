package state

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// maxClockSkew is how far in the future a flow record may end.
const maxClockSkew = 5 * time.Minute

// maxFlowAge is how long ago a flow record may start: a node that was
// away longer lost those records anyway (its queue is bounded).
const maxFlowAge = 30 * 24 * time.Hour

// FlowResult is what IngestFlows did with a batch.
type FlowResult struct {
	Accepted, Rejected int
	// FirstRejection says why the first rejected record was refused.
	FirstRejection string
}

// IngestFlows stores the flow records node reported, each end resolved to
// the workload holding its address now. A record is refused (counted, not
// stored) unless its local side (the source of an egress record, the
// destination of an ingress one) is a workload of node, and it names a
// known direction and verdict and a time. Flow records are telemetry, not
// configuration: they get no audit entry and change no view.
func (s *State) IngestFlows(ctx context.Context, node string, recs []wire.FlowRecord) (FlowResult, error) {
	var res FlowResult
	flows := make([]store.Flow, 0, len(recs))
	s.mu.Lock()
	for _, r := range recs {
		f, err := s.resolveFlowLocked(node, r)
		if err != nil {
			res.Rejected++
			if res.FirstRejection == "" {
				res.FirstRejection = err.Error()
			}
			continue
		}
		flows = append(flows, f)
	}
	s.mu.Unlock()
	if len(flows) == 0 {
		return res, nil
	}
	if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.InsertFlows(flows) }); err != nil {
		return FlowResult{}, err
	}
	res.Accepted = len(flows)
	return res, nil
}

// resolveFlowLocked checks one record of node and resolves its ends. Must
// hold s.mu.
func (s *State) resolveFlowLocked(node string, r wire.FlowRecord) (store.Flow, error) {
	if err := r.Check(); err != nil {
		return store.Flow{}, err
	}
	local := r.Src
	if r.Direction == wire.DirIngress {
		local = r.Dst
	}
	now := s.opts.Now()
	if r.End.After(now.Add(maxClockSkew)) {
		return store.Flow{}, fmt.Errorf("flow time %s is in the future (coordinator time %s): check the node's clock",
			r.End.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if r.Start.Before(now.Add(-maxFlowAge)) {
		return store.Flow{}, fmt.Errorf("flow time %s is more than %v old (coordinator time %s): check the node's clock",
			r.Start.UTC().Format(time.RFC3339), maxFlowAge, now.UTC().Format(time.RFC3339))
	}
	// The local end is a workload of the node, or a site host the node
	// is a gateway for (an approved route of its holds the address).
	key := ""
	if lw, ok := s.eng.WorkloadAt(local); ok && lw.Node == node {
		key = lw.Key()
	} else if site, ok := s.eng.SiteAt(local); ok && s.eng.Carries(node, local) {
		key = site.Key()
	} else {
		return store.Flow{}, fmt.Errorf("the local address %s of a %s flow is not a workload of node %s, nor a site address it is an approved gateway for", local, r.Direction, node)
	}
	if r.Workload != "" && r.Workload != key {
		return store.Flow{}, fmt.Errorf("the local address %s is %s, not %.64q", local, key, r.Workload)
	}
	return store.Flow{
		Time: r.Start.UTC(), End: r.End.UTC(), Reporter: node, Direction: r.Direction,
		Src: s.flowEndLocked(r.Src), Dst: s.flowEndLocked(r.Dst),
		Protocol: r.Protocol, Port: r.Port, Verdict: r.Verdict, Reason: r.Reason, Packets: r.Packets, Bytes: r.Bytes,
	}, nil
}

func (s *State) flowEndLocked(a netip.Addr) store.FlowEnd {
	e := store.FlowEnd{IP: a}
	if w, ok := s.eng.WorkloadAt(a); ok {
		e.Namespace, e.Workload, e.Node = w.Namespace, w.Name, w.Node
	} else if site, ok := s.eng.SiteAt(a); ok {
		// A site host: the site's namespace and name, no node.
		e.Namespace, e.Workload = site.Namespace, site.Name
	}
	return e
}

// PruneFlows deletes flows older than retention and the oldest beyond
// maxRows (no size bound when maxRows <= 0). It returns how many it
// deleted.
func (s *State) PruneFlows(ctx context.Context, retention time.Duration, maxRows int) (int64, error) {
	var n int64
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.PruneFlows(s.opts.Now().Add(-retention), maxRows)
		return err
	})
	return n, err
}

// Flows lists stored flows.
func (s *State) Flows(ctx context.Context, q store.FlowQuery) ([]store.Flow, error) {
	var out []store.Flow
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListFlows(q)
		return err
	})
	return out, err
}
