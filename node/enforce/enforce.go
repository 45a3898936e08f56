// Package enforce is what the node agent knows of an enforcer: the
// Enforcer interface, which both enforcers implement, and the one
// vocabulary they report in (Event, Direction, Verdict, Stats). The agent
// holds one Enforcer, chosen by --enforce, hands it every view through
// Apply, reads its Events into flow records (package node/flowlog) and its
// Stats into status and metrics; Fake stands in for it in the agent's
// tests.
//
// Both enforce the same rule tables of the view: each local workload's
// (view.View.Workloads, by its overlay address) and, on a gateway, each
// site's it carries (view.View.Sites, by the site's prefixes). A packet is
// decided by the rules of its local address, the destination of a packet
// out of the tunnel (ingress) and the source of one into it (egress): a
// workload's when the address is one, else the site's whose prefix holds
// it (the longest), else it is dropped. So a gateway checks, on behalf of
// its site's agentless hosts, what the overlay sends them (ingress) and
// what they send into the overlay, to workloads or to another gateway's
// site (egress), with connection tracking: a site host can answer a flow
// its rules allowed, but open only what its egress rules allow. Events of
// such packets name the site as their workload.
//
// The enforcers, and what each enforces:
//   - node/enforce/ebpf (Linux): TCX programs on the WireGuard interface
//     decide every packet of every overlay address of the view (the node's
//     and each workload's), and of every site host it carries, by the
//     rules of its local workload or site; cgroup programs (connect4,
//     sendmsg4, bind4 on the cgroup v2 root) give the sockets of a
//     workload declared with a cgroup its overlay address, refuse at once
//     (EPERM) a connect or send its egress rules deny, and keep its
//     address to its cgroup. It works with kernel WireGuard and
//     with wireguard-go, and its pinned maps keep enforcing while the agent
//     restarts.
//   - node/enforce/userspace: a packet filter in wireguard-go's path (so
//     it needs wireguard-go, not kernel WireGuard) that decides the same
//     packets by the same rules, per overlay address and site prefix. It
//     knows no cgroups: a workload's cgroup is checked and shown in
//     status, but its sockets are neither bound to its address nor
//     refused at connect.
//
// After a view narrows the rules, both decide each tracked flow again at
// its next packet, as it was opened. The eBPF enforcer drops that packet
// (reason "revoked") and forgets the flow if the new rules deny it; the
// userspace enforcer forgets the flow and decides that packet as a new one
// (a TCP packet without SYN is dropped as "tcp-not-syn"; a UDP or SCTP
// packet passes only if the rules allow it as a new flow in its own
// direction).
//
// It is pure: it imports no BPF, netlink or WireGuard package. Anything
// may import it. The enforcers, node/flowlog and the node agent do.
package enforce

import (
	"fmt"
	"time"

	"github.com/latchnet/latch/view"
)

// Enforcer enforces a node's view inside the tunnel. Its methods are safe
// for concurrent use.
type Enforcer interface {
	// Apply makes v's rules the ones in force, atomically: every packet is
	// decided entirely by the previous rules or entirely by v's. On an
	// error (v does not fit, a write was refused) the previous rules stay
	// in force.
	Apply(v *view.View) error
	// Events delivers flow events: new allowed flows, drops and would-be
	// drops of monitor-mode workloads. The enforcer never waits for a
	// reader: events that do not fit are counted in Stats.EventsLost. The
	// channel may be nil (no events) and may be closed by Close.
	Events() <-chan Event
	// Stats returns the enforcer's counters.
	Stats() (Stats, error)
	// Close releases what the process holds. The eBPF enforcer's pinned
	// programs and maps stay and keep enforcing (latch node --cleanup
	// removes them).
	Close() error
}

// Direction is the way a packet goes through the tunnel, as seen from the
// local workload.
type Direction uint8

const (
	// Ingress: the packet came out of the tunnel (remote source, local
	// destination).
	Ingress Direction = iota + 1
	// Egress: the packet goes into the tunnel (local source, remote
	// destination).
	Egress
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Verdict is what an enforcer did with a packet (or a connect).
type Verdict uint8

const (
	// Dropped is the zero Verdict: a packet is dropped unless something
	// lets it through.
	Dropped Verdict = iota
	Allowed
	// WouldDeny: the packet passed because its workload is in monitor
	// mode, but the rules deny it. Only events carry it.
	WouldDeny
)

func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case WouldDeny:
		return "would-deny"
	}
	return "dropped"
}

