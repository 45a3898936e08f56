// Package userspace is the userspace enforcer: a packet filter that sits
// between the node's TUN device and wireguard-go and lets through only the
// flows the node's view allows. It is the fallback for hosts where the eBPF
// enforcer cannot run (no BPF, non-Linux, tests without root); it enforces
// per node address, not per cgroup.
//
// A Filter judges every IPv4 packet twice at most, once per node: Outbound
// for packets the kernel sends into the tunnel (a local workload is the
// source, the packet is judged by its egress rules) and Inbound for packets
// out of the tunnel (a local workload is the destination, judged by its
// ingress rules). The first packet of a flow is decided exactly as
// view.Rules.Allows decides, with the remote address's identity from the
// view; the flow is then tracked, and its later packets and its replies pass
// without a rule lookup.
//
// What it does with the packets rules do not name:
//   - A packet whose local address is not one of the view's workloads is
//     dropped, as is every packet before the first Apply, IPv6, and anything
//     malformed or truncated.
//   - TCP: a new flow starts with a SYN without ACK; any other TCP packet of
//     an unknown flow is dropped. Tracked flows expire after 60 s until a
//     reply is seen, 5 min once established, 10 s after a FIN or RST.
//     UDP and SCTP flows expire 60 s after their last packet.
//   - ICMP: echo request and reply pass iff the remote address has an
//     identity in the view (it is a workload the node may talk to). ICMP
//     errors (unreachable, time exceeded, parameter problem, source quench)
//     pass iff the packet they quote belongs to a tracked flow, so path MTU
//     discovery and "port unreachable" work for allowed flows only. Other
//     ICMP is dropped. Rules with AllowAll let every ICMP packet through.
//   - Other IP protocols pass iff the rules of that direction are AllowAll.
//   - Fragments: only the first fragment carries ports, and it is judged like
//     any packet (it must hold the whole TCP header, RFC 1858). When it
//     passes, the datagram's identification is remembered for 10 s; later
//     fragments pass iff their datagram's first fragment did. A later
//     fragment that arrives before its first fragment is dropped.
//   - Monitor mode (view.WorkloadRules.Monitor): a packet of such a local
//     workload that would be dropped for any reason passes instead and is
//     counted as "monitor"; its event carries the drop reason and the
//     verdict WouldDeny. A TCP, UDP or SCTP flow let through this way is
//     tracked like an allowed one, so its later packets and its replies
//     pass without further events.
//   - A new view (Apply) replaces the rule set atomically. A tracked flow is
//     checked again against the new rules at its next packet and ended if
//     they no longer allow it.
//
// The connection-tracking table is bounded (Options.MaxFlows, 65,536 by
// default); when it is full the least recently used flows are forgotten
// (counted in Stats.FlowsEvicted). A view is bounded too (Options.MaxEntries):
// Apply refuses a larger one with ErrTooLarge and keeps the rules in force.
// Flow events (new allowed flows and drops) go to a bounded channel; when
// nobody reads fast enough they are dropped and counted, never waited for.
//
// It is pure Go with no OS effects and imports no wireguard-go, netlink or
// BPF package. Only package node/agent imports it; node/wg calls it
// through a small interface.
package userspace

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchnet/latch/view"
)

// Timeouts of tracked flows.
const (
	TimeoutNew         = 60 * time.Second // TCP before a reply, UDP, SCTP
	TimeoutEstablished = 5 * time.Minute  // TCP once a reply was seen
	TimeoutClosing     = 10 * time.Second // TCP after FIN or RST
	TimeoutFragment    = 10 * time.Second // remembered first fragments
)

// Defaults of Options fields left zero.
const (
	DefaultMaxFlows    = 65536
	DefaultEventBuffer = 4096
	// DefaultMaxEntries is as many entries as the eBPF enforcer's
	// identity, rule and CIDR maps hold together.
	DefaultMaxEntries = 3 << 18
	maxFragments      = 4096
)

// Direction says which way a packet goes through the tunnel.
type Direction uint8

const (
	// DirOutbound packets come from the kernel and go into the tunnel: a
	// local workload sends them.
	DirOutbound Direction = iota + 1
	// DirInbound packets come out of the tunnel and go to the kernel: a
	// local workload receives them.
	DirInbound
)

func (d Direction) String() string {
	switch d {
	case DirOutbound:
		return "outbound"
	case DirInbound:
		return "inbound"
	}
	return "unknown"
}

// Verdict is the filter's decision on one packet.
type Verdict uint8

