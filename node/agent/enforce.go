package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/node/enforce/userspace"
	"github.com/latchnet/latch/node/flowlog"
	"github.com/latchnet/latch/view"
)

// Enforcement modes (Config.Enforce).
const (
	// EnforceAuto picks the eBPF enforcer when the kernel and privileges
	// allow it, else the userspace filter.
	EnforceAuto      = "auto"
	EnforceEBPF      = "ebpf"
	EnforceUserspace = "userspace"
	// EnforceOff enforces nothing inside the tunnel: peers and AllowedIPs
	// still limit who a node can reach, but not which ports or which way.
	EnforceOff = "off"
)

// resolveEnforce checks a configured mode; EnforceAuto is decided when
// the device comes up (eBPF if it loads, else userspace).
func resolveEnforce(mode string) (string, error) {
	switch mode {
	case "":
		return EnforceAuto, nil
	case EnforceAuto, EnforceEBPF, EnforceUserspace, EnforceOff:
		return mode, nil
	}
	return "", fmt.Errorf("enforce mode %q: want auto, ebpf, userspace or off", mode)
}

// ebpfCounters converts the eBPF enforcer's counters to the status form
// the userspace filter uses, so both read alike.
func ebpfCounters(c ebpf.Counters, version uint64) userspace.Stats {
	st := userspace.Stats{ViewVersion: version, Packets: map[string]uint64{}, Passed: c.Allowed, Dropped: c.Dropped,
		EventsLost: c.EventsLost + c.EventsSkipped}
	for r, n := range c.ByReason {
		if n > 0 {
			st.Packets[r.String()] = n
		}
	}
	return st
}

// ebpfEvents reads the eBPF enforcer's events until ctx ends, counting
// them and logging each at debug level.
func ebpfEvents(ctx context.Context, e *ebpf.Enforcer, log *slog.Logger, count *atomic.Uint64, flows *flowlog.Log) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-e.Events():
			if !ok {
				return
			}
			count.Add(1)
			if fe, ok := ebpfFlowEvent(ev); ok {
				flows.Add(fe)
			}
			logFlow(ctx, log, ev.Direction.String(), ev.Verdict.String(), ev.Reason.String(), ev.Protocol,
				netip.AddrPortFrom(ev.Src.Netip(), ev.SrcPort), netip.AddrPortFrom(ev.Dst.Netip(), ev.DstPort),
				ev.Workload, uint32(ev.RemoteIdentity))
		}
	}
}

// EnforceStatus is the enforcer's part of Status.
type EnforceStatus struct {
	userspace.Stats
	// Events counts the flow events the agent read (new flows and drops);
	// each is logged at debug level.
	Events uint64 `json:"events"`
}

// wgFilter adapts the userspace filter to wg.PacketFilter.
type wgFilter struct{ f *userspace.Filter }

func (w wgFilter) Outbound(pkt []byte) bool { return w.f.Outbound(pkt) == userspace.Pass }
func (w wgFilter) Inbound(pkt []byte) bool  { return w.f.Inbound(pkt) == userspace.Pass }

// Log field names of flow events.
const (
	logDir      = "dir"
	logVerdict  = "verdict"
	logReason   = "reason"
	logProto    = "proto"
	logSrc      = "src"
	logDst      = "dst"
	logWorkload = "workload"
	logRemoteID = "remote_identity"
)

// flowEvents reads the filter's events until ctx ends, counting them and
// logging each at debug level.
func flowEvents(ctx context.Context, f *userspace.Filter, log *slog.Logger, count *atomic.Uint64, flows *flowlog.Log) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-f.Events():
			count.Add(1)
			if fe, ok := userspaceFlowEvent(ev); ok {
				flows.Add(fe)
			}
			logFlow(ctx, log, ev.Direction.String(), ev.Verdict.String(), ev.Reason.String(), ev.Protocol,
				netip.AddrPortFrom(ev.Src.Netip(), ev.SrcPort), netip.AddrPortFrom(ev.Dst.Netip(), ev.DstPort),
				ev.Workload, uint32(ev.RemoteIdentity))
		}
	}
}

// logFlow logs one flow event of either enforcer at debug level.
func logFlow(ctx context.Context, log *slog.Logger, dir, verdict, reason string, proto any, src, dst netip.AddrPort, workload string, remote uint32) {
	if !log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	log.Debug("flow", logDir, dir, logVerdict, verdict, logReason, reason, logProto, proto,
		logSrc, src.String(), logDst, dst.String(), logWorkload, workload, logRemoteID, remote)
}

// applyRules loads v's rules into the enforcer, if there is one. On an
// error the enforcer keeps the rules it had.
func (a *agent) applyRules(v *view.View) error {
	if a.filter != nil {
		if err := a.filter.Apply(v); err != nil {
			return fmt.Errorf("userspace filter: %w", err)
		}
	}
	if a.bpf != nil {
		if err := a.bpf.Apply(v); err != nil {
			return fmt.Errorf("eBPF enforcer: %w", err)
		}
		a.setCgroups(v)
	}
	return nil
}

// setCgroups tells the eBPF enforcer which cgroup belongs to which of the
// view's workloads (those the coordinator has not put in the view yet
// wait for the next view). With none it clears what an earlier agent
// left in the pinned maps.
func (a *agent) setCgroups(v *view.View) {
	inView := make(map[string]bool, len(v.Workloads))
	for _, w := range v.Workloads {
		inView[w.Workload] = true
	}
	byPath := map[string]string{}
	for key, path := range a.s.WorkloadCgroups {
		if path != "" && inView[key] {
			byPath[path] = key
		}
	}
	if err := a.bpf.SetCgroups(byPath); err != nil {
		a.log.Error("binding workload cgroups in the eBPF enforcer", logErr, err)
		a.mu.Lock()
		a.lastErr = "eBPF enforcer: " + err.Error()
		a.mu.Unlock()
	}
}
