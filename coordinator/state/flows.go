package state

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// maxClockSkew is how far in the future a flow record may start.
const maxClockSkew = 5 * time.Minute

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
	local := r.Src
	switch r.Direction {
	case wire.DirEgress:
	case wire.DirIngress:
		local = r.Dst
	default:
		return store.Flow{}, fmt.Errorf("direction %q is not ingress or egress", r.Direction)
	}
	switch r.Verdict {
	case wire.VerdictAllowed, wire.VerdictDenied, wire.VerdictWouldDeny:
	default:
		return store.Flow{}, fmt.Errorf("verdict %q is not allowed, denied or would-deny", r.Verdict)
	}
	if r.Start.IsZero() || r.End.Before(r.Start) {
		return store.Flow{}, fmt.Errorf("flow times %s..%s are not an interval", r.Start, r.End)
	}
	if now := s.opts.Now(); r.Start.After(now.Add(maxClockSkew)) {
		return store.Flow{}, fmt.Errorf("flow time %s is in the future (coordinator time %s): check the node's clock", r.Start, now)
	}
	lw, ok := s.eng.WorkloadAt(local)
	if !ok || lw.Node != node {
		return store.Flow{}, fmt.Errorf("the local address %s of a %s flow is not a workload of node %s", local, r.Direction, node)
	}
	if r.Workload != "" && r.Workload != lw.Key() {
		return store.Flow{}, fmt.Errorf("the local address %s is workload %s, not %s", local, lw.Key(), r.Workload)
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
