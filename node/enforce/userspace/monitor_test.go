package userspace

import (
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
		dir    Direction
		pkt    []byte
		reason Reason // in enforce mode
	}{
		{"identity, other port", DirInbound, syn(laptop, web, 40000, 444), ReasonPolicy},
		{"other identity", DirInbound, syn(api, web, 40000, 443), ReasonPolicy},
		{"egress past the range", DirOutbound, syn(web, api, 40000, 8082), ReasonPolicy},
		{"egress UDP", DirOutbound, udp(web, api, 40000, 8080), ReasonPolicy},
		{"unsolicited ACK", DirInbound, tcp(laptop, web, 40000, 443, tcpACK), ReasonNotSYN},
		{"echo from an unknown remote", DirInbound, icmpEcho(nowhere, web, icmpEchoRequest, 7), ReasonICMP},
		{"other protocol", DirOutbound, ipv4(47, web, api, make([]byte, 8)), ReasonProtocol},
		{"later fragment, first unseen", DirOutbound, fragment(syn(web, api, 1, 8080), 9, 3, false), ReasonFragmentUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enf, _ := newTestFilter(t)
			run(t, enf, []step{{tc.dir, tc.pkt, Drop, tc.reason}})

			f, _ := newTestFilter(t)
			f.Apply(monitorView(2))
			run(t, f, []step{{tc.dir, tc.pkt, Pass, ReasonMonitor}})
			ev := <-f.Events()
			if ev.Verdict != WouldDeny || ev.Reason != tc.reason || ev.Workload != "prod/web" || ev.Direction != tc.dir {
				t.Fatalf("event %+v, want would-deny for %s of prod/web", ev, tc.reason)
			}
			if st := f.Stats(); st.Dropped != 0 || st.Passed != 1 {
				t.Fatalf("stats %+v: want 1 passed, 0 dropped", st)
			}
		})
	}

	t.Run("a denied flow is tracked: replies pass, no more events", func(t *testing.T) {
		f, _ := newTestFilter(t)
		f.Apply(monitorView(2))
		run(t, f, []step{
			in(syn(api, web, 40000, 443), Pass, ReasonMonitor),
			out(tcp(web, api, 443, 40000, tcpSYN|tcpACK), Pass, ReasonTracked),
			in(tcp(api, web, 40000, 443, tcpACK), Pass, ReasonTracked),
			out(udp(web, db, 5000, 53), Pass, ReasonMonitor),
			in(udp(db, web, 53, 5000), Pass, ReasonTracked),
		})
		if ev := <-f.Events(); ev.Verdict != WouldDeny || ev.Reason != ReasonPolicy || ev.DstPort != 443 {
			t.Fatalf("first event %+v", ev)
		}
		if ev := <-f.Events(); ev.Verdict != WouldDeny || ev.Protocol != protoUDP {
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
			in(syn(laptop, web, 40000, 443), Pass, ReasonNewFlow),
			out(syn(laptop, api, 40000, 8080), Drop, ReasonNoWorkload),
		})
		v := monitorView(3)
		v.Workloads[1].Ingress = view.Rules{Isolated: true}
		f.Apply(v)
		run(t, f, []step{in(syn(laptop, open, 1, 2), Drop, ReasonPolicy)})
	})

	t.Run("switching to enforce ends monitored flows the rules deny", func(t *testing.T) {
		f, c := newTestFilter(t)
		f.Apply(monitorView(2))
		run(t, f, []step{
			in(syn(api, web, 40000, 443), Pass, ReasonMonitor),
			in(syn(laptop, web, 40001, 443), Pass, ReasonNewFlow),
		})
		f.Apply(testView(3))
		c.advance(time.Second)
		run(t, f, []step{
			in(tcp(api, web, 40000, 443, tcpACK), Drop, ReasonNotSYN),
			in(tcp(laptop, web, 40001, 443, tcpACK), Pass, ReasonTracked),
			in(syn(api, web, 40002, 443), Drop, ReasonPolicy),
		})
	})
}
