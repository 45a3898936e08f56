// Package userspace is the userspace enforcer: a packet filter that sits
// between the node's TUN device and wireguard-go and lets through only the
// flows the node's view allows. It is the fallback for hosts where the eBPF
// enforcer cannot run (no BPF, non-Linux, tests without root), and it needs
// wireguard-go: with kernel WireGuard it would see no packet. It decides by
// overlay address (the node's and each workload's), and knows no cgroups:
// unlike the eBPF enforcer it does not bind a workload's sockets to its
// address, refuse a denied connect at once, or keep other processes off a
// workload's address. Filter implements enforce.Enforcer and reports in
// its vocabulary.
//
// A Filter judges every IPv4 packet twice at most, once per node: Outbound
// for packets the kernel sends into the tunnel (a local workload is the
// source, the packet is judged by its egress rules) and Inbound for packets
// out of the tunnel (a local workload is the destination, judged by its
// ingress rules). On a gateway the local side may instead be a host of a
// site the view carries (view.View.Sites): a local address that is no
// workload's but lies in a site's prefix (the longest, if several) is
// judged by that site's rules, monitor flag included, and its events name
// the site ("namespace/name") as their workload. A workload's address
// wins over a site prefix that holds it. The first packet of a flow is
// decided exactly as view.Rules.Allows decides, with the remote address's
// identity from the view (a site host has none); the flow is then tracked,
// and its later packets and its replies pass without a rule lookup.
//
// What it does with the packets rules do not name:
//   - A packet whose local address is neither one of the view's workloads
//     nor in one of its sites' prefixes is dropped, as is every packet
//     before the first Apply, IPv6, and anything malformed or truncated.
//   - TCP: a new flow starts with a SYN without ACK; any other TCP packet of
//     an unknown flow is dropped. Tracked flows expire after 60 s until a
//     reply is seen, 5 min once established, 10 s after a FIN or RST.
//     UDP and SCTP flows expire 60 s after their last packet.
//   - ICMP: echo request and reply pass iff the remote address has an
//     identity in the view (it is a workload the node may talk to; a site
//     host never is, so echo between site hosts is dropped). ICMP
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
//   - Monitor mode (view.WorkloadRules.Monitor, view.SiteRules.Monitor): a
//     packet of such a local workload or site host that would be dropped
//     for any reason passes instead and is counted as "monitor"; its event
//     carries the drop reason and the
//     verdict WouldDeny. A TCP, UDP or SCTP flow let through this way is
//     tracked like an allowed one, so its later packets and its replies
//     pass without further events.
//   - A new view (Apply) replaces the rule set atomically. A tracked flow is
//     checked again against the new rules at its next packet, in the
//     direction it was opened. If they no longer allow it, the flow is
//     forgotten and that packet is decided as the first of a new flow: a
//     TCP packet without SYN is dropped (tcp-not-syn), a UDP or SCTP packet
//     passes only if the rules allow it as a new flow in its own direction
//     (the eBPF enforcer instead drops that packet as "revoked"). A flow of
//     a monitor-mode workload keeps passing as tracked, without an event.
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

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

