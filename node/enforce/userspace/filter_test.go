package userspace

import (
	"errors"
	"github.com/latchnet/latch/node/enforce"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
)

// Addresses of the test view. web and open are this node's workloads.
const (
	web     = "100.64.0.10"
	open    = "100.64.0.11"
	laptop  = "100.64.1.1"  // identity 400
	api     = "100.64.2.1"  // identity 500
	db      = "100.64.3.1"  // identity 600
	site    = "100.64.5.10" // no identity: in 100.64.5.0/24
	siteHi  = "100.64.5.200"
	nowhere = "100.64.9.9" // no identity, no CIDR
)

func ports(p inventory.Protocol, first, last uint16) view.PortRange {
	return view.PortRange{Protocol: p, First: first, Last: last}
}

// testView is one node with two workloads:
//   - web: ingress from laptop TCP 443, from anyone UDP 53, from
//     100.64.5.0/24 TCP 1000-2000 and from 100.64.5.128/25 TCP 3000 only
//     (deliberately not flattened, to show the longest prefix decides);
//     egress to api TCP 8080-8081 and SCTP 9000.
//   - open: AllowAll both ways.
func testView(version uint64) *view.View {
	return &view.View{
		Node:    "n1",
		Version: version,
		Identities: []view.IdentityEntry{
			{IP: view.MustAddr(web), Identity: 300},
			{IP: view.MustAddr(open), Identity: 301},
			{IP: view.MustAddr(laptop), Identity: 400},
			{IP: view.MustAddr(api), Identity: 500},
			{IP: view.MustAddr(db), Identity: 600},
		},
		Workloads: []view.WorkloadRules{
			{
				Workload: "prod/web", IP: view.MustAddr(web), Identity: 300,
				Ingress: view.Rules{
					Isolated:   true,
					Any:        []view.PortRange{ports(inventory.UDP, 53, 53)},
					Identities: []view.IdentityRule{{Identity: 400, Ports: []view.PortRange{ports(inventory.TCP, 443, 443)}}},
					CIDRs: []view.CIDRRule{
						{Prefix: view.MustPrefix("100.64.5.0/24"), Ports: []view.PortRange{ports(inventory.TCP, 1000, 2000)}},
						{Prefix: view.MustPrefix("100.64.5.128/25"), Ports: []view.PortRange{ports(inventory.TCP, 3000, 3000)}},
					},
				},
				Egress: view.Rules{
					Isolated: true,
					Identities: []view.IdentityRule{{Identity: 500, Ports: []view.PortRange{
						ports(inventory.TCP, 8080, 8081), ports(inventory.SCTP, 9000, 9000)}}},
				},
			},
			{
				Workload: "prod/open", IP: view.MustAddr(open), Identity: 301,
				Ingress: view.Rules{AllowAll: true},
				Egress:  view.Rules{AllowAll: true},
			},
		},
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestFilter(t *testing.T) (*Filter, *fakeClock) {
	t.Helper()
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	f := New(Options{Now: c.now, EventBuffer: 64})
	f.Apply(testView(1))
	return f, c
}

type step struct {
	dir    enforce.Direction
	pkt    []byte
	want   enforce.Verdict
	reason Reason
}

func out(pkt []byte, want enforce.Verdict, r Reason) step { return step{enforce.Egress, pkt, want, r} }
func in(pkt []byte, want enforce.Verdict, r Reason) step  { return step{enforce.Ingress, pkt, want, r} }

// run feeds steps to f in order, checking each verdict and reason.
func run(t *testing.T, f *Filter, steps []step) {
	t.Helper()
	for i, s := range steps {
		before := stats(f).Packets[s.reason.String()]
		var got enforce.Verdict
		if s.dir == enforce.Egress {
			got = f.Outbound(s.pkt)
		} else {
			got = f.Inbound(s.pkt)
		}
		after := stats(f).Packets[s.reason.String()]
		if got != s.want || after != before+1 {
			t.Errorf("step %d (%s): verdict %s, want %s; counter %s %d -> %d, want +1 (stats %v)",
				i, s.dir, got, s.want, s.reason, before, after, stats(f).Packets)
		}
	}
}

func TestFirstPacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		step step
	}{
		{"identity allows ingress", in(syn(laptop, web, 40000, 443), enforce.Allowed, ReasonNewFlow)},
		{"identity, other port", in(syn(laptop, web, 40000, 444), enforce.Dropped, ReasonPolicy)},
		{"identity, wrong protocol", in(udp(laptop, web, 40000, 443), enforce.Dropped, ReasonPolicy)},
		{"other identity", in(syn(api, web, 40000, 443), enforce.Dropped, ReasonPolicy)},
		{"Any allows anyone", in(udp(db, web, 40000, 53), enforce.Allowed, ReasonNewFlow)},
		{"Any allows unknown address", in(udp(nowhere, web, 40000, 53), enforce.Allowed, ReasonNewFlow)},
		{"Any, protocol mismatch", in(syn(db, web, 40000, 53), enforce.Dropped, ReasonPolicy)},
		{"CIDR /24", in(syn(site, web, 40000, 1500), enforce.Allowed, ReasonNewFlow)},
		{"CIDR /24 range start", in(syn(site, web, 40000, 1000), enforce.Allowed, ReasonNewFlow)},
		{"CIDR /24 range end", in(syn(site, web, 40000, 2000), enforce.Allowed, ReasonNewFlow)},
		{"CIDR /24 below range", in(syn(site, web, 40000, 999), enforce.Dropped, ReasonPolicy)},
		{"CIDR /24 above range", in(syn(site, web, 40000, 2001), enforce.Dropped, ReasonPolicy)},
		{"CIDR longest prefix wins", in(syn(siteHi, web, 40000, 1500), enforce.Dropped, ReasonPolicy)},
		{"CIDR longest prefix port", in(syn(siteHi, web, 40000, 3000), enforce.Allowed, ReasonNewFlow)},
		{"CIDR outside", in(syn(nowhere, web, 40000, 1500), enforce.Dropped, ReasonPolicy)},
		{"egress identity range start", out(syn(web, api, 40000, 8080), enforce.Allowed, ReasonNewFlow)},
		{"egress identity range end", out(syn(web, api, 40000, 8081), enforce.Allowed, ReasonNewFlow)},
		{"egress identity past end", out(syn(web, api, 40000, 8082), enforce.Dropped, ReasonPolicy)},
		{"egress SCTP", out(sctp(web, api, 40000, 9000), enforce.Allowed, ReasonNewFlow)},
		{"egress UDP to a TCP port", out(udp(web, api, 40000, 8080), enforce.Dropped, ReasonPolicy)},
		{"egress, reverse of an ingress rule", out(syn(web, laptop, 40000, 22), enforce.Dropped, ReasonPolicy)},
		{"AllowAll ingress", in(syn(nowhere, open, 1, 2), enforce.Allowed, ReasonNewFlow)},
		{"AllowAll egress", out(udp(open, db, 1, 2), enforce.Allowed, ReasonNewFlow)},
		{"AllowAll other protocol", out(ipv4(47, open, db, make([]byte, 8)), enforce.Allowed, ReasonAllowAll)},
		{"other protocol", out(ipv4(47, web, api, make([]byte, 8)), enforce.Dropped, ReasonProtocol)},
		{"unknown local source", out(syn(laptop, api, 40000, 8080), enforce.Dropped, ReasonNoWorkload)},
		{"unknown local destination", in(syn(laptop, api, 40000, 443), enforce.Dropped, ReasonNoWorkload)},
		{"unsolicited ACK", in(tcp(laptop, web, 40000, 443, tcpACK), enforce.Dropped, ReasonNotSYN)},
		{"unsolicited SYN-ACK", in(tcp(laptop, web, 40000, 443, tcpSYN|tcpACK), enforce.Dropped, ReasonNotSYN)},
		{"unsolicited RST", in(tcp(laptop, web, 40000, 443, tcpRST), enforce.Dropped, ReasonNotSYN)},
		{"echo from a known remote", in(icmpEcho(laptop, web, icmpEchoRequest, 7), enforce.Allowed, ReasonICMPEcho)},
		{"echo to a known remote", out(icmpEcho(web, db, icmpEchoRequest, 7), enforce.Allowed, ReasonICMPEcho)},
		{"echo from an unknown remote", in(icmpEcho(nowhere, web, icmpEchoRequest, 7), enforce.Dropped, ReasonICMP)},
		{"unrelated ICMP error", in(icmpError(api, web, icmpDestUnreachable, syn(web, api, 1, 8080)), enforce.Dropped, ReasonICMP)},
		{"ICMP redirect", in(icmpError(api, web, 5, syn(web, api, 1, 8080)), enforce.Dropped, ReasonICMP)},
		{"IPv6", out(append([]byte{0x60}, make([]byte, 39)...), enforce.Dropped, ReasonNotIPv4)},
		{"empty", out(nil, enforce.Dropped, ReasonMalformed)},
		{"short IPv4 header", out(syn(web, api, 1, 8080)[:19], enforce.Dropped, ReasonMalformed)},
		{"truncated TCP header", out(truncate(syn(web, api, 1, 8080), 30), enforce.Dropped, ReasonMalformed)},
		{"total length past the end", out(syn(web, api, 1, 8080)[:39], enforce.Dropped, ReasonMalformed)},
		{"IHL too small", out(withByte(syn(web, api, 1, 8080), 0, 0x44), enforce.Dropped, ReasonMalformed)},
		{"IHL past the end", out(withByte(syn(web, api, 1, 8080), 0, 0x4f), enforce.Dropped, ReasonMalformed)},
		{"later fragment, first unseen", out(fragment(syn(web, api, 1, 8080), 9, 3, false), enforce.Dropped, ReasonFragmentUnknown)},
		{"tiny first fragment", out(fragment(truncate(syn(web, api, 1, 8080), 28), 9, 0, true), enforce.Dropped, ReasonMalformed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newTestFilter(t)
			run(t, f, []step{tc.step})
		})
	}
}