// Event is a new allowed flow, a drop, or a would-be drop. Addresses and
// ports are the packet's (Src sent it); for a packet that could not be
// parsed they may be zero.
type Event struct {
	Time      time.Time
	Direction Direction
	Verdict   Verdict
	// Reason names why the packet passed or was dropped, in the
	// enforcer's own terms ("policy", "tcp-not-syn", "revoked", ...); for
	// WouldDeny, the reason it would have been dropped for. The names are
	// those of Stats.Packets.
	Reason   string
	Protocol uint8 // IP protocol number: 6 TCP, 17 UDP, 132 SCTP, 1 ICMP
	Src, Dst view.Addr
	SrcPort  uint16
	DstPort  uint16
	// Workload is the local workload ("namespace/name") or, on a gateway,
	// the site ("namespace/name", view.SiteRules.Site) whose rules decided
	// a packet of one of its hosts; "" when the local address is neither
	// (or, eBPF, the rule set was loaded by an earlier agent).
	Workload string
	// RemoteIdentity is the remote address's identity in the view.
	RemoteIdentity view.Identity
	// Bytes is the packet's length, 0 if unknown (and for a connect or
	// send the eBPF cgroup hooks refused).
	Bytes uint32
}

// Stats is a snapshot of an enforcer's counters. The JSON form is the
// enforcement part of the agent's status. Counters that only one enforcer
// keeps are pointers, nil for the other.
type Stats struct {
	// ViewVersion is the version of the view whose rules are in force, 0
	// before the first Apply.
	ViewVersion uint64 `json:"viewVersion"`
	// Packets counts packets (and, eBPF, refused connects) by reason
	// name; reasons never seen are left out. Add fills it.
	Packets map[string]uint64 `json:"packets"`
	// Passed and Dropped are the totals of Packets by verdict (would-be
	// drops of monitor mode passed).
	Passed  uint64 `json:"passed"`
	Dropped uint64 `json:"dropped"`
	// EventsLost counts events dropped because a buffer was full.
	EventsLost uint64 `json:"eventsLost"`

	// FlowCapacity is the size of the connection-tracking table:
	// userspace, in flows; eBPF, in entries, two per flow. Beyond it the
	// least recently used are forgotten.
	FlowCapacity int `json:"flowCapacity"`
	// FlowsCreated counts connection-tracking entries written: userspace,
	// one per flow; eBPF, two per new flow and one per re-created
	// direction.
	FlowsCreated uint64 `json:"flowsCreated"`

	// Flows is the number of tracked flows, expired ones not yet reused
	// included (userspace).
	Flows *int `json:"flows,omitempty"`
	// FlowsEvicted counts flows forgotten to make room for new ones
	// (userspace).
	FlowsEvicted *uint64 `json:"flowsEvicted,omitempty"`
	// FlowsRecreated counts entries re-created because one direction of a
	// live flow had lost its entry (eBPF).
	FlowsRecreated *uint64 `json:"flowsRecreated,omitempty"`
	// FlowMisses counts TCP packets without SYN and without a live entry:
	// flows evicted, expired or never allowed; they are dropped (eBPF).
	FlowMisses *uint64 `json:"flowMisses,omitempty"`
	// BindsRefused and SendsRefused count binds and sends refused (EPERM)
	// because the socket's cgroup does not own the overlay address (eBPF).
	BindsRefused *uint64 `json:"bindsRefused,omitempty"`
	SendsRefused *uint64 `json:"sendsRefused,omitempty"`

	// Dropping holds the reasons of Packets whose packets were dropped,
	// as Add was told. It is not in the JSON form: Verdict is known in
	// the process that made the Stats only.
	Dropping map[string]bool `json:"-"`
}

// Add counts n packets of reason with verdict v (WouldDeny counts as
// passed): in Packets, and in Passed or Dropped. Zero counts are left out
// of Packets.
func (s *Stats) Add(reason string, v Verdict, n uint64) {
	if n == 0 {
		return
	}
	if s.Packets == nil {
		s.Packets = map[string]uint64{}
	}
	s.Packets[reason] += n
	if v == Dropped {
		s.Dropped += n
		if s.Dropping == nil {
			s.Dropping = map[string]bool{}
		}
		s.Dropping[reason] = true
		return
	}
	s.Passed += n
}

// Verdict is the verdict of the packets counted under reason: Dropped or
// Allowed, as Add was told.
func (s Stats) Verdict(reason string) Verdict {
	if s.Dropping[reason] {
		return Dropped
	}
	return Allowed
}
