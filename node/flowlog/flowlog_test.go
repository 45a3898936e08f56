package flowlog

import (
	"net/netip"
	"testing"
	"time"

	"github.com/latchnet/latch/wire"
)

var (
	web = netip.MustParseAddr("100.64.0.10")
	api = netip.MustParseAddr("100.64.0.11")
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func ev(sec int, port uint16, verdict string) Event {
	return Event{Time: t0.Add(time.Duration(sec) * time.Second), Direction: wire.DirEgress, Workload: "prod/web",
		Src: web, Dst: api, Protocol: 6, Port: port, Verdict: verdict, Reason: "policy", Bytes: 60}
}

func TestAggregatePerFlowAndInterval(t *testing.T) {
	l := New(Options{})
	l.Add(ev(2, 8080, wire.VerdictWouldDeny))
	l.Add(ev(1, 8080, wire.VerdictWouldDeny))
	l.Add(ev(3, 8080, wire.VerdictWouldDeny))
	l.Add(ev(2, 8080, wire.VerdictAllowed)) // another verdict: another record
	l.Add(ev(2, 9090, wire.VerdictWouldDeny))
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
	l.Add(ev(9, 8080, wire.VerdictWouldDeny))
	l.Flush()
	if recs, _ := l.Take(10); len(recs) != 1 || recs[0].Packets != 1 {
		t.Fatalf("second interval: %+v", recs)
	}
}

func TestBoundsDropOldestAndCount(t *testing.T) {
	l := New(Options{MaxRecords: 3, MaxFlows: 2})
	for i := range 3 {
		l.Add(ev(i, uint16(1000+i), wire.VerdictDenied)) // the third flow is over MaxFlows
	}
	l.Flush()
	for i := range 2 {
		l.Add(ev(10+i, uint16(2000+i), wire.VerdictDenied))
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
	l.Add(ev(20, 3000, wire.VerdictDenied))
	l.Flush()
	recs, dropped = l.Take(10)
	if len(recs) != 3 || recs[0].Port != 2000 || recs[2].Port != 3000 || dropped != 3 {
		t.Fatalf("after return: %+v dropped %d", recs, dropped)
	}
	if recs, dropped := l.Take(10); len(recs) != 0 || dropped != 0 {
		t.Fatalf("empty take: %+v %d", recs, dropped)
	}
}