// truncate cuts b to n bytes and fixes the IPv4 total length.
func truncate(b []byte, n int) []byte {
	b = append([]byte(nil), b[:n]...)
	b[2], b[3] = byte(n>>8), byte(n)
	return b
}

func withByte(b []byte, i int, v byte) []byte {
	b = append([]byte(nil), b...)
	b[i] = v
	return b
}

func TestTracking(t *testing.T) {
	t.Run("replies and later packets pass", func(t *testing.T) {
		f, _ := newTestFilter(t)
		run(t, f, []step{
			in(syn(laptop, web, 40000, 443), enforce.Allowed, ReasonNewFlow),
			out(tcp(web, laptop, 443, 40000, tcpSYN|tcpACK), enforce.Allowed, ReasonTracked),
			in(tcp(laptop, web, 40000, 443, tcpACK), enforce.Allowed, ReasonTracked),
			out(tcp(web, laptop, 443, 40000, tcpACK), enforce.Allowed, ReasonTracked),
			// Another source port is another flow.
			in(tcp(laptop, web, 40001, 443, tcpACK), enforce.Dropped, ReasonNotSYN),
			// The reply direction may not open its own flows.
			out(syn(web, laptop, 443, 40001), enforce.Dropped, ReasonPolicy),
		})
	})
	t.Run("UDP replies", func(t *testing.T) {
		f, _ := newTestFilter(t)
		run(t, f, []step{
			in(udp(db, web, 5000, 53), enforce.Allowed, ReasonNewFlow),
			out(udp(web, db, 53, 5000), enforce.Allowed, ReasonTracked),
			out(udp(web, db, 53, 5001), enforce.Dropped, ReasonPolicy),
		})
	})
	t.Run("SYN the other way on a tracked flow is judged anew", func(t *testing.T) {
		f, _ := newTestFilter(t)
		run(t, f, []step{
			in(syn(laptop, web, 40000, 443), enforce.Allowed, ReasonNewFlow),
			out(syn(web, laptop, 443, 40000), enforce.Dropped, ReasonPolicy),
			// The drop ended the tracked flow.
			in(tcp(laptop, web, 40000, 443, tcpACK), enforce.Dropped, ReasonNotSYN),
		})
	})
	t.Run("ICMP errors of tracked flows pass", func(t *testing.T) {
		f, _ := newTestFilter(t)
		q := udp(db, web, 5000, 53)
		run(t, f, []step{
			in(q, enforce.Allowed, ReasonNewFlow),
			out(icmpError(web, db, icmpDestUnreachable, q), enforce.Allowed, ReasonICMPRelated),
			out(icmpError(web, db, icmpDestUnreachable, udp(db, web, 5001, 53)), enforce.Dropped, ReasonICMP),
			out(syn(web, api, 40000, 8080), enforce.Allowed, ReasonNewFlow),
			in(icmpError(api, web, icmpDestUnreachable, syn(web, api, 40000, 8080)), enforce.Allowed, ReasonICMPRelated),
			in(icmpError(api, web, icmpTimeExceeded, syn(web, api, 40000, 8080)), enforce.Allowed, ReasonICMPRelated),
			// The quoted packet must be the local workload's.
			in(icmpError(api, web, icmpDestUnreachable, syn(open, api, 40000, 8080)), enforce.Dropped, ReasonICMP),
			// A quote too short to hold ports.
			in(icmpError(api, web, icmpDestUnreachable, syn(web, api, 40000, 8080)[:24]), enforce.Dropped, ReasonICMP),
		})
	})
	t.Run("fragments follow their first fragment", func(t *testing.T) {
		f, _ := newTestFilter(t)
		big := udp(db, web, 5000, 53)
		run(t, f, []step{
			in(fragment(big, 77, 0, true), enforce.Allowed, ReasonNewFlow),
			in(fragment(big, 77, 2, true), enforce.Allowed, ReasonFragment),
			in(fragment(big, 77, 4, false), enforce.Allowed, ReasonFragment),
			in(fragment(big, 78, 2, false), enforce.Dropped, ReasonFragmentUnknown),
			in(fragment(udp(db, web, 5000, 54), 79, 0, true), enforce.Dropped, ReasonPolicy),
			in(fragment(big, 79, 2, false), enforce.Dropped, ReasonFragmentUnknown),
		})
	})
}

