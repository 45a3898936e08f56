package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/latchnet/latch/enforce/userspace"
	"github.com/latchnet/latch/view"
)

// Enforcement modes (Config.Enforce).
const (
	// EnforceAuto picks the best enforcer available. Until the eBPF
	// enforcer exists it is EnforceUserspace.
	EnforceAuto      = "auto"
	EnforceEBPF      = "ebpf"
	EnforceUserspace = "userspace"
	// EnforceOff enforces nothing inside the tunnel: peers and AllowedIPs
	// still limit who a node can reach, but not which ports or which way.
	EnforceOff = "off"
)

// ErrEBPFNotBuilt is returned for --enforce ebpf until the eBPF enforcer
// exists.
var ErrEBPFNotBuilt = errors.New("the eBPF enforcer is not built yet: use --enforce userspace")

// resolveEnforce turns a configured mode into the one that runs.
func resolveEnforce(mode string) (string, error) {
	switch mode {
	case "", EnforceAuto:
		return EnforceUserspace, nil
	case EnforceUserspace, EnforceOff:
		return mode, nil
	case EnforceEBPF:
		return "", ErrEBPFNotBuilt
	}
	return "", fmt.Errorf("enforce mode %q: want auto, ebpf, userspace or off", mode)
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
func flowEvents(ctx context.Context, f *userspace.Filter, log *slog.Logger, count *atomic.Uint64) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-f.Events():
			count.Add(1)
			if !log.Enabled(ctx, slog.LevelDebug) {
				continue
			}
			log.Debug("flow",
				logDir, ev.Direction.String(),
				logVerdict, ev.Verdict.String(),
				logReason, ev.Reason.String(),
				logProto, ev.Protocol,
				logSrc, netip.AddrPortFrom(ev.Src.Netip(), ev.SrcPort).String(),
				logDst, netip.AddrPortFrom(ev.Dst.Netip(), ev.DstPort).String(),
				logWorkload, ev.Workload,
				logRemoteID, uint32(ev.RemoteIdentity))
		}
	}
}

// applyFilter gives v to the enforcer, if there is one.
func (a *agent) applyFilter(v *view.View) {
	if a.filter != nil {
		a.filter.Apply(v)
	}
}
