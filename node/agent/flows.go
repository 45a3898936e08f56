package agent

import (
	"context"
	"time"

	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/node/enforce/userspace"
	"github.com/latchnet/latch/node/flowlog"
	"github.com/latchnet/latch/wire"
)

// flowBatch is the most records one upload carries.
const flowBatch = 5000

// ebpfFlowEvent converts an eBPF enforcer event; ok is false for events
// that belong to no local workload (the coordinator could not place them).
func ebpfFlowEvent(ev ebpf.Event) (flowlog.Event, bool) {
	if ev.Workload == "" {
		return flowlog.Event{}, false
	}
	out := flowlog.Event{Time: ev.Time, Workload: ev.Workload, Src: ev.Src.Netip(), Dst: ev.Dst.Netip(),
		Protocol: ev.Protocol, Port: ev.DstPort, Reason: ev.Reason.String(), Bytes: uint64(ev.Bytes),
		Direction: wire.DirIngress}
	if ev.Direction == ebpf.Egress {
		out.Direction = wire.DirEgress
	}
	switch ev.Verdict {
	case ebpf.Allowed:
		out.Verdict = wire.VerdictAllowed
	case ebpf.WouldDeny:
		out.Verdict = wire.VerdictWouldDeny
	default:
		out.Verdict = wire.VerdictDenied
	}
	return out, true
}

// userspaceFlowEvent converts a userspace filter event; ok is false for
// events of no local workload.
func userspaceFlowEvent(ev userspace.Event) (flowlog.Event, bool) {
	if ev.Workload == "" {
		return flowlog.Event{}, false
	}
	out := flowlog.Event{Time: ev.Time, Workload: ev.Workload, Src: ev.Src.Netip(), Dst: ev.Dst.Netip(),
		Protocol: ev.Protocol, Port: ev.DstPort, Reason: ev.Reason.String(), Bytes: uint64(ev.Bytes), Direction: wire.DirIngress}
	if ev.Direction == userspace.DirOutbound {
		out.Direction = wire.DirEgress
	}
	switch ev.Verdict {
	case userspace.Pass:
		out.Verdict = wire.VerdictAllowed
	case userspace.WouldDeny:
		out.Verdict = wire.VerdictWouldDeny
	default:
		out.Verdict = wire.VerdictDenied
	}
	return out, true
}

// flowLoop ends an aggregation interval every s.FlowInterval and uploads
// the queued records. A failed upload puts them back (the Log drops the
// oldest when full) and is retried at the next interval; nothing here
// blocks the event readers.
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