func TestExpiry(t *testing.T) {
	f, clock := newTestFilter(t)
	run(t, f, []step{
		in(syn(laptop, web, 40000, 443), enforce.Allowed, ReasonNewFlow),
		out(tcp(web, laptop, 443, 40000, tcpSYN|tcpACK), enforce.Allowed, ReasonTracked),
	})
	clock.advance(TimeoutEstablished - time.Second)
	run(t, f, []step{in(tcp(laptop, web, 40000, 443, tcpACK), enforce.Allowed, ReasonTracked)})
	clock.advance(TimeoutEstablished - time.Second)
	run(t, f, []step{in(tcp(laptop, web, 40000, 443, tcpACK|tcpFIN), enforce.Allowed, ReasonTracked)})
	clock.advance(TimeoutClosing + time.Second)
	run(t, f, []step{in(tcp(laptop, web, 40000, 443, tcpACK), enforce.Dropped, ReasonNotSYN)})

	// UDP: 60 s after the last packet.
	run(t, f, []step{in(udp(db, web, 5000, 53), enforce.Allowed, ReasonNewFlow)})
	clock.advance(TimeoutNew - time.Second)
	run(t, f, []step{out(udp(web, db, 53, 5000), enforce.Allowed, ReasonTracked)})
	clock.advance(TimeoutNew + time.Second)
	run(t, f, []step{out(udp(web, db, 53, 5000), enforce.Dropped, ReasonPolicy)})

	// A SYN with no answer: 60 s.
	run(t, f, []step{out(syn(web, api, 40000, 8080), enforce.Allowed, ReasonNewFlow)})
	clock.advance(TimeoutNew + time.Second)
	run(t, f, []step{in(tcp(api, web, 8080, 40000, tcpSYN|tcpACK), enforce.Dropped, ReasonNotSYN)})
}

