package agent

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/node/route"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestAgentAdvertisesRoutes: the agent sends its advertised routes in its
// registration, and its status shows each with the status the coordinator
// answered.
func TestAgentAdvertisesRoutes(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Routes = []wire.Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}}
	startAgent(t, cfg)
	fc.nextStream(t)
	if diff := cmp.Diff(cfg.Routes, fc.lastRegister().Routes); diff != "" {
		t.Errorf("registered routes (-want +got):\n%s", diff)
	}
	want := []RouteStatus{{Prefix: "198.19.1.0/24", Status: wire.RouteApproved}, {Prefix: "198.19.2.0/24", SNAT: true, Status: wire.RouteAdvertised}}
	var st Status
	eventually(t, "routes in the status", func() bool {
		var err error
		st, err = QueryStatus(context.Background(), dir)
		return err == nil && cmp.Equal(want, st.Routes)
	})
}

// TestAgentSiteRoutesFollowTheView: a gateway turns forwarding on at
// start; each view's site prefixes (the peers' AllowedIPs outside the
// overlay) get kernel routes through the device, except one another
// owner holds, which is reported; its approved routes advertised with
// :snat are masqueraded; status, peers and metrics say so; a narrower
// view removes a route, and stopping removes the rest and the SNAT rules.
func TestAgentSiteRoutesFollowTheView(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.MetricsListen = freePort(t)
	cfg.Routes = []wire.Route{{Prefix: "198.19.1.0/24"}, {Prefix: "198.19.2.0/24", SNAT: true}, {Prefix: "198.19.3.0/24", SNAT: true}}
	connected := route.KernelRoute{Prefix: netip.MustParsePrefix("198.19.5.0/24"), Dev: "eth1", Protocol: 2}
	host := route.NewFake(connected)
	r := startAgentWith(t, cfg, func(d *deps) { d.routes = host })
	s := fc.nextStream(t)
	if on, _ := host.Forwarding(); !on {
		t.Errorf("a gateway started without turning IPv4 forwarding on")
	}

	gw2 := newKey(t)
	v1 := &view.View{Node: "n1", Version: 1,
		Peers:  []view.Peer{peer("gw-2", gw2, "198.18.0.3:51820", "100.64.0.3/32", "198.19.5.0/24", "198.19.6.0/24", "198.19.7.0/24")},
		Routes: []view.Route{{Prefix: view.MustPrefix("198.19.1.0/24"), Primary: true}, {Prefix: view.MustPrefix("198.19.2.0/24")}},
	}
	s.push(t, wire.StreamMessage{Full: v1})
	const dev = "latch-test"
	eventually(t, "the site routes", func() bool {
		return slices.Equal(host.LatchRoutes(dev), pfxs("198.19.6.0/24", "198.19.7.0/24"))
	})
	if got, want := host.SNAT(dev), pfxs("198.19.2.0/24"); !slices.Equal(got, want) {
		t.Errorf("SNAT = %v, want %v (198.19.3.0/24 is not approved, 198.19.1.0/24 has no snat)", got, want)
	}
	if !slices.Contains(host.Table(), connected) {
		t.Errorf("the connected route was replaced: %v", host.Table())
	}

	st, err := QueryStatus(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes := []RouteStatus{
		{Prefix: "198.19.1.0/24", Status: wire.RouteApproved, Approved: true, Primary: true},
		{Prefix: "198.19.2.0/24", SNAT: true, Status: wire.RouteAdvertised, Approved: true, SNATActive: true},
		{Prefix: "198.19.3.0/24", SNAT: true, Status: wire.RouteAdvertised},
	}
	if diff := cmp.Diff(wantRoutes, st.Routes); diff != "" {
		t.Errorf("status routes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&ForwardingStatus{Enabled: true, SetByAgent: true}, st.Forwarding); diff != "" {
		t.Errorf("status forwarding (-want +got):\n%s", diff)
	}
	wantSite := []SiteRoute{
		{Prefix: "198.19.5.0/24", Conflict: "proto kernel dev eth1"},
		{Prefix: "198.19.6.0/24", Installed: true},
		{Prefix: "198.19.7.0/24", Installed: true},
	}
	if diff := cmp.Diff(wantSite, st.SiteRoutes); diff != "" {
		t.Errorf("status site routes (-want +got):\n%s", diff)
	}
	ps, err := QueryPeers(context.Background(), dir)
	if err != nil || len(ps) != 1 {
		t.Fatalf("peers: %v, %v", ps, err)
	}
	wantPeer := []SiteRoute{{Prefix: "198.19.5.0/24", Conflict: "proto kernel dev eth1"}, {Prefix: "198.19.6.0/24", Installed: true}, {Prefix: "198.19.7.0/24", Installed: true}}
	if diff := cmp.Diff(wantPeer, ps[0].SiteRoutes); diff != "" {
		t.Errorf("peer site routes (-want +got):\n%s", diff)
	}
	body := scrape(t, cfg.MetricsListen)
	for _, line := range []string{
		`latch_node_route{prefix="198.19.1.0/24",state="primary"} 1`,
		`latch_node_route{prefix="198.19.2.0/24",state="snat"} 1`,
		`latch_node_route{prefix="198.19.3.0/24",state="advertised"} 1`,
		`latch_node_route{prefix="198.19.5.0/24",state="conflict"} 1`,
		`latch_node_route{prefix="198.19.6.0/24",state="installed"} 1`,
		`latch_node_ip_forward 1`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	if strings.Contains(body, `latch_node_route{prefix="198.19.3.0/24",state="approved"}`) {
		t.Errorf("metrics call an unapproved route approved")
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "latch_node_route") || p.Metric == "latch_node_ip_forward" {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}

	// A narrower view: its route goes, and SNAT follows the approval.
	v2 := &view.View{Node: "n1", Version: 2,
		Peers:  []view.Peer{peer("gw-2", gw2, "198.18.0.3:51820", "100.64.0.3/32", "198.19.6.0/24")},
		Routes: []view.Route{{Prefix: view.MustPrefix("198.19.3.0/24")}},
	}
	s.push(t, wire.StreamMessage{Full: v2})
	eventually(t, "the narrower site routes", func() bool {
		return slices.Equal(host.LatchRoutes(dev), pfxs("198.19.6.0/24")) && slices.Equal(host.SNAT(dev), pfxs("198.19.3.0/24"))
	})

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := host.Table(); !slices.Equal(got, []route.KernelRoute{connected}) {
		t.Errorf("after stopping, the table is %v, want only the connected route", got)
	}
	if got := host.SNAT(dev); got != nil {
		t.Errorf("after stopping, SNAT = %v", got)
	}
}

// TestAgentForwardingRefused: a gateway that cannot turn forwarding on
// does not start, and says why; a node that advertises nothing leaves
// forwarding alone.
func TestAgentForwardingRefused(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	cfg := testConfig(fc, filepath.Join(t.TempDir(), "state"), fc.token)
	cfg.Routes = []wire.Route{{Prefix: "198.19.1.0/24"}}
	host := route.NewFake()
	host.EnableErr = errors.New("open /proc/sys/net/ipv4/ip_forward: read-only file system")
	r := startAgentWith(t, cfg, func(d *deps) { d.routes = host })
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward") || !strings.Contains(err.Error(), "read-only file system") {
			t.Errorf("run = %v, want an error about net.ipv4.ip_forward with the cause", err)
		}
	case <-time.After(wait):
		t.Fatal("the agent started without forwarding")
	}

	fc2 := newFakeCoord(t, 20*time.Minute)
	host2 := route.NewFake()
	host2.EnableErr = errors.New("must not be called")
	startAgentWith(t, testConfig(fc2, filepath.Join(t.TempDir(), "state"), fc2.token), func(d *deps) { d.routes = host2 })
	fc2.nextStream(t)
	if on, _ := host2.Forwarding(); on {
		t.Errorf("a node without routes turned forwarding on")
	}
}

func pfxs(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}