const (
	Drop Verdict = iota
	Pass
	// WouldDeny is the verdict of events only: the packet passed because
	// its workload's namespace is in monitor mode, but the rules deny it.
	WouldDeny
)

func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case WouldDeny:
		return "would-deny"
	}
	return "drop"
}

// Reason says why a packet passed or was dropped.
type Reason uint8

const (
	reasonNone Reason = iota
	// Passes.
	ReasonNewFlow     // the rules allow a new flow; it is now tracked
	ReasonTracked     // a packet of a tracked flow, or its reply
	ReasonICMPEcho    // echo request or reply with a known remote
	ReasonICMPRelated // an ICMP error quoting a tracked flow
	ReasonFragment    // a later fragment of a datagram that passed
	ReasonAllowAll    // a protocol the rules do not name, under AllowAll
	ReasonMonitor     // denied, but passed: the namespace is in monitor mode
	// Drops.
	ReasonMalformed       // truncated or inconsistent headers
	ReasonNotIPv4         // IPv6 or another version
	ReasonNoWorkload      // the local address is no workload of the view
	ReasonPolicy          // the rules do not allow the flow
	ReasonNotSYN          // TCP without SYN (or with ACK) for an unknown flow
	ReasonICMP            // ICMP that is neither allowed echo nor related
	ReasonFragmentUnknown // a later fragment whose first one did not pass
	ReasonProtocol        // a protocol the rules cannot name
	numReasons
)