func TestApplyRevokesTrackedFlows(t *testing.T) {
	f, _ := newTestFilter(t)
	run(t, f, []step{
		in(syn(laptop, web, 40000, 443), enforce.Allowed, ReasonNewFlow),
		in(udp(db, web, 5000, 53), enforce.Allowed, ReasonNewFlow),
	})
	v := testView(2)
	v.Workloads[0].Ingress.Identities = nil // laptop may no longer reach web
	f.Apply(v)
	if got := f.Version(); got != 2 {
		t.Fatalf("Version() = %d, want 2", got)
	}
	run(t, f, []step{
		out(tcp(web, laptop, 443, 40000, tcpSYN|tcpACK), enforce.Dropped, ReasonNotSYN),
		in(tcp(laptop, web, 40000, 443, tcpACK), enforce.Dropped, ReasonNotSYN),
		out(udp(web, db, 53, 5000), enforce.Allowed, ReasonTracked),
	})
	f.Apply(nil)
	run(t, f, []step{out(udp(web, db, 53, 5000), enforce.Dropped, ReasonNoWorkload)})
}

func TestNoViewDropsEverything(t *testing.T) {
	f := New(Options{})
	run(t, f, []step{
		in(syn(laptop, web, 40000, 443), enforce.Dropped, ReasonNoWorkload),
		out(icmpEcho(web, db, icmpEchoRequest, 1), enforce.Dropped, ReasonNoWorkload),
	})
}

