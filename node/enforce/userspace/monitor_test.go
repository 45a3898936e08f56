package userspace

import (
	"github.com/latchnet/latch/node/enforce"
	"testing"
	"time"

	"github.com/latchnet/latch/view"
)

// monitorView is testView with prod/web in monitor mode.
func monitorView(version uint64) *view.View {
	v := testView(version)
	v.Workloads[0].Monitor = true
	return v
}

// TestMonitorMode: a monitor-mode workload drops nothing. Every packet the
// enforce-mode filter drops passes, counted as "monitor"; denied flows are
// tracked so their replies pass as tracked; events say would-deny with
// the drop reason. Allowed flows behave exactly as in enforce mode.
func TestMonitorMode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dir    enforce.Direction
		pkt    []byte
		reason Reason // in enforce mode
	}{
		{"identity, other port", enforce.Ingress, syn(laptop, web, 40000, 444), ReasonPolicy},
		{"other identity", enforce.Ingress, syn(api, web, 40000, 443), ReasonPolicy},
		{"egress past the range", enforce.Egress, syn(web, api, 40000, 8082), ReasonPolicy},
		{"egress UDP", enforce.Egress, udp(web, api, 40000, 8080), ReasonPolicy},
		{"unsolicited ACK", enforce.Ingress, tcp(laptop, web, 40000, 443, tcpACK), ReasonNotSYN},
		{"echo from an unknown remote", enforce.Ingress, icmpEcho(nowhere, web, icmpEchoRequest, 7), ReasonICMP},
		{"other protocol", enforce.Egress, ipv4(47, web, api, make([]byte, 8)), ReasonProtocol},
		{"later fragment, first unseen", enforce.Egress, fragment(syn(web, api, 1, 8080), 9, 3, false), ReasonFragmentUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enf, _ := newTestFilter(t)
			run(t, enf, []step{{tc.dir, tc.pkt, enforce.Dropped, tc.reason}})

			f, _ := newTestFilter(t)
			f.Apply(monitorView(2))
			run(t, f, []step{{tc.dir, tc.pkt, enforce.Allowed, ReasonMonitor}})
			ev := <-f.Events()
			if ev.Verdict != enforce.WouldDeny || ev.Reason != tc.reason.String() || ev.Workload != "prod/web" || ev.Direction != tc.dir {
				t.Fatalf("event %+v, want would-deny for %s of prod/web", ev, tc.reason)
			}
			if st := stats(f); st.Dropped != 0 || st.Passed != 1 {
				t.Fatalf("stats %+v: want 1 passed, 0 dropped", st)
			}
		})
	}

	t.Run("a denied flow is tracked: replies pass, no more events", func(t *testing.T) {
		f, _ := newTestFilter(t)
		f.Apply(monitorView(2))
		run(t, f, []step{
			in(syn(api, web, 40000, 443), enforce.Allowed, ReasonMonitor),
			out(tcp(web, api, 443, 40000, tcpSYN|tcpACK), enforce.Allowed, ReasonTracked),
			in(tcp(api, web, 40000, 443, tcpACK), enforce.Allowed, ReasonTracked),
			out(udp(web, db, 5000, 53), enforce.Allowed, ReasonMonitor),
			in(udp(db, web, 53, 5000), enforce.Allowed, ReasonTracked),
		})
		if ev := <-f.Events(); ev.Verdict != enforce.WouldDeny || ev.Reason != ReasonPolicy.String() || ev.DstPort != 443 {
			t.Fatalf("first event %+v", ev)
		}
		if ev := <-f.Events(); ev.Verdict != enforce.WouldDeny || ev.Protocol != protoUDP {
			t.Fatalf("second event %+v", ev)
		}
		select {
		case ev := <-f.Events():
			t.Fatalf("unexpected event %+v", ev)
		default:
		}
	})

	t.Run("allowed flows are unchanged; other workloads still enforce", func(t *testing.T) {
		f, _ := newTestFilter(t)
		f.Apply(monitorView(2))
		run(t, f, []step{
			in(syn(laptop, web, 40000, 443), enforce.Allowed, ReasonNewFlow),
			out(syn(laptop, api, 40000, 8080), enforce.Dropped, ReasonNoWorkload),
		})
		v := monitorView(3)
		v.Workloads[1].Ingress = view.Rules{Isolated: true}
		f.Apply(v)
		run(t, f, []step{in(syn(laptop, open, 1, 2), enforce.Dropped, ReasonPolicy)})
	})

	t.Run("switching to enforce ends monitored flows the rules deny", func(t *testing.T) {
		f, c := newTestFilter(t)
		f.Apply(monitorView(2))
		run(t, f, []step{
			in(syn(api, web, 40000, 443), enforce.Allowed, ReasonMonitor),
			in(syn(laptop, web, 40001, 443), enforce.Allowed, ReasonNewFlow),
		})
		f.Apply(testView(3))
		c.advance(time.Second)
		run(t, f, []step{
			in(tcp(api, web, 40000, 443, tcpACK), enforce.Dropped, ReasonNotSYN),
			in(tcp(laptop, web, 40001, 443, tcpACK), enforce.Allowed, ReasonTracked),
			in(syn(api, web, 40002, 443), enforce.Dropped, ReasonPolicy),
		})
	})
}