var reasonNames = [numReasons]string{
	reasonNone:            "none",
	ReasonNewFlow:         "new-flow",
	ReasonTracked:         "tracked",
	ReasonICMPEcho:        "icmp-echo",
	ReasonICMPRelated:     "icmp-related",
	ReasonFragment:        "fragment",
	ReasonAllowAll:        "allow-all",
	ReasonMonitor:         "monitor",
	ReasonMalformed:       "malformed",
	ReasonNotIPv4:         "not-ipv4",
	ReasonNoWorkload:      "no-local-workload",
	ReasonPolicy:          "policy",
	ReasonNotSYN:          "tcp-not-syn",
	ReasonICMP:            "icmp",
	ReasonFragmentUnknown: "fragment-unknown",
	ReasonProtocol:        "protocol",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict is the verdict a packet with reason r gets.
func (r Reason) Verdict() Verdict {
	if r >= ReasonNewFlow && r <= ReasonMonitor {
		return Pass
	}
	return Drop
}

// Event reports a new allowed flow or a dropped packet. Addresses and
// ports are those of the packet (Src sent it); for a packet that could not
// be parsed they may be zero.
type Event struct {
	Time      time.Time
	Direction Direction
	Verdict   Verdict
	Reason    Reason
	Protocol  uint8 // IP protocol number: 6 TCP, 17 UDP, 132 SCTP, 1 ICMP
	Src, Dst  view.Addr
	SrcPort   uint16
	DstPort   uint16
	// Workload is the local workload (namespace/name), "" if none.
	Workload string
	// RemoteIdentity is the remote address's identity in the view.
	RemoteIdentity view.Identity
	// Bytes is the packet's IPv4 total length (0 if it could not be read).
	Bytes uint32
}

// Options tune a Filter. The zero value is usable.
type Options struct {
	// MaxFlows bounds the connection-tracking table; DefaultMaxFlows if 0.
	MaxFlows int
	// EventBuffer is the capacity of the Events channel;
	// DefaultEventBuffer if 0, no events at all if negative.
	EventBuffer int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// MaxEntries bounds the rule entries of a view (its identities, plus
	// one per identity and CIDR rule and one per port range of every
	// local workload); DefaultMaxEntries if 0.
	MaxEntries int
}

// ErrTooLarge is wrapped by Apply when a view has more rule entries than
// Options.MaxEntries.
var ErrTooLarge = errors.New("view does not fit the userspace filter")

// Filter enforces a node's view on packets. Its methods are safe for
// concurrent use: Outbound and Inbound never block on Apply.
type Filter struct {
	rs     atomic.Pointer[ruleset]
	flows  *table
	frags  *table
	now    func() time.Time
	max    int // Options.MaxEntries
	events chan Event

	counts     [numReasons]atomic.Uint64
	eventsLost atomic.Uint64

	mu  sync.Mutex // serialises Apply
	gen uint64     // the last generation given out; must hold mu
}

// New returns a Filter with no view: it drops every packet until Apply.
func New(opts Options) *Filter {
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = DefaultMaxFlows
	}
	if opts.EventBuffer == 0 {
		opts.EventBuffer = DefaultEventBuffer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	f := &Filter{
		flows: newTable(opts.MaxFlows),
		frags: newTable(maxFragments),
		now:   opts.Now,
		max:   opts.MaxEntries,
	}
	if opts.EventBuffer > 0 {
		f.events = make(chan Event, opts.EventBuffer)
	}
	f.rs.Store(compile(nil, 0))
	return f
}

// Apply makes v the rule set, atomically: every packet is judged either
// entirely by the previous view or entirely by v. The filter keeps no
// reference to v. A nil v drops everything again. A view with more rule
// entries than Options.MaxEntries is refused (ErrTooLarge) and the
// previous rule set stays in force.
func (f *Filter) Apply(v *view.View) error {
	if n := entries(v); n > f.max {
		return fmt.Errorf("applying view %d: %w: %d rule entries, at most %d", v.Version, ErrTooLarge, n, f.max)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	f.rs.Store(compile(v, f.gen))
	return nil
}

// entries counts what a view puts in the rule tables: its identities and
// the port ranges of its local workloads' rules.
func entries(v *view.View) int {
	if v == nil {
		return 0
	}
	n := len(v.Identities)
	for i := range v.Workloads {
		for _, r := range []*view.Rules{&v.Workloads[i].Ingress, &v.Workloads[i].Egress} {
			n += len(r.Any)
			for _, ir := range r.Identities {
				n += 1 + len(ir.Ports)
			}
			for _, cr := range r.CIDRs {
				n += 1 + len(cr.Ports)
			}
		}
	}
	return n
}

// Version is the version of the view applied last; 0 before Apply.
func (f *Filter) Version() uint64 { return f.rs.Load().version }

// Events delivers flow events; nil if Options.EventBuffer was negative.
func (f *Filter) Events() <-chan Event { return f.events }

// Stats is a snapshot of the filter's counters.
type Stats struct {
	// ViewVersion is the version of the view enforced.
	ViewVersion uint64 `json:"viewVersion"`
	// Flows is the number of tracked flows (expired ones not yet reused
	// included).
	Flows int `json:"flows"`
	// FlowCapacity is the size of the flow table (Options.MaxFlows);
	// FlowsEvicted counts flows forgotten to make room for new ones (the
	// least recently used, expired ones not yet reused included). An
	// evicted flow's next packet is judged as new: a TCP packet without
	// SYN is dropped, a UDP or SCTP packet passes iff the rules allow it
	// as a new flow in its own direction.
	FlowCapacity int    `json:"flowCapacity"`
	FlowsEvicted uint64 `json:"flowsEvicted"`
	// FlowsCreated counts the flows tracked since the filter was made.
	FlowsCreated uint64 `json:"flowsCreated"`
	// Packets counts packets by reason name; reasons never seen are left
	// out.
	Packets map[string]uint64 `json:"packets"`
	// Passed and Dropped are the totals of Packets.
	Passed  uint64 `json:"passed"`
	Dropped uint64 `json:"dropped"`
	// EventsLost counts events dropped because the channel was full.
	EventsLost uint64 `json:"eventsLost"`
}

// PassReason reports whether the reason named name (a key of
// Stats.Packets) lets packets through.
func (Stats) PassReason(name string) bool {
	for r := ReasonNewFlow; r < numReasons; r++ {
		if r.String() == name {
			return r.Verdict() == Pass
		}
	}
	return false
}

// Stats returns the counters.
func (f *Filter) Stats() Stats {
	st := Stats{ViewVersion: f.Version(), Flows: f.flows.len(), Packets: map[string]uint64{}, EventsLost: f.eventsLost.Load(),
		FlowCapacity: f.flows.capacity(), FlowsEvicted: f.flows.evicted.Load(), FlowsCreated: f.flows.created.Load()}
	for r := ReasonNewFlow; r < numReasons; r++ {
		n := f.counts[r].Load()
		if n == 0 {
			continue
		}
		st.Packets[r.String()] = n
		if r.Verdict() == Pass {
			st.Passed += n
		} else {
			st.Dropped += n
		}
	}
	return st
}

// Outbound judges a packet the kernel sends into the tunnel. pkt starts
// with the IPv4 header; it is only read.
func (f *Filter) Outbound(pkt []byte) Verdict { return f.decide(DirOutbound, pkt) }

// Inbound judges a packet that came out of the tunnel. pkt starts with the
// IPv4 header; it is only read.
func (f *Filter) Inbound(pkt []byte) Verdict { return f.decide(DirInbound, pkt) }

// decide judges one packet and counts the reason.
func (f *Filter) decide(dir Direction, b []byte) Verdict {
	p, r := parse(b)
	if r != reasonNone {
		return f.finish(dir, &p, nil, view.IdentityUnknown, r)
	}
	rs := f.rs.Load()
	loc, rem := p.src, p.dst
	if dir == DirInbound {
		loc, rem = p.dst, p.src
	}
	l := rs.locals[loc]
	if l == nil {
		return f.finish(dir, &p, nil, view.IdentityUnknown, ReasonNoWorkload)
	}
	now := f.now().UnixNano()
	if p.later {
		k := flowKey{local: loc, remote: rem, lport: p.id, rport: uint16(dir), proto: p.proto}
		if f.frags.touchLive(k, now) {
			return f.finish(dir, &p, l, view.IdentityUnknown, ReasonFragment)
		}
		if l.monitor {
			return f.monitored(dir, &p, l, rs.view.IdentityOf(rem), ReasonFragmentUnknown)
		}
		return f.finish(dir, &p, l, rs.view.IdentityOf(rem), ReasonFragmentUnknown)
	}
	rules := &l.egress
	if dir == DirInbound {
		rules = &l.ingress
	}
	var id view.Identity
	switch p.proto {
	case protoTCP, protoUDP, protoSCTP:
		r, id = f.transport(dir, rs, l, &p, loc, rem, now)
	case protoICMP:
		r, id = f.icmp(dir, rs, rules, &p, loc, rem, now)
	default:
		r = ReasonProtocol
		if rules.allowAll {
			r = ReasonAllowAll
		}
	}
	if l.monitor && r.Verdict() == Drop {
		if r == ReasonPolicy || r == ReasonNotSYN {
			k := flowKey{local: loc, remote: rem, lport: p.sport, rport: p.dport, proto: p.proto}
			if dir == DirInbound {
				k.lport, k.rport = p.dport, p.sport
			}
			f.flows.insert(k, flow{dir: dir, gen: rs.gen, expires: now + int64(TimeoutNew), identity: id, replied: r == ReasonNotSYN})
		}
		if p.moreFrags {
			f.frags.insert(flowKey{local: loc, remote: rem, lport: p.id, rport: uint16(dir), proto: p.proto},
				flow{dir: dir, expires: now + int64(TimeoutFragment)})
		}
		return f.monitored(dir, &p, l, id, r)
	}
	if p.moreFrags && r.Verdict() == Pass {
		f.frags.insert(flowKey{local: loc, remote: rem, lport: p.id, rport: uint16(dir), proto: p.proto},
			flow{dir: dir, expires: now + int64(TimeoutFragment)})
	}
	return f.finish(dir, &p, l, id, r)
}

// monitored lets through a packet of a monitor-mode workload that the
// rules deny for reason r: it counts ReasonMonitor and reports the packet
// with the verdict WouldDeny and the reason it would have been dropped for.
func (f *Filter) monitored(dir Direction, p *packet, l *local, id view.Identity, r Reason) Verdict {
	f.counts[ReasonMonitor].Add(1)
	f.report(Event{Time: f.now(), Direction: dir, Verdict: WouldDeny, Reason: r, Protocol: p.proto,
		Src: p.src, Dst: p.dst, SrcPort: p.sport, DstPort: p.dport, RemoteIdentity: id, Workload: l.name, Bytes: uint32(p.length)})
	return Pass
}

// transport decides a TCP, UDP or SCTP packet that is not a later
// fragment. It returns the reason and, when it looked it up, the remote
// identity.
func (f *Filter) transport(dir Direction, rs *ruleset, l *local, p *packet, loc, rem view.Addr, now int64) (Reason, view.Identity) {
	k := flowKey{local: loc, remote: rem, lport: p.sport, rport: p.dport, proto: p.proto}
	if dir == DirInbound {
		k.lport, k.rport = p.dport, p.sport
	}
	tcp := p.proto == protoTCP
	syn := tcp && p.tcpFlags&(tcpSYN|tcpACK) == tcpSYN

	s := f.flows.shard(&k)
	s.mu.Lock()
	if i, ok := s.find(k, now); ok {
		e := &s.slots[i].f
		valid := true
		if e.gen != rs.gen {
			// The view changed since the flow was allowed: check it again
			// in the direction it was opened.
			e.identity = rs.view.IdentityOf(rem)
			valid = l.monitor || rs.allowsFlow(e.dir, loc, rem, e.identity, k)
			e.gen = rs.gen
		}
		// A SYN the other way opens a new connection on the same ports:
		// judge it as new.
		if valid && !(syn && e.dir != dir) {
			if dir != e.dir {
				e.replied = true
			}
			if tcp && p.tcpFlags&(tcpFIN|tcpRST) != 0 {
				e.closing = true
			}
			e.expires = now + int64(e.timeout(tcp))
			id := e.identity
			s.touch(i)
			s.mu.Unlock()
			return ReasonTracked, id
		}
		s.remove(i)
	}
	s.mu.Unlock()

	if tcp && !syn {
		return ReasonNotSYN, view.IdentityUnknown
	}
	id := rs.view.IdentityOf(rem)
	if !rs.allowsFlow(dir, loc, rem, id, k) {
		return ReasonPolicy, id
	}
	f.flows.insert(k, flow{dir: dir, gen: rs.gen, expires: now + int64(TimeoutNew), identity: id})
	return ReasonNewFlow, id
}

// allowsFlow reports whether the rules allow the flow k opened in
// direction dir: by the local workload's egress rules to k's remote port,
// or by its ingress rules to k's local port.
func (rs *ruleset) allowsFlow(dir Direction, loc, rem view.Addr, id view.Identity, k flowKey) bool {
	l := rs.locals[loc]
	if l == nil {
		return false
	}
	if dir == DirOutbound {
		return l.egress.allows(id, rem, k.proto, k.rport)
	}
	return l.ingress.allows(id, rem, k.proto, k.lport)
}

// timeout is how long the flow lives after its last packet.
func (e *flow) timeout(tcp bool) time.Duration {
	switch {
	case !tcp:
		return TimeoutNew
	case e.closing:
		return TimeoutClosing
	case e.replied:
		return TimeoutEstablished
	}
	return TimeoutNew
}

// icmp decides an ICMP packet that is not a later fragment.
func (f *Filter) icmp(dir Direction, rs *ruleset, rules *rules, p *packet, loc, rem view.Addr, now int64) (Reason, view.Identity) {
	id := rs.view.IdentityOf(rem)
	if rules.allowAll {
		return ReasonAllowAll, id
	}
	switch p.icmpType {
	case icmpEchoRequest, icmpEchoReply:
		if id != view.IdentityUnknown {
			return ReasonICMPEcho, id
		}
		return ReasonICMP, id
	}
	if p.inner == nil {
		return ReasonICMP, id
	}
	q, ok := parseInner(p.inner)
	if !ok {
		return ReasonICMP, id
	}
	// The quoted packet went the other way: an error the node sends quotes
	// a packet it received, an error it receives quotes one it sent.
	var k flowKey
	if dir == DirOutbound {
		if q.dst != loc {
			return ReasonICMP, id
		}
		k = flowKey{local: q.dst, remote: q.src, lport: q.dport, rport: q.sport, proto: q.proto}
	} else {
		if q.src != loc {
			return ReasonICMP, id
		}
		k = flowKey{local: q.src, remote: q.dst, lport: q.sport, rport: q.dport, proto: q.proto}
	}
	s := f.flows.shard(&k)
	s.mu.Lock()
	_, ok = s.find(k, now)
	s.mu.Unlock()
	if ok {
		return ReasonICMPRelated, id
	}
	return ReasonICMP, id
}

// finish counts r and reports new flows and drops as events.
func (f *Filter) finish(dir Direction, p *packet, l *local, id view.Identity, r Reason) Verdict {
	f.counts[r].Add(1)
	v := r.Verdict()
	if (v == Drop || r == ReasonNewFlow) && f.events != nil {
		ev := Event{
			Time: f.now(), Direction: dir, Verdict: v, Reason: r, Protocol: p.proto,
			Src: p.src, Dst: p.dst, SrcPort: p.sport, DstPort: p.dport, RemoteIdentity: id, Bytes: uint32(p.length),
		}
		if l != nil {
			ev.Workload = l.name
		}
		f.report(ev)
	}
	return v
}

// report queues ev without waiting: when the channel is full it is
// counted as lost.
func (f *Filter) report(ev Event) {
	if f.events == nil {
		return
	}
	select {
	case f.events <- ev:
	default:
		f.eventsLost.Add(1)
	}
}
