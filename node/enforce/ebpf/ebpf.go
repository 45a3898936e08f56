// Package ebpf enforces a node's view in the kernel: two TCX programs on the
// WireGuard interface (bpf/latch.c) decide every packet that leaves or
// enters the tunnel exactly as view.Rules.Allows does, with connection
// tracking for replies and flow events through a ring buffer. A packet is
// decided by the rules of its local address (the destination on ingress,
// the source on egress): a workload's of the view, else, on a gateway, the
// rules of the site (view.View.Sites) whose prefix holds it, so that the
// gateway enforces policy for the site hosts behind it; the event then
// names the site ("namespace/name") as its workload. Three cgroup
// programs (connect4, sendmsg4, bind4 on the cgroup v2 root) give sockets of
// the workload cgroups named by SetCgroups their workload's overlay address
// as source, refuse with EPERM, at once, a connect or send into the overlay
// that the workload's egress rules deny, and keep each such workload's
// address to its own cgroup: in the agent's network namespace no other
// process may bind it or send from it.
//
// Compile turns a view into the entries of one rule set; it is pure and
// builds everywhere. The Enforcer (Linux only; elsewhere Load returns
// ErrUnsupported) loads the programs, pins maps and links under a directory
// on bpffs so that enforcement outlives the agent, adopts those pins when
// the agent restarts, and applies a view by filling the inactive one of two
// rule sets and switching sets with one map write.
//
// The Enforcer implements enforce.Enforcer and reports in its vocabulary
// (enforce.Event, enforce.Stats); Counters has its own counters in full.
//
// Only package node/agent imports it.
package ebpf

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

// PinRoot is where the default pin directories live.
const PinRoot = "/sys/fs/bpf/latch"

// DefaultPinDir is the pin directory for the WireGuard interface iface.
func DefaultPinDir(iface string) string { return filepath.Join(PinRoot, iface) }

// ErrUnsupported is returned by Load where eBPF enforcement is not built
// (any OS but Linux).
var ErrUnsupported = errors.New("eBPF enforcement needs Linux; use the userspace enforcer (--enforce userspace)")

// ErrNotLoaded is returned by methods of an Enforcer that was closed.
var ErrNotLoaded = errors.New("eBPF enforcer is closed")

// Directions and verdicts as the programs encode them (enums dir and
// verdict in bpf/latch.c; a test checks they agree).
const (
	kernelIngress   uint8 = 0
	kernelEgress    uint8 = 1
	kernelAllowed   uint8 = 0
	kernelDropped   uint8 = 1
	kernelWouldDeny uint8 = 2
)

// kernelDir encodes d as the programs and maps do; it also indexes
// two-element arrays by direction (ingress first).
func kernelDir(d enforce.Direction) uint8 {
	if d == enforce.Egress {
		return kernelEgress
	}
	return kernelIngress
}

// directions are the directions by kernelDir.
var directions = [2]enforce.Direction{enforce.Ingress, enforce.Egress}

// directionOf decodes a direction of the programs.
func directionOf(k uint8) enforce.Direction {
	if k == kernelEgress {
		return enforce.Egress
	}
	return enforce.Ingress
}

// verdictOf decodes a verdict of the programs; an unknown one reads as
// dropped.
func verdictOf(k uint8) enforce.Verdict {
	switch k {
	case kernelAllowed:
		return enforce.Allowed
	case kernelWouldDeny:
		return enforce.WouldDeny
	}
	return enforce.Dropped
}

// Reason says why a packet was allowed or dropped. The values are those of
// enum reason in bpf/latch.c (a test checks they agree).
type Reason uint8

const (
	ReasonAllowAll      Reason = iota // the workload's direction allows everything
	ReasonAny                         // port in the workload's Any ranges
	ReasonIdentity                    // port in the rule of the remote identity
	ReasonCIDR                        // port in the longest CIDR rule containing the remote
	ReasonTracked                     // packet of a tracked flow, or its reply
	ReasonICMPEcho                    // ICMP echo request/reply with a remote in the view
	ReasonNotIPv4                     // not IPv4: passed (the overlay is IPv4)
	ReasonNoRule                      // dropped: no rule allows the flow
	ReasonUnknownLocal                // dropped: the local address is no local workload or site host
	ReasonNotSYN                      // dropped: TCP non-SYN packet of an unknown flow
	ReasonFragment                    // dropped: IPv4 fragment
	ReasonICMP                        // dropped: ICMP other than echo, or unknown remote
	ReasonProtocol                    // dropped: not TCP, UDP, SCTP or ICMP
	ReasonMalformed                   // dropped: truncated or invalid header
	ReasonConnectDenied               // refused: connect/sendmsg of a workload socket (EPERM)
	ReasonRevoked                     // dropped: tracked flow the new rule set no longer allows
	ReasonEventLost                   // an event did not fit in the ring buffer
	ReasonMonitor                     // denied, but passed: the workload is in monitor mode
	numReasons
)

