package userspace

import (
	"errors"
	"testing"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

// Site hosts of siteView (no identity, no agent).
const (
	printer = "198.19.1.10"  // lab/printers, 198.19.1.0/24
	cam     = "198.19.2.20"  // lab/cams, 198.19.2.0/25
	stray   = "198.19.2.200" // in no site prefix of the view
)

// siteView is a gateway's view: testView's workloads and the rule tables
// of two sites it carries.
//   - lab/printers (198.19.1.0/24): ingress TCP 631 from laptop
//     (identity 400) and TCP 9100 from 198.19.2.0/24; egress TCP 554 to
//     198.19.2.0/24.
//   - lab/cams (198.19.2.0/25): ingress TCP 554 from 198.19.1.0/24; no
//     egress.
func siteView(version uint64) *view.View {
	v := testView(version)
	tcpPort := func(p uint16) []view.PortRange { return []view.PortRange{ports(inventory.TCP, p, p)} }
	v.Sites = []view.SiteRules{
		{
			Site: "lab/cams", CIDRs: []view.Prefix{view.MustPrefix("198.19.2.0/25")},
			Ingress: view.Rules{Isolated: true, CIDRs: []view.CIDRRule{{Prefix: view.MustPrefix("198.19.1.0/24"), Ports: tcpPort(554)}}},
			Egress:  view.Rules{Isolated: true},
		},
		{
			Site: "lab/printers", CIDRs: []view.Prefix{view.MustPrefix("198.19.1.0/24")},
			Ingress: view.Rules{
				Isolated:   true,
				Identities: []view.IdentityRule{{Identity: 400, Ports: tcpPort(631)}},
				CIDRs:      []view.CIDRRule{{Prefix: view.MustPrefix("198.19.2.0/24"), Ports: tcpPort(9100)}},
			},
			Egress: view.Rules{Isolated: true, CIDRs: []view.CIDRRule{{Prefix: view.MustPrefix("198.19.2.0/24"), Ports: tcpPort(554)}}},
		},
	}
	return v
}

// siteEvent is what the event of one step must say; a zero siteEvent: no
// event.
type siteEvent struct {
	some     bool
	verdict  enforce.Verdict
	workload string
}

// runWithEvents runs steps as run does and checks the event each one
// reports.
func runWithEvents(t *testing.T, f *Filter, steps []step, events []siteEvent) {
	t.Helper()
	for i, s := range steps {
		run(t, f, []step{s})
		want := events[i]
		select {
		case ev := <-f.Events():
			if !want.some {
				t.Fatalf("step %d: unexpected event %+v", i, ev)
			}
			if ev.Verdict != want.verdict || ev.Workload != want.workload || ev.Reason != s.reason.String() && want.verdict != enforce.WouldDeny {
				t.Fatalf("step %d: event %+v, want %s for %q", i, ev, want.verdict, want.workload)
			}
		default:
			if want.some {
				t.Fatalf("step %d: no event, want %s for %q", i, want.verdict, want.workload)
			}
		}
	}
}

// TestSites: on a gateway, a packet whose local address is a site host is
// decided by its site's rules, as a workload's packet is by the
// workload's, with connection tracking, and reported under the site's
// name.
func TestSites(t *testing.T) {
	f, _ := newTestFilter(t)
	f.Apply(siteView(2))
	none := siteEvent{}
	allowed := func(wl string) siteEvent { return siteEvent{true, enforce.Allowed, wl} }
	dropped := func(wl string) siteEvent { return siteEvent{true, enforce.Dropped, wl} }
	runWithEvents(t, f, []step{
		in(syn(laptop, printer, 41000, 631), enforce.Allowed, ReasonNewFlow),                                                       // overlay to site, allowed port
		out(tcp(printer, laptop, 631, 41000, tcpSYN|tcpACK), enforce.Allowed, ReasonTracked),                                       // the site host replies
		in(tcp(laptop, printer, 41000, 631, tcpACK), enforce.Allowed, ReasonTracked),                                               // and the flow goes on
		out(icmpError(printer, laptop, icmpDestUnreachable, syn(laptop, printer, 41000, 631)), enforce.Allowed, ReasonICMPRelated), // error quoting a tracked flow
		in(syn(laptop, printer, 41001, 632), enforce.Dropped, ReasonPolicy),                                                        // denied port
		in(syn(api, printer, 41002, 631), enforce.Dropped, ReasonPolicy),                                                           // other identity
		out(syn(printer, laptop, 631, 8080), enforce.Dropped, ReasonPolicy),                                                        // site host opens a denied flow
		out(syn(printer, laptop, 631, 41000), enforce.Dropped, ReasonPolicy),                                                       // nor a SYN back on the tracked ports
		out(syn(printer, cam, 41003, 554), enforce.Allowed, ReasonNewFlow),                                                         // site to site, egress by CIDR
		out(syn(printer, cam, 41004, 555), enforce.Dropped, ReasonPolicy),                                                          // site to site, other port
		in(syn(printer, cam, 41005, 554), enforce.Allowed, ReasonNewFlow),                                                          // site to site, ingress by CIDR
		out(tcp(cam, printer, 554, 41005, tcpSYN|tcpACK), enforce.Allowed, ReasonTracked),                                          // its reply
		out(syn(cam, printer, 41006, 9100), enforce.Dropped, ReasonPolicy),                                                         // cams may not open
		in(syn(laptop, stray, 41007, 554), enforce.Dropped, ReasonNoWorkload),                                                      // in no site prefix
		in(icmpEcho(laptop, printer, icmpEchoRequest, 9), enforce.Allowed, ReasonICMPEcho),                                         // ping from a workload
		out(icmpEcho(printer, laptop, icmpEchoReply, 9), enforce.Allowed, ReasonICMPEcho),                                          // the site host answers
		out(icmpEcho(printer, cam, icmpEchoRequest, 9), enforce.Dropped, ReasonICMP),                                               // ping between site hosts
		in(syn(laptop, web, 41008, 443), enforce.Allowed, ReasonNewFlow),                                                           // workload rules unchanged
	}, []siteEvent{
		allowed("lab/printers"), none, none, none, dropped("lab/printers"), dropped("lab/printers"), dropped("lab/printers"),
		dropped("lab/printers"), allowed("lab/printers"), dropped("lab/printers"), allowed("lab/cams"), none,
		dropped("lab/cams"), dropped(""), none, none, dropped("lab/printers"), allowed("prod/web"),
	})
}

// TestSiteRecheck: a site host's tracked flow is checked again against
// the site's new rules after Apply, and forgotten when they deny it.
func TestSiteRecheck(t *testing.T) {
	f, _ := newTestFilter(t)
	f.Apply(siteView(2))
	run(t, f, []step{
		in(syn(laptop, printer, 42000, 631), enforce.Allowed, ReasonNewFlow),
		out(syn(printer, cam, 42001, 554), enforce.Allowed, ReasonNewFlow),
	})
	v := siteView(3)
	v.Sites[1].Ingress.Identities = nil // laptop may no longer print; egress to cams stays
	f.Apply(v)
	run(t, f, []step{
		out(tcp(printer, laptop, 631, 42000, tcpSYN|tcpACK), enforce.Dropped, ReasonNotSYN),
		out(tcp(printer, cam, 42001, 554, tcpACK), enforce.Allowed, ReasonTracked),
	})
}

// TestWorkloadBeatsSite: a workload's address inside a site prefix is
// decided by the workload's rules; the prefix's other addresses by the
// site's.
func TestWorkloadBeatsSite(t *testing.T) {
	f, _ := newTestFilter(t)
	v := testView(2)
	v.Sites = []view.SiteRules{{Site: "lab/wide", CIDRs: []view.Prefix{view.MustPrefix("100.64.0.0/24")},
		Ingress: view.Rules{AllowAll: true}, Egress: view.Rules{AllowAll: true}}}
	f.Apply(v)
	runWithEvents(t, f, []step{
		in(syn(laptop, web, 43000, 444), enforce.Dropped, ReasonPolicy),
		out(syn(web, laptop, 43001, 22), enforce.Dropped, ReasonPolicy),
		in(syn(laptop, "100.64.0.99", 43002, 444), enforce.Allowed, ReasonNewFlow),
	}, []siteEvent{{true, enforce.Dropped, "prod/web"}, {true, enforce.Dropped, "prod/web"}, {true, enforce.Allowed, "lab/wide"}})
}

// TestSiteMonitor: a site in monitor mode passes what its rules deny,
// reported as would-deny under the site's name, and tracks it.
func TestSiteMonitor(t *testing.T) {
	f, _ := newTestFilter(t)
	v := siteView(2)
	v.Sites[1].Monitor = true
	f.Apply(v)
	wd := siteEvent{true, enforce.WouldDeny, "lab/printers"}
	runWithEvents(t, f, []step{
		in(syn(laptop, printer, 44000, 632), enforce.Allowed, ReasonMonitor),
		out(tcp(printer, laptop, 632, 44000, tcpSYN|tcpACK), enforce.Allowed, ReasonTracked),
		out(syn(printer, laptop, 44001, 8080), enforce.Allowed, ReasonMonitor),
		in(syn(laptop, printer, 44002, 631), enforce.Allowed, ReasonNewFlow),
		out(syn(cam, printer, 44003, 9100), enforce.Dropped, ReasonPolicy), // lab/cams is enforced
	}, []siteEvent{wd, {}, wd, {true, enforce.Allowed, "lab/printers"}, {true, enforce.Dropped, "lab/cams"}})
}

// TestApplyTooLargeCountsSites: the sites' prefixes and rules count
// toward MaxEntries.
func TestApplyTooLargeCountsSites(t *testing.T) {
	f := New(Options{MaxEntries: entries(testView(1)), EventBuffer: -1})
	if err := f.Apply(siteView(2)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a view whose sites go past MaxEntries: %v, want ErrTooLarge", err)
	}
	if want := entries(testView(1)) + 2 + 4*2; entries(siteView(2)) != want {
		t.Errorf("entries of siteView: %d, want %d (two prefixes, four CIDR and identity rules of one port each)", entries(siteView(2)), want)
	}
}
