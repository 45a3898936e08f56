//go:build linux

package ebpf

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchnet/latch/bpf"
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/view"
)

// Site hosts of siteView (no identity, no agent).
const (
	printerIP = "198.19.1.10"  // lab/printers, 198.19.1.0/24
	camIP     = "198.19.2.20"  // lab/cams, 198.19.2.0/25
	strayIP   = "198.19.2.200" // in no site prefix of the view
)

// siteView is a gateway's view: its own workload prod/api (testView's)
// and the rule tables of two sites it carries.
//   - lab/printers (198.19.1.0/24): ingress TCP 631 from identity 300
//     (web) and TCP 9100 from 198.19.2.0/24; egress TCP 554 to
//     198.19.2.0/24.
//   - lab/cams (198.19.2.0/25): ingress TCP 554 from 198.19.1.0/24; no
//     egress.
func siteView() *view.View {
	v := testView()
	v.Sites = []view.SiteRules{
		{
			Site: "lab/cams", CIDRs: []view.Prefix{view.MustPrefix("198.19.2.0/25")},
			Ingress: view.Rules{Isolated: true, CIDRs: []view.CIDRRule{
				{Prefix: view.MustPrefix("198.19.1.0/24"), Ports: []view.PortRange{tcpPorts(554, 554)}},
			}},
			Egress: view.Rules{Isolated: true},
		},
		{
			Site: "lab/printers", CIDRs: []view.Prefix{view.MustPrefix("198.19.1.0/24")},
			Ingress: view.Rules{
				Isolated:   true,
				Identities: []view.IdentityRule{{Identity: 300, Ports: []view.PortRange{tcpPorts(631, 631)}}},
				CIDRs: []view.CIDRRule{
					{Prefix: view.MustPrefix("198.19.2.0/24"), Ports: []view.PortRange{tcpPorts(9100, 9100)}},
				},
			},
			Egress: view.Rules{Isolated: true, CIDRs: []view.CIDRRule{
				{Prefix: view.MustPrefix("198.19.2.0/24"), Ports: []view.PortRange{tcpPorts(554, 554)}},
			}},
		},
	}
	return v
}

func syn(src, dst string, sport, dport uint16) packet {
	return packet{src: src, dst: dst, proto: protoTCP, sport: sport, dport: dport, flags: fSYN}
}

type siteStep struct {
	name     string
	dir      enforce.Direction
	p        packet
	want     uint32
	reason   Reason // of the event; 0: no event (tracked, ICMP echo)
	workload string // of the event
}

