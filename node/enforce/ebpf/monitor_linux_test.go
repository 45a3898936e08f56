//go:build linux

package ebpf

import (
	"github.com/latchnet/latch/node/enforce"
	"testing"
	"time"

	"github.com/latchnet/latch/view"
)

// monitorView is testView with prod/api in monitor mode.
func monitorView() *view.View {
	v := testView()
	v.Version = 2
	v.Workloads[0].Monitor = true
	return v
}

// TestProgramMonitorMode: with prod/api in monitor mode, every packet
// TestProgramDecisions drops once the local workload is known passes,
// counted as "monitor" and reported as would-deny with the drop reason;
// denied flows are tracked so their replies pass; prod/all and unknown
// locals are enforced as before; switching back to enforce drops new
// denied flows again.
func TestProgramMonitorMode(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(monitorView()); err != nil {
		t.Fatal(err)
	}
	syn := func(src, dst string, sport, dport uint16) packet {
		return packet{src: src, dst: dst, proto: protoTCP, sport: sport, dport: dport, flags: fSYN}
	}
	steps := []struct {
		name   string
		dir    enforce.Direction
		p      packet
		want   uint32
		reason Reason // the event's reason; 0 with want == retAllow and no event expected
		event  enforce.Verdict
	}{
		{"identity rule other port", enforce.Ingress, syn(webIP, apiIP, 50001, 8081), retAllow, ReasonNoRule, enforce.WouldDeny},
		{"reply of the denied flow", enforce.Egress, packet{src: apiIP, dst: webIP, proto: protoTCP, sport: 8081, dport: 50001, flags: fSYN | fACK}, retAllow, 0, 0},
		{"ack of the denied flow", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 50001, dport: 8081, flags: fACK}, retAllow, 0, 0},
		{"egress other identity", enforce.Egress, syn(apiIP, webIP, 50002, 5432), retAllow, ReasonNoRule, enforce.WouldDeny},
		{"udp out denied", enforce.Egress, packet{src: apiIP, dst: webIP, proto: protoUDP, sport: 50003, dport: 53}, retAllow, ReasonNoRule, enforce.WouldDeny},
		{"udp reply", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoUDP, sport: 53, dport: 50003}, retAllow, 0, 0},
		{"unsolicited ack", enforce.Ingress, packet{src: dbIP, dst: apiIP, proto: protoTCP, sport: 50004, dport: 8080, flags: fACK}, retAllow, ReasonNotSYN, enforce.WouldDeny},
		{"ping from unknown remote", enforce.Ingress, packet{src: otherIP, dst: apiIP, proto: protoICMP, icmpType: 8}, retAllow, ReasonICMP, enforce.WouldDeny},
		{"fragment", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 50005, dport: 8080, flags: fSYN, fragOff: 0x2000}, retAllow, ReasonFragment, enforce.WouldDeny},
		{"other ip protocol", enforce.Ingress, packet{src: webIP, dst: apiIP, proto: 47}, retAllow, ReasonProtocol, enforce.WouldDeny},
		{"allowed flow unchanged", enforce.Ingress, syn(webIP, apiIP, 50006, 8080), retAllow, ReasonIdentity, enforce.Allowed},
		{"enforce-mode workload", enforce.Egress, syn(allIP, dbIP, 50007, 5432), retDrop, ReasonNoRule, enforce.Dropped},
		{"unknown local", enforce.Ingress, syn(webIP, "100.64.0.99", 50008, 8080), retDrop, ReasonUnknownLocal, enforce.Dropped},
	}
	for _, s := range steps {
		if got := run(t, e, s.dir, s.p); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, verdictName(got), verdictName(s.want))
		}
		if s.reason == 0 {
			continue // tracked: no event
		}
		select {
		case ev := <-e.Events():
			if ev.Verdict != s.event || ev.Reason != s.reason.String() {
				t.Fatalf("%s: event %s/%s, want %s/%s (%+v)", s.name, ev.Verdict, ev.Reason, s.event, s.reason, ev)
			}
			if ev.Verdict == enforce.WouldDeny && ev.Workload != "prod/api" {
				t.Fatalf("%s: event workload %q, want prod/api", s.name, ev.Workload)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event within 5s", s.name)
		}
	}
	select {
	case ev := <-e.Events():
		t.Fatalf("unexpected event %+v (tracked packets are not reported)", ev)
	default:
	}
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.ByReason[ReasonMonitor] != 7 || c.Dropped != 2 || c.ByReason[ReasonTracked] != 3 {
		t.Errorf("counters %+v: want 7 monitor passes, 3 tracked, 2 drops", c)
	}

	// Back to enforce: a new denied flow is dropped again.
	v := testView()
	v.Version = 3
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	if got := run(t, e, enforce.Ingress, syn(webIP, apiIP, 50009, 8081)); got != retDrop {
		t.Errorf("after switching to enforce: got %s, want drop", verdictName(got))
	}
}
