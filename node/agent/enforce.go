package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/node/enforce/userspace"
	"github.com/latchnet/latch/view"
)

// Enforcement modes (Config.Enforce).
const (
	// EnforceAuto picks the eBPF enforcer when the kernel and privileges
	// allow it, else the userspace filter.
	EnforceAuto = "auto"
	// EnforceEBPF: the programs of package node/enforce/ebpf on the
	// WireGuard interface and on workload cgroups; with kernel WireGuard
	// or wireguard-go.
	EnforceEBPF = "ebpf"
	// EnforceUserspace: the packet filter of package
	// node/enforce/userspace in wireguard-go's path; it needs wireguard-go
	// and knows no cgroups.
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

// kernelEnforcer is the eBPF enforcer as the agent drives it: besides the
// view, it hooks onto the WireGuard interface once that exists, and binds
// workload cgroups (cgroupBinder). Tests stand a fake in for it.
type kernelEnforcer interface {
	enforce.Enforcer
	cgroupBinder
	// Attach hooks the programs onto the interface named iface and, if
	// cgroups, onto the cgroup v2 root (for workloads with a cgroup).
	Attach(iface string, cgroups bool) error
}

// cgroupBinder is an enforcer that confines workload sockets by cgroup
// (the eBPF one; the userspace filter knows no cgroups).
type cgroupBinder interface {
	// SetCgroups says which cgroup v2 directory holds which workload of
	// the applied view (path → "namespace/name"), replacing what it held.
	SetCgroups(cgroups map[string]string) error
}

// loadEBPF loads the eBPF enforcer, its maps pinned under pinDir.
func loadEBPF(pinDir string) (kernelEnforcer, error) {
	e, err := ebpf.Load(pinDir)
	if err != nil {
		return nil, err
	}
	return ebpfEnforcer{e}, nil
}

// ebpfEnforcer is the eBPF enforcer with Attach.
type ebpfEnforcer struct{ *ebpf.Enforcer }

func (e ebpfEnforcer) Attach(iface string, cgroups bool) error {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("finding the WireGuard interface for the eBPF enforcer: %w", err)
	}
	if err := e.AttachTCX(ifc.Index); err != nil {
		return fmt.Errorf("attaching the eBPF enforcer to %s: %w", iface, err)
	}
	if cgroups {
		// Workload sockets: bound to their overlay address, denied
		// connects refused at once with EPERM.
		if err := e.AttachCgroup(""); err != nil {
			return fmt.Errorf("attaching the eBPF enforcer's cgroup hooks: %w", err)
		}
	}
	return nil
}

// enforcerName names the enforcer of mode in errors.
func enforcerName(mode string) string {
	if mode == EnforceEBPF {
		return "eBPF enforcer"
	}
	return "userspace filter"
}

// EnforceStatus is the enforcer's part of Status.
type EnforceStatus struct {
	enforce.Stats
	// Events counts the flow events the agent read (new flows and drops);
	// each is logged at debug level.
	Events uint64 `json:"events"`
}

// wgFilter puts the userspace filter in wireguard-go's path.
type wgFilter struct{ f *userspace.Filter }

func (w wgFilter) Outbound(pkt []byte) bool { return w.f.Outbound(pkt) == enforce.Allowed }
func (w wgFilter) Inbound(pkt []byte) bool  { return w.f.Inbound(pkt) == enforce.Allowed }

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

// eventLoop reads the enforcer's events until ctx ends or the enforcer
// closes them: it counts each, adds it to the flow records and logs it at
// debug level.
func (a *agent) eventLoop(ctx context.Context) {
	events := a.enf.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			a.events.Add(1)
			a.flows.Add(ev)
			if a.log.Enabled(ctx, slog.LevelDebug) {
				a.log.Debug("flow", logDir, ev.Direction.String(), logVerdict, ev.Verdict.String(), logReason, ev.Reason, logProto, ev.Protocol,
					logSrc, netip.AddrPortFrom(ev.Src.Netip(), ev.SrcPort).String(), logDst, netip.AddrPortFrom(ev.Dst.Netip(), ev.DstPort).String(),
					logWorkload, ev.Workload, logRemoteID, uint32(ev.RemoteIdentity))
			}
		}
	}
}

// applyRules loads v's rules into the enforcer, if there is one, and gives
// an enforcer that binds cgroups those of v's workloads. On an error the
// enforcer keeps the rules it had.
func (a *agent) applyRules(v *view.View) error {
	if a.enf == nil {
		return nil
	}
	if err := a.enf.Apply(v); err != nil {
		return fmt.Errorf("%s: %w", enforcerName(a.s.enforce), err)
	}
	if b, ok := a.enf.(cgroupBinder); ok {
		a.setCgroups(b, v)
	}
	return nil
}

// setCgroups tells b which cgroup belongs to which of the view's
// workloads (those the coordinator has not put in the view yet wait for
// the next view). With none it clears what an earlier agent left in the
// pinned maps. A failure leaves the rules in force: it shows in status
// and the log.
func (a *agent) setCgroups(b cgroupBinder, v *view.View) {
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
	if err := b.SetCgroups(byPath); err != nil {
		a.log.Error("binding workload cgroups in the eBPF enforcer", logErr, err)
		a.mu.Lock()
		a.lastErr = "eBPF enforcer: " + err.Error()
		a.mu.Unlock()
	}
}