// runSiteSteps runs steps in order, checking verdicts and events.
func runSiteSteps(t *testing.T, e *Enforcer, steps []siteStep) {
	t.Helper()
	for _, s := range steps {
		if got := run(t, e, s.dir, s.p); got != s.want {
			t.Fatalf("%s: %s %+v: got %s, want %s", s.name, s.dir, s.p, verdictName(got), verdictName(s.want))
		}
		if s.reason == 0 {
			continue
		}
		select {
		case ev := <-e.Events():
			if ev.Reason != s.reason.String() || ev.Workload != s.workload {
				t.Fatalf("%s: event %+v, want reason %s, workload %q", s.name, ev, s.reason, s.workload)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event within 5s", s.name)
		}
	}
	select {
	case ev := <-e.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

// TestProgramSites: on a gateway, a packet whose local address is a site
// host is decided by its site's rules, as a workload's packet is by the
// workload's, with connection tracking, and reported under the site's
// name.
func TestProgramSites(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(siteView()); err != nil {
		t.Fatal(err)
	}
	runSiteSteps(t, e, []siteStep{
		{"overlay to site, allowed port", enforce.Ingress, syn(webIP, printerIP, 51000, 631), retAllow, ReasonIdentity, "lab/printers"},
		{"site host replies", enforce.Egress, packet{src: printerIP, dst: webIP, proto: protoTCP, sport: 631, dport: 51000, flags: fSYN | fACK}, retAllow, 0, ""},
		{"overlay ack", enforce.Ingress, packet{src: webIP, dst: printerIP, proto: protoTCP, sport: 51000, dport: 631, flags: fACK}, retAllow, 0, ""},
		{"overlay to site, denied port", enforce.Ingress, syn(webIP, printerIP, 51001, 632), retDrop, ReasonNoRule, "lab/printers"},
		{"overlay to site, other identity", enforce.Ingress, syn(dbIP, printerIP, 51002, 631), retDrop, ReasonNoRule, "lab/printers"},
		{"site host opens a denied flow", enforce.Egress, syn(printerIP, webIP, 631, 8080), retDrop, ReasonNoRule, "lab/printers"},
		{"site to site, egress by CIDR", enforce.Egress, syn(printerIP, camIP, 51003, 554), retAllow, ReasonCIDR, "lab/printers"},
		{"site to site, egress denied port", enforce.Egress, syn(printerIP, camIP, 51004, 555), retDrop, ReasonNoRule, "lab/printers"},
		{"site to site, ingress by CIDR", enforce.Ingress, syn(printerIP, camIP, 51005, 554), retAllow, ReasonCIDR, "lab/cams"},
		{"site to site, ingress reply", enforce.Egress, packet{src: camIP, dst: printerIP, proto: protoTCP, sport: 554, dport: 51005, flags: fSYN | fACK}, retAllow, 0, ""},
		{"site to site, cams may not open", enforce.Egress, syn(camIP, printerIP, 51006, 9100), retDrop, ReasonNoRule, "lab/cams"},
		{"address in no site prefix", enforce.Ingress, syn(webIP, strayIP, 51007, 554), retDrop, ReasonUnknownLocal, ""},
		{"ping from a workload to a site host", enforce.Ingress, packet{src: webIP, dst: printerIP, proto: protoICMP, icmpType: 8}, retAllow, 0, ""},
		{"site host answers the ping", enforce.Egress, packet{src: printerIP, dst: webIP, proto: protoICMP, icmpType: 0}, retAllow, 0, ""},
		{"ping between site hosts", enforce.Egress, packet{src: printerIP, dst: camIP, proto: protoICMP, icmpType: 8}, retDrop, ReasonICMP, "lab/printers"},
		{"workload rules unchanged", enforce.Ingress, syn(webIP, apiIP, 51008, 8080), retAllow, ReasonIdentity, "prod/api"},
	})
}

// TestProgramSiteRecheck: a site host's tracked flow is decided again by
// the site's new rules after a switch, and ends when they deny it.
func TestProgramSiteRecheck(t *testing.T) {
	e := loadTest(t)
	if err := e.Apply(siteView()); err != nil {
		t.Fatal(err)
	}
	if got := run(t, e, enforce.Ingress, syn(webIP, printerIP, 52000, 631)); got != retAllow {
		t.Fatalf("opening: %s", verdictName(got))
	}
	if got := run(t, e, enforce.Egress, syn(printerIP, camIP, 52001, 554)); got != retAllow {
		t.Fatalf("opening site to site: %s", verdictName(got))
	}
	v := siteView()
	v.Version = 2
	v.Sites[1].Ingress.Identities = nil // web may no longer print; egress to cams stays
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	if got := run(t, e, enforce.Egress, packet{src: printerIP, dst: webIP, proto: protoTCP, sport: 631, dport: 52000, flags: fSYN | fACK}); got != retDrop {
		t.Errorf("reply of a flow the new rules deny: got %s, want drop", verdictName(got))
	}
	if got := run(t, e, enforce.Egress, packet{src: printerIP, dst: camIP, proto: protoTCP, sport: 52001, dport: 554, flags: fACK}); got != retAllow {
		t.Errorf("flow the new rules still allow: got %s, want allow", verdictName(got))
	}
	c, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.ByReason[ReasonRevoked] != 1 {
		t.Errorf("counters %+v: want 1 revoked", c)
	}
}

// TestProgramWorkloadBeatsSite: a workload's address inside a site prefix
// is decided by the workload's rules; the prefix's other addresses by the
// site's.
func TestProgramWorkloadBeatsSite(t *testing.T) {
	e := loadTest(t)
	v := testView()
	v.Sites = []view.SiteRules{{Site: "lab/wide", CIDRs: []view.Prefix{view.MustPrefix("100.64.0.0/24")},
		Ingress: view.Rules{AllowAll: true}, Egress: view.Rules{AllowAll: true}}}
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	runSiteSteps(t, e, []siteStep{
		{"workload address: the workload's rules", enforce.Ingress, syn(webIP, apiIP, 53000, 8081), retDrop, ReasonNoRule, "prod/api"},
		{"workload address egress", enforce.Egress, syn(apiIP, webIP, 53001, 5432), retDrop, ReasonNoRule, "prod/api"},
		{"other address of the prefix: the site's", enforce.Ingress, syn(webIP, "100.64.0.99", 53002, 8081), retAllow, ReasonAllowAll, "lab/wide"},
	})
}

// TestProgramSiteMonitor: a site in monitor mode passes what its rules
// deny, reported as would-deny under the site's name, and tracks it.
func TestProgramSiteMonitor(t *testing.T) {
	e := loadTest(t)
	v := siteView()
	v.Sites[1].Monitor = true
	if err := e.Apply(v); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		dir     enforce.Direction
		p       packet
		verdict enforce.Verdict // of the event; Dropped with want drop
		reason  Reason
	}{
		{"denied port passes", enforce.Ingress, syn(webIP, printerIP, 54000, 632), enforce.WouldDeny, ReasonNoRule},
		{"site host opens a denied flow", enforce.Egress, syn(printerIP, webIP, 54001, 8080), enforce.WouldDeny, ReasonNoRule},
		{"allowed port", enforce.Ingress, syn(webIP, printerIP, 54002, 631), enforce.Allowed, ReasonIdentity},
	}
	for _, s := range steps {
		if got := run(t, e, s.dir, s.p); got != retAllow {
			t.Fatalf("%s: got %s, want allow", s.name, verdictName(got))
		}
		select {
		case ev := <-e.Events():
			if ev.Verdict != s.verdict || ev.Reason != s.reason.String() || ev.Workload != "lab/printers" {
				t.Fatalf("%s: event %+v, want %s/%s for lab/printers", s.name, ev, s.verdict, s.reason)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event within 5s", s.name)
		}
	}
	if got := run(t, e, enforce.Egress, packet{src: printerIP, dst: webIP, proto: protoTCP, sport: 632, dport: 54000, flags: fSYN | fACK}); got != retAllow {
		t.Errorf("reply of the would-deny flow: got %s, want allow (tracked)", verdictName(got))
	}
	// lab/cams is enforced.
	if got := run(t, e, enforce.Egress, syn(camIP, printerIP, 54003, 9100)); got != retDrop {
		t.Errorf("enforce-mode site: got %s, want drop", verdictName(got))
	}
}

// TestAdoptPinsWithoutSites: an agent restarting over the pins of a
// version without the sites maps keeps the rules in force, pins the new
// maps, and enforces site rules from its first Apply.
func TestAdoptPinsWithoutSites(t *testing.T) {
	e1 := loadTest(t)
	if err := e1.Apply(testView()); err != nil {
		t.Fatal(err)
	}
	if got := run(t, e1, enforce.Ingress, syn(webIP, apiIP, 55000, 8080)); got != retAllow {
		t.Fatalf("before restart: %s", verdictName(got))
	}
	if err := e1.Close(); err != nil {
		t.Fatal(err)
	}
	// The previous layout had no sites maps.
	for _, m := range []string{bpf.LatchMapSitesA, bpf.LatchMapSitesB} {
		if err := os.Remove(filepath.Join(e1.pinDir, m)); err != nil {
			t.Fatal(err)
		}
	}
	e2, err := Load(e1.pinDir)
	if err != nil {
		t.Fatalf("Load over pins without sites maps: %v", err)
	}
	defer e2.Close()
	for _, m := range []string{bpf.LatchMapSitesA, bpf.LatchMapSitesB} {
		if _, err := os.Stat(filepath.Join(e1.pinDir, m)); err != nil {
			t.Errorf("map %s not pinned: %v", m, err)
		}
	}
	if got := run(t, e2, enforce.Ingress, syn(webIP, apiIP, 55001, 8080)); got != retAllow {
		t.Errorf("adopted rules: got %s, want allow", verdictName(got))
	}
	if got := run(t, e2, enforce.Ingress, packet{src: webIP, dst: apiIP, proto: protoTCP, sport: 55000, dport: 8080, flags: fACK}); got != retAllow {
		t.Errorf("adopted flow: got %s, want allow", verdictName(got))
	}
	if got := run(t, e2, enforce.Ingress, syn(webIP, printerIP, 55002, 631)); got != retDrop {
		t.Errorf("site host before a view with sites: got %s, want drop", verdictName(got))
	}
	if err := e2.Apply(siteView()); err != nil {
		t.Fatal(err)
	}
	if got := run(t, e2, enforce.Ingress, syn(webIP, printerIP, 55003, 631)); got != retAllow {
		t.Errorf("site rules after Apply: got %s, want allow", verdictName(got))
	}
	if got := run(t, e2, enforce.Ingress, syn(webIP, printerIP, 55004, 632)); got != retDrop {
		t.Errorf("site rules after Apply, denied port: got %s, want drop", verdictName(got))
	}
}