var _ enforce.Enforcer = (*Filter)(nil)

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
	ReasonNoWorkload      // the local address is no workload or site host of the view
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
func (r Reason) Verdict() enforce.Verdict {
	if r >= ReasonNewFlow && r <= ReasonMonitor {
		return enforce.Allowed
	}
	return enforce.Dropped
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
	events chan enforce.Event

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
		f.events = make(chan enforce.Event, opts.EventBuffer)
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

// entries counts what a view puts in the rule tables: its identities, the
// port ranges of its local workloads' and sites' rules, and the sites'
// prefixes.
func entries(v *view.View) int {
	if v == nil {
		return 0
	}
	n := len(v.Identities)
	var all []*view.Rules
	for i := range v.Workloads {
		all = append(all, &v.Workloads[i].Ingress, &v.Workloads[i].Egress)
	}
	for i := range v.Sites {
		n += len(v.Sites[i].CIDRs)
		all = append(all, &v.Sites[i].Ingress, &v.Sites[i].Egress)
	}
	for _, r := range all {
		n += len(r.Any)
		for _, ir := range r.Identities {
			n += 1 + len(ir.Ports)
		}
		for _, cr := range r.CIDRs {
			n += 1 + len(cr.Ports)
		}
	}
	return n
}

// Version is the version of the view applied last; 0 before Apply.
func (f *Filter) Version() uint64 { return f.rs.Load().version }

// Events delivers flow events; nil if Options.EventBuffer was negative.
func (f *Filter) Events() <-chan enforce.Event { return f.events }

// Stats returns the counters; the error is always nil.
func (f *Filter) Stats() (enforce.Stats, error) {
	st := enforce.Stats{ViewVersion: f.Version(), Packets: map[string]uint64{}, EventsLost: f.eventsLost.Load(),
		FlowCapacity: f.flows.capacity(), FlowsCreated: f.flows.created.Load(),
		Flows: new(f.flows.len()), FlowsEvicted: new(f.flows.evicted.Load())}
	for r := ReasonNewFlow; r < numReasons; r++ {
		st.Add(r.String(), r.Verdict(), f.counts[r].Load())
	}
	return st, nil
}

// Close does nothing: the filter holds nothing outside the process. It
// keeps deciding packets by the rules in force.
func (f *Filter) Close() error { return nil }

// Outbound judges a packet the kernel sends into the tunnel. pkt starts
// with the IPv4 header; it is only read.
func (f *Filter) Outbound(pkt []byte) enforce.Verdict { return f.decide(enforce.Egress, pkt) }

// Inbound judges a packet that came out of the tunnel. pkt starts with the
// IPv4 header; it is only read.
func (f *Filter) Inbound(pkt []byte) enforce.Verdict { return f.decide(enforce.Ingress, pkt) }

// decide judges one packet and counts the reason.
func (f *Filter) decide(dir enforce.Direction, b []byte) enforce.Verdict {
	p, r := parse(b)
	if r != reasonNone {
		return f.finish(dir, &p, nil, view.IdentityUnknown, r)
	}
	rs := f.rs.Load()
	loc, rem := p.src, p.dst
	if dir == enforce.Ingress {
		loc, rem = p.dst, p.src
	}
	l := rs.lookup(loc)
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
	if dir == enforce.Ingress {
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
	if l.monitor && r.Verdict() == enforce.Dropped {
		if r == ReasonPolicy || r == ReasonNotSYN {
			k := flowKey{local: loc, remote: rem, lport: p.sport, rport: p.dport, proto: p.proto}
			if dir == enforce.Ingress {
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
	if p.moreFrags && r.Verdict() == enforce.Allowed {
		f.frags.insert(flowKey{local: loc, remote: rem, lport: p.id, rport: uint16(dir), proto: p.proto},
			flow{dir: dir, expires: now + int64(TimeoutFragment)})
	}
	return f.finish(dir, &p, l, id, r)
}

// monitored lets through a packet of a monitor-mode workload that the
// rules deny for reason r: it counts ReasonMonitor and reports the packet
// with the verdict WouldDeny and the reason it would have been dropped for.
func (f *Filter) monitored(dir enforce.Direction, p *packet, l *local, id view.Identity, r Reason) enforce.Verdict {
	f.counts[ReasonMonitor].Add(1)
	f.report(enforce.Event{Time: f.now(), Direction: dir, Verdict: enforce.WouldDeny, Reason: r.String(), Protocol: p.proto,
		Src: p.src, Dst: p.dst, SrcPort: p.sport, DstPort: p.dport, RemoteIdentity: id, Workload: l.name, Bytes: uint32(p.length)})
	return enforce.Allowed
}

// transport decides a TCP, UDP or SCTP packet that is not a later
// fragment. It returns the reason and, when it looked it up, the remote
// identity.
func (f *Filter) transport(dir enforce.Direction, rs *ruleset, l *local, p *packet, loc, rem view.Addr, now int64) (Reason, view.Identity) {
	k := flowKey{local: loc, remote: rem, lport: p.sport, rport: p.dport, proto: p.proto}
	if dir == enforce.Ingress {
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
func (rs *ruleset) allowsFlow(dir enforce.Direction, loc, rem view.Addr, id view.Identity, k flowKey) bool {
	l := rs.lookup(loc)
	if l == nil {
		return false
	}
	if dir == enforce.Egress {
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
func (f *Filter) icmp(dir enforce.Direction, rs *ruleset, rules *rules, p *packet, loc, rem view.Addr, now int64) (Reason, view.Identity) {
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
	if dir == enforce.Egress {
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
func (f *Filter) finish(dir enforce.Direction, p *packet, l *local, id view.Identity, r Reason) enforce.Verdict {
	f.counts[r].Add(1)
	v := r.Verdict()
	if (v == enforce.Dropped || r == ReasonNewFlow) && f.events != nil {
		ev := enforce.Event{
			Time: f.now(), Direction: dir, Verdict: v, Reason: r.String(), Protocol: p.proto,
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
func (f *Filter) report(ev enforce.Event) {
	if f.events == nil {
		return
	}
	select {
	case f.events <- ev:
	default:
		f.eventsLost.Add(1)
	}
}
