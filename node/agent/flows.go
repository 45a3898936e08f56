package agent

import (
	"context"
	"time"

	"github.com/latchnet/latch/wire"
)

// flowBatch is the most records one upload carries.
const flowBatch = 5000

// flowLoop ends an aggregation interval every s.FlowInterval and uploads
// the queued records. A failed upload puts them back (the Log drops the
// oldest when full) and is retried at the next interval; nothing here
// blocks the event loop.
func (a *agent) flowLoop(ctx context.Context) {
	t := time.NewTicker(a.s.FlowInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.flows.Flush()
		a.uploadFlows(ctx)
	}
}

// uploadFlows sends the queued records in batches until the queue is
// empty or an upload fails.
func (a *agent) uploadFlows(ctx context.Context) {
	for {
		recs, dropped := a.flows.Take(flowBatch)
		if len(recs) == 0 && dropped == 0 {
			return
		}
		resp, err := a.api.postFlows(ctx, wire.FlowBatch{Records: recs, Dropped: dropped})
		if err != nil {
			a.flows.Return(recs, dropped)
			a.log.Debug("uploading flow records; keeping them for the next try", logErr, err, "records", len(recs))
			return
		}
		a.flowsSent.Add(uint64(resp.Accepted))
		if resp.Rejected > 0 {
			a.log.Warn("the coordinator refused flow records", "rejected", resp.Rejected, logErr, resp.Message)
		}
		if len(recs) < flowBatch {
			return
		}
	}
}
