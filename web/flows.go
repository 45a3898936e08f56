package web

import (
	"context"
	"sort"

	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// StoredFlows is the FlowSource over the coordinator's flow records (the
// flows the nodes report, kept by package state): the overview's recent
// denied flows are the newest records with the verdict denied or
// would-deny.
type StoredFlows struct{ State *state.State }

var _ FlowSource = StoredFlows{}

// RecentDenied returns the newest limit denied and would-deny flows,
// newest first.
func (s StoredFlows) RecentDenied(ctx context.Context, limit int) ([]DeniedFlow, error) {
	var all []store.Flow
	for _, v := range []string{wire.VerdictDenied, wire.VerdictWouldDeny} {
		fs, err := s.State.Flows(ctx, store.FlowQuery{Verdict: v, Limit: limit})
		if err != nil {
			return nil, err
		}
		all = append(all, fs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID > all[j].ID })
	if len(all) > limit {
		all = all[:limit]
	}
	out := make([]DeniedFlow, 0, len(all))
	for _, f := range all {
		out = append(out, DeniedFlow{Time: f.Time, From: flowEnd(f.Src), To: flowEnd(f.Dst), Port: f.Port, Protocol: f.Protocol,
			Node: f.Reporter, Monitor: f.Verdict == wire.VerdictWouldDeny})
	}
	return out, nil
}

// flowEnd names a flow's end as namespace/workload, or by its address
// when it is no known workload.
func flowEnd(e store.FlowEnd) string {
	if e.Workload == "" {
		return e.IP.String()
	}
	return e.Namespace + "/" + e.Workload
}