func TestTableIsBounded(t *testing.T) {
	c := &fakeClock{}
	f := New(Options{Now: c.now, MaxFlows: 64, EventBuffer: -1})
	f.Apply(testView(1))
	for i := range 1000 {
		if f.Inbound(udp(db, web, uint16(1000+i), 53)) != enforce.Allowed {
			t.Fatalf("flow %d refused", i)
		}
	}
	st := stats(f)
	if st.Flows == nil || *st.Flows > 64 {
		t.Fatalf("flows tracked: %v, want at most 64", st.Flows)
	}
	// Every flow beyond the table's room evicted one.
	if st.FlowCapacity != 64 || st.FlowsEvicted == nil || *st.FlowsEvicted != uint64(1000-st.FlowCapacity) || st.FlowsCreated != 1000 {
		t.Errorf("capacity %d, evicted %v, created %d; want 64, %d, 1000", st.FlowCapacity, st.FlowsEvicted, st.FlowsCreated, 1000-64)
	}
	// The most recent flow is still tracked; the first was forgotten.
	run(t, f, []step{
		out(udp(web, db, 53, 1999), enforce.Allowed, ReasonTracked),
		out(udp(web, db, 53, 1000), enforce.Dropped, ReasonPolicy),
	})
	if f.Events() != nil {
		t.Fatal("EventBuffer < 0 should disable events")
	}
}

