package flowlog

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
)

var (
	web = view.MustAddr("100.64.0.10")
	api = view.MustAddr("100.64.0.11")
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func ev(sec int, port uint16, verdict enforce.Verdict) enforce.Event {
	return enforce.Event{Time: t0.Add(time.Duration(sec) * time.Second), Direction: enforce.Egress, Workload: "prod/web",
		Src: web, Dst: api, Protocol: 6, SrcPort: 40000, DstPort: port, Verdict: verdict, Reason: "policy", Bytes: 60}
}

func TestAggregatePerFlowAndInterval(t *testing.T) {
	l := New(Options{})
	l.Add(ev(2, 8080, enforce.WouldDeny))
	l.Add(ev(1, 8080, enforce.WouldDeny))
	l.Add(ev(3, 8080, enforce.WouldDeny))
	l.Add(ev(2, 8080, enforce.Allowed)) // another verdict: another record
	l.Add(ev(2, 9090, enforce.WouldDeny))
	if recs, _ := l.Take(10); len(recs) != 0 {
		t.Fatalf("records before the interval ended: %+v", recs)
	}
	l.Flush()
	recs, dropped := l.Take(10)
	if len(recs) != 3 || dropped != 0 {
		t.Fatalf("got %d records (%d dropped), want 3", len(recs), dropped)
	}
	r := recs[0]
	if r.Packets != 3 || r.Bytes != 180 || !r.Start.Equal(t0.Add(time.Second)) || !r.End.Equal(t0.Add(3*time.Second)) ||
		r.Protocol != "TCP" || r.Port != 8080 || r.Verdict != wire.VerdictWouldDeny || r.Workload != "prod/web" {
		t.Fatalf("aggregated record %+v", r)
	}
	if recs[1].Verdict != wire.VerdictAllowed || recs[2].Port != 9090 {
		t.Fatalf("records out of arrival order: %+v", recs)
	}
	// The next interval starts empty.
	l.Add(ev(9, 8080, enforce.WouldDeny))
	l.Flush()
	if recs, _ := l.Take(10); len(recs) != 1 || recs[0].Packets != 1 {
		t.Fatalf("second interval: %+v", recs)
	}
}

func TestBoundsDropOldestAndCount(t *testing.T) {
	l := New(Options{MaxRecords: 3, MaxFlows: 2})
	for i := range 3 {
		l.Add(ev(i, uint16(1000+i), enforce.Dropped)) // the third flow is over MaxFlows
	}
	l.Flush()
	for i := range 2 {
		l.Add(ev(10+i, uint16(2000+i), enforce.Dropped))
	}
	l.Flush() // 4 queued, bound 3: the oldest (port 1000) goes
	if st := l.Stats(); st.Queued != 3 || st.Dropped != 2 {
		t.Fatalf("stats %+v, want 3 queued, 2 dropped", st)
	}
	recs, dropped := l.Take(2)
	if len(recs) != 2 || dropped != 2 || recs[0].Port != 1001 || recs[1].Port != 2000 {
		t.Fatalf("take: %+v dropped %d", recs, dropped)
	}
	// The upload failed: the records go back in front; a newer interval
	// pushes out the oldest again.
	l.Return(recs, dropped)
	l.Add(ev(20, 3000, enforce.Dropped))
	l.Flush()
	recs, dropped = l.Take(10)
	if len(recs) != 3 || recs[0].Port != 2000 || recs[2].Port != 3000 || dropped != 3 {
		t.Fatalf("after return: %+v dropped %d", recs, dropped)
	}
	if recs, dropped := l.Take(10); len(recs) != 0 || dropped != 0 {
		t.Fatalf("empty take: %+v %d", recs, dropped)
	}
}

// TestRecordOfEvent: an event of either enforcer becomes a record in the
// terms of the wire (direction, verdict, protocol name, the destination
// port); events of no local workload make none.
func TestRecordOfEvent(t *testing.T) {
	for _, tc := range []struct {
		dir         enforce.Direction
		verdict     enforce.Verdict
		wantDir     string
		wantVerdict string
	}{
		{enforce.Ingress, enforce.Allowed, wire.DirIngress, wire.VerdictAllowed},
		{enforce.Egress, enforce.Dropped, wire.DirEgress, wire.VerdictDenied},
		{enforce.Ingress, enforce.WouldDeny, wire.DirIngress, wire.VerdictWouldDeny},
	} {
		l := New(Options{})
		e := ev(1, 443, tc.verdict)
		e.Direction = tc.dir
		l.Add(e)
		e.Workload = ""
		l.Add(e)
		l.Flush()
		recs, _ := l.Take(10)
		want := []wire.FlowRecord{{Start: t0.Add(time.Second), End: t0.Add(time.Second), Direction: tc.wantDir, Workload: "prod/web",
			Src: netip.MustParseAddr("100.64.0.10"), Dst: netip.MustParseAddr("100.64.0.11"), Protocol: "TCP", Port: 443,
			Verdict: tc.wantVerdict, Reason: "policy", Packets: 1, Bytes: 60}}
		if d := cmp.Diff(want, recs, cmpopts.EquateComparable(netip.Addr{})); d != "" {
			t.Errorf("%s %s: records (-want +got):\n%s", tc.dir, tc.verdict, d)
		}
	}
}

// TestSiteFlows: an event a gateway's enforcer decided by a site's rules
// names the site as its workload; its record keeps the site's name and
// the site host's address as the local end.
func TestSiteFlows(t *testing.T) {
	l := New(Options{})
	host := view.MustAddr("198.19.1.10")
	e := enforce.Event{Time: t0, Direction: enforce.Ingress, Workload: "lab/printers", Src: web, Dst: host,
		Protocol: 6, SrcPort: 40000, DstPort: 631, Verdict: enforce.Allowed, Reason: "new-flow", Bytes: 60}
	l.Add(e)
	e.Direction, e.Src, e.Dst, e.DstPort, e.Verdict, e.Reason = enforce.Egress, host, web, 8080, enforce.Dropped, "policy"
	l.Add(e)
	l.Flush()
	recs, _ := l.Take(10)
	want := []wire.FlowRecord{
		{Start: t0, End: t0, Direction: wire.DirIngress, Workload: "lab/printers", Src: web.Netip(), Dst: host.Netip(),
			Protocol: "TCP", Port: 631, Verdict: wire.VerdictAllowed, Reason: "new-flow", Packets: 1, Bytes: 60},
		{Start: t0, End: t0, Direction: wire.DirEgress, Workload: "lab/printers", Src: host.Netip(), Dst: web.Netip(),
			Protocol: "TCP", Port: 8080, Verdict: wire.VerdictDenied, Reason: "policy", Packets: 1, Bytes: 60},
	}
	if d := cmp.Diff(want, recs, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("site records (-want +got):\n%s", d)
	}
}
