// Package flowlog turns a node's enforcer events (enforce.Event, the same
// from either enforcer) into flow records: it aggregates events per flow
// (direction, local workload, source and destination address, protocol,
// destination port, verdict, reason) per interval, and keeps the finished
// records in a bounded queue for upload.
// When the queue is full the oldest records are dropped and counted; Add
// never waits on the upload, so the enforcer's event readers (and behind
// them the data path, which never waits on them either) are not held up
// by a coordinator that is away.
//
// The local side of a flow is the workload whose rules decided it, or, on
// a gateway, the site whose rules decided it for one of its hosts: the
// enforcers then name the site ("namespace/name", view.SiteRules.Site) as
// the event's workload, and the record carries it in Workload with the
// site host's address as the local end (Dst on ingress, Src on egress).
//
// It is pure: the agent feeds events, calls Flush on a ticker and uploads
// what Take returns. Only package node/agent imports it.
package flowlog

import (
	"net/netip"
	"strconv"
	"sync"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/wire"
)

// Defaults of Options fields left zero.
const (
	DefaultMaxRecords = 20000 // queued records awaiting upload
	DefaultMaxFlows   = 10000 // distinct flows in one interval
)

// Options bound a Log.
type Options struct {
	// MaxRecords bounds the queue of finished records; DefaultMaxRecords
	// if 0.
	MaxRecords int
	// MaxFlows bounds the distinct flows of one interval; events of
	// further flows are dropped and counted. DefaultMaxFlows if 0.
	MaxFlows int
}

type key struct {
	dir, workload string
	src, dst      netip.Addr
	proto         uint8
	port          uint16
	verdict       string
	reason        string
}

// Log aggregates events and queues records. Its methods are safe for
// concurrent use.
type Log struct {
	opts Options

	mu    sync.Mutex
	cur   map[key]*wire.FlowRecord // the open interval; guarded by mu
	order []key                    // cur's keys in arrival order; guarded by mu
	queue []wire.FlowRecord        // finished, oldest first; guarded by mu
	// unreported counts records dropped since the last Take; dropped
	// counts all. Guarded by mu.
	unreported, dropped uint64
}

// New returns an empty Log.
func New(opts Options) *Log {
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = DefaultMaxFlows
	}
	return &Log{opts: opts, cur: map[key]*wire.FlowRecord{}}
}

// Add counts one event in the open interval. Events of no local workload
// or site (Workload "") are left out: the coordinator could not place
// them.
func (l *Log) Add(ev enforce.Event) {
	if ev.Workload == "" {
		return
	}
	k := key{dir: direction(ev.Direction), workload: ev.Workload, src: ev.Src.Netip(), dst: ev.Dst.Netip(), proto: ev.Protocol,
		port: ev.DstPort, verdict: verdict(ev.Verdict), reason: ev.Reason}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.cur[k]
	if r == nil {
		if len(l.cur) >= l.opts.MaxFlows {
			l.unreported++
			l.dropped++
			return
		}
		r = &wire.FlowRecord{Start: ev.Time, End: ev.Time, Direction: k.dir, Workload: k.workload,
			Src: k.src, Dst: k.dst, Protocol: ProtocolName(k.proto), Port: k.port,
			Verdict: k.verdict, Reason: k.reason}
		l.cur[k] = r
		l.order = append(l.order, k)
	}
	if ev.Time.Before(r.Start) {
		r.Start = ev.Time
	}
	if ev.Time.After(r.End) {
		r.End = ev.Time
	}
	r.Packets++
	r.Bytes += uint64(ev.Bytes)
}

// direction is d as flow records name it.
func direction(d enforce.Direction) string {
	if d == enforce.Egress {
		return wire.DirEgress
	}
	return wire.DirIngress
}

// verdict is v as flow records name it.
func verdict(v enforce.Verdict) string {
	switch v {
	case enforce.Allowed:
		return wire.VerdictAllowed
	case enforce.WouldDeny:
		return wire.VerdictWouldDeny
	}
	return wire.VerdictDenied
}

// Flush ends the open interval: its records join the queue, and the
// oldest queued records are dropped beyond MaxRecords.
func (l *Log) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range l.order {
		l.queue = append(l.queue, *l.cur[k])
	}
	clear(l.cur)
	l.order = l.order[:0]
	l.trimLocked()
}

func (l *Log) trimLocked() {
	if over := len(l.queue) - l.opts.MaxRecords; over > 0 {
		l.queue = append(l.queue[:0], l.queue[over:]...)
		l.unreported += uint64(over)
		l.dropped += uint64(over)
	}
}

// Take removes up to max queued records, oldest first, and returns them
// with the number of records dropped since the last Take.
func (l *Log) Take(max int) ([]wire.FlowRecord, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(max, len(l.queue))
	out := make([]wire.FlowRecord, n)
	copy(out, l.queue[:n])
	l.queue = append(l.queue[:0], l.queue[n:]...)
	d := l.unreported
	l.unreported = 0
	return out, d
}

// Return puts back records (and their drop count) that could not be
// uploaded, ahead of those queued since; the oldest go beyond MaxRecords.
func (l *Log) Return(recs []wire.FlowRecord, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(append(make([]wire.FlowRecord, 0, len(recs)+len(l.queue)), recs...), l.queue...)
	l.unreported += dropped
	l.trimLocked()
}

// Stats are the Log's counters.
type Stats struct {
	Queued  int    `json:"queued"`  // finished records awaiting upload
	Open    int    `json:"open"`    // flows of the open interval
	Dropped uint64 `json:"dropped"` // records dropped since New
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Queued: len(l.queue), Open: len(l.cur), Dropped: l.dropped}
}

// ProtocolName names IP protocol numbers as policy does (TCP, UDP,
// SCTP), ICMP, or gives the number.
func ProtocolName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}