var reasonNames = [...]string{
	"allow-all", "any", "identity", "cidr", "tracked", "icmp-echo", "not-ipv4",
	"policy", "no-local-workload", "tcp-not-syn", "fragment", "icmp", "protocol", "malformed",
	"connect-denied", "revoked", "event-lost", "monitor",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Verdict is the verdict of packets counted under r.
func (r Reason) Verdict() enforce.Verdict {
	if r <= ReasonNotIPv4 || r == ReasonMonitor {
		return enforce.Allowed
	}
	return enforce.Dropped
}

// ErrUnknownWorkload is wrapped by SetCgroups when a cgroup is assigned to
// a workload that is not in the applied view.
var ErrUnknownWorkload = errors.New("workload is not in the applied view")

// resolveCgroups validates the cgroup assignment of SetCgroups (cgroup v2
// path → workload "namespace/name") and resolves it with cgroupID (the
// inode of the cgroup directory) and addrs (the overlay address of each
// workload of the applied view) to the entries of the cgroups map. It
// touches nothing but what cgroupID reads.
func resolveCgroups(in map[string]string, addrs map[string]view.Addr, cgroupID func(path string) (uint64, error)) (map[uint64]view.Addr, error) {
	out := make(map[uint64]view.Addr, len(in))
	byID := make(map[uint64]string, len(in))
	paths := make([]string, 0, len(in))
	for p := range in {
		paths = append(paths, p)
	}
	slices.Sort(paths) // deterministic errors
	for _, path := range paths {
		wl := in[path]
		switch {
		case path == "":
			return nil, fmt.Errorf("cgroup of workload %q: empty path", wl)
		case !filepath.IsAbs(path):
			return nil, fmt.Errorf("cgroup %q: not an absolute path (give the cgroup v2 directory, e.g. /sys/fs/cgroup/system.slice/api.service)", path)
		}
		ns, name, ok := strings.Cut(wl, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("cgroup %s: workload %q is not \"namespace/name\"", path, wl)
		}
		addr, ok := addrs[wl]
		if !ok {
			return nil, fmt.Errorf("cgroup %s: workload %s: %w", path, wl, ErrUnknownWorkload)
		}
		id, err := cgroupID(path)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s of workload %s: %w", path, wl, err)
		}
		if other, dup := byID[id]; dup && in[other] != wl {
			return nil, fmt.Errorf("cgroups %s and %s are the same cgroup but are given to workloads %s and %s", other, path, in[other], wl)
		}
		byID[id] = path
		out[id] = addr
	}
	return out, nil
}

// Counters are the packets counted by reason since the maps were created
// (they survive agent restarts), plus events the agent could not deliver
// because the Events channel was full.
type Counters struct {
	ByReason      map[Reason]uint64
	Allowed       uint64
	Dropped       uint64
	EventsLost    uint64 // ring buffer full in the kernel
	EventsSkipped uint64 // Events channel full in the agent

	// ConntrackCapacity is the size of the conntrack LRU map (entries; a
	// flow takes two, one per direction). When it is full, writing an
	// entry evicts the least recently used ones.
	ConntrackCapacity uint32
	// ConntrackCreated counts conntrack entries written: two per new (or
	// monitored) flow, one per re-created direction. Created entries
	// beyond ConntrackCapacity within a flow's lifetime evict others.
	ConntrackCreated uint64
	// ConntrackRecreated counts entries re-created because one direction
	// of a live flow had lost its entry (evicted, or idle while the other
	// direction was busy).
	ConntrackRecreated uint64
	// ConntrackMisses counts TCP packets without SYN and with no live
	// entry (also counted as ReasonNotSYN, or ReasonMonitor): packets of
	// flows evicted, expired or never allowed. An evicted TCP connection
	// shows here, and is dropped.
	ConntrackMisses uint64
	// BindsRefused and SourcesRefused count binds and sends refused
	// (EPERM) because the socket's cgroup does not own the overlay
	// address it named.
	BindsRefused   uint64
	SourcesRefused uint64
}

// stats converts c to the form both enforcers share; version is the
// version of the view applied last.
func (c Counters) stats(version uint64) enforce.Stats {
	st := enforce.Stats{ViewVersion: version, Packets: map[string]uint64{}, EventsLost: c.EventsLost + c.EventsSkipped,
		FlowCapacity: int(c.ConntrackCapacity), FlowsCreated: c.ConntrackCreated,
		FlowsRecreated: new(c.ConntrackRecreated), FlowMisses: new(c.ConntrackMisses),
		BindsRefused: new(c.BindsRefused), SendsRefused: new(c.SourcesRefused)}
	for r := Reason(0); r < numReasons; r++ {
		if r != ReasonEventLost {
			st.Add(r.String(), r.Verdict(), c.ByReason[r])
		}
	}
	return st
}