func TestEvents(t *testing.T) {
	f, _ := newTestFilter(t)
	f.Inbound(syn(laptop, web, 40000, 443))
	f.Outbound(tcp(web, laptop, 443, 40000, tcpSYN|tcpACK)) // tracked: no event
	f.Outbound(syn(web, laptop, 40001, 22))
	got := []enforce.Event{<-f.Events(), <-f.Events()}
	select {
	case ev := <-f.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
	want := []enforce.Event{
		{Direction: enforce.Ingress, Verdict: enforce.Allowed, Reason: ReasonNewFlow.String(), Protocol: protoTCP,
			Src: view.MustAddr(laptop), Dst: view.MustAddr(web), SrcPort: 40000, DstPort: 443, Workload: "prod/web", RemoteIdentity: 400, Bytes: 40},
		{Direction: enforce.Egress, Verdict: enforce.Dropped, Reason: ReasonPolicy.String(), Protocol: protoTCP,
			Src: view.MustAddr(web), Dst: view.MustAddr(laptop), SrcPort: 40001, DstPort: 22, Workload: "prod/web", RemoteIdentity: 400, Bytes: 40},
	}
	for i := range want {
		got[i].Time = time.Time{}
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// A full channel loses events and counts them; the data path goes on.
	small := New(Options{EventBuffer: 1})
	small.Apply(testView(1))
	for range 5 {
		small.Outbound(syn(web, laptop, 40001, 22))
	}
	if st := stats(small); st.EventsLost != 4 || st.Dropped != 5 || st.Packets["policy"] != 5 {
		t.Fatalf("stats %+v, want 4 events lost and 5 policy drops", st)
	}
}

// TestConcurrentApply runs packets on several goroutines while views are
// swapped; with -race it checks the swap is safe, and every verdict must be
// one of the two views' answers.
func TestConcurrentApply(t *testing.T) {
	f, _ := newTestFilter(t)
	f.Apply(testView(1))
	a := testView(1)
	b := testView(2)
	b.Workloads[0].Egress = view.Rules{Isolated: true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var packets atomic.Int64
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := uint16(1024 + (g*20000+i)%20000)
				f.Outbound(syn(web, api, port, 8080))
				f.Inbound(tcp(api, web, 8080, port, tcpSYN|tcpACK))
				// laptop -> web:443 is allowed by both views.
				if f.Inbound(syn(laptop, web, port, 443)) != enforce.Allowed {
					t.Errorf("laptop -> web:443 refused during swaps")
					return
				}
				packets.Add(3)
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			f.Apply(b)
		} else {
			f.Apply(a)
		}
		time.Sleep(100 * time.Microsecond) // let packets run between swaps; not a wait
	}
	close(stop)
	wg.Wait()
	if packets.Load() == 0 {
		t.Fatal("no packets processed")
	}
}

// TestApplyTooLarge: a view with more rule entries than MaxEntries is
// refused and the rules in force stay.
func TestApplyTooLarge(t *testing.T) {
	small := testView(1)
	f := New(Options{MaxEntries: entries(small), EventBuffer: -1})
	if err := f.Apply(small); err != nil {
		t.Fatalf("a view of exactly MaxEntries entries: %v", err)
	}
	big := testView(2)
	big.Workloads[0].Ingress.Any = append(big.Workloads[0].Ingress.Any, view.PortRange{Protocol: inventory.TCP, First: 22, Last: 22})
	if err := f.Apply(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a view of one entry more: %v, want ErrTooLarge", err)
	}
	if v := f.Version(); v != 1 {
		t.Errorf("version in force after the refused view: %d, want 1", v)
	}
	run(t, f, []step{in(syn(laptop, web, 40000, 22), enforce.Dropped, ReasonPolicy)})
	// The refused view would have allowed it.
	g := New(Options{EventBuffer: -1})
	if err := g.Apply(big); err != nil {
		t.Fatal(err)
	}
	run(t, g, []step{in(syn(laptop, web, 40000, 22), enforce.Allowed, ReasonNewFlow)})
}

// stats is f.Stats(), which never fails.
func stats(f *Filter) enforce.Stats {
	st, _ := f.Stats()
	return st
}
