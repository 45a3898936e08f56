package state

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/wire"
)

// webToSite is the view engine's example policy over site eu: web may
// reach 198.19.1.0/24 on 5432 except 198.19.1.128/26.
var webToSite = filepath.Join("..", "..", "netmap", "testdata", "web-to-db.yaml")

// siteIPs returns the site part of gateway gw's AllowedIPs in node's
// view (those outside the overlay pool), or nil when gw is no peer.
func (e *env) siteIPs(node, gw string) []string {
	e.t.Helper()
	v := e.s.View(node)
	if v == nil {
		return nil
	}
	pool := netip.MustParsePrefix("100.64.0.0/10")
	for _, p := range v.Peers {
		if p.Node != gw {
			continue
		}
		out := []string{}
		for _, a := range p.AllowedIPs {
			if !pool.Overlaps(a.Netip()) {
				out = append(out, a.String())
			}
		}
		slices.Sort(out)
		return out
	}
	return nil
}

// webToDB sets up the view engine's example (netmap/testdata/web-to-db.yaml):
// node app hosting prod/web, which may reach 198.19.1.0/24 of site
// site-eu/db on 5432 except 198.19.1.128/26, and the given gateway nodes,
// enrolled without routes.
func (e *env) webToDB(gateways ...string) {
	e.t.Helper()
	ctx := context.Background()
	e.token("t", 8, grant.Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}})
	for _, n := range append([]string{"app"}, gateways...) {
		e.enroll("t", n)
	}
	e.register("app", inventory.Workload{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}})
	db := site("site-eu", "db", map[string]string{"role": "db"}, "198.19.1.0/24")
	db.Ports = []inventory.Port{{Port: 5432, Protocol: inventory.TCP}}
	if _, err := e.s.PutSite(ctx, "alice", db); err != nil {
		e.t.Fatal(err)
	}
	data, err := os.ReadFile(webToSite)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.s.ApplyPolicies(ctx, "alice", policy.File{Name: "web-to-db.yaml", Data: data}); err != nil {
		e.t.Fatal(err)
	}
}

// TestSiteViewsFollowTheStore: the coordinator's sites and approved
// routes reach the views: a node whose workload may reach a site gets the
// site's gateway as a peer with exactly the allowed CIDRs once the route
// is approved, loses it when the route is rejected, keeps it across a
// restart of the coordinator, and a gateway deleted and enrolled again
// under its name does not inherit its old approval.
func TestSiteViewsFollowTheStore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.webToDB("gw")
	if err := e.advertise("gw", wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if got := e.siteIPs("app", "gw"); got != nil {
		t.Fatalf("an unapproved route carries %v, want no gateway peer", got)
	}
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	want := []string{"198.19.1.0/25", "198.19.1.192/26"}
	if got := e.siteIPs("app", "gw"); !slices.Equal(got, want) {
		t.Fatalf("after approval app holds gw with site AllowedIPs %v, want %v", got, want)
	}
	if !e.peers("gw")["app"] {
		t.Errorf("the gateway's view lacks app, whose flows it carries: %v", e.peers("gw"))
	}

	// A restarted coordinator loads sites and approved routes from the store.
	e.open()
	if got := e.siteIPs("app", "gw"); !slices.Equal(got, want) {
		t.Fatalf("after a restart app holds gw with site AllowedIPs %v, want %v", got, want)
	}

	if _, err := e.s.RejectRoute(ctx, "bob", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if got := e.siteIPs("app", "gw"); got != nil {
		t.Fatalf("a rejected route still carries %v", got)
	}
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	// Withdrawn by the gateway: gone from the views.
	if err := e.advertise("gw"); err != nil {
		t.Fatal(err)
	}
	if got := e.siteIPs("app", "gw"); got != nil {
		t.Fatalf("a withdrawn route still carries %v", got)
	}
	if err := e.advertise("gw", wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteNode(ctx, "admin", "gw"); err != nil {
		t.Fatal(err)
	}
	e.enroll("t", "gw")
	if got := e.siteIPs("app", "gw"); got != nil {
		t.Fatalf("a gateway enrolled again under a deleted one's name inherits its approval: %v", got)
	}
	if err := e.advertise("gw", wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if got := e.siteIPs("app", "gw"); got != nil {
		t.Fatalf("a gateway enrolled again under a deleted one's name inherits its approval: %v", got)
	}

	// Deleting the site withdraws what it allowed.
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if got := e.siteIPs("app", "gw"); !slices.Equal(got, want) {
		t.Fatalf("after approval again: %v, want %v", got, want)
	}
	if err := e.s.DeleteSite(ctx, "alice", "site-eu", "db"); err != nil {
		t.Fatal(err)
	}
	if got := e.siteIPs("app", "gw"); len(got) != 0 {
		t.Fatalf("a deleted site still routed through gw: %v", got)
	}
}

// TestSiteFlows: a gateway reports flows of the site hosts it carries
// (an approved route of its holds the address) under the site's name; a
// node that is not their approved gateway cannot, and a record naming
// another site is refused.
func TestSiteFlows(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 3, grant.Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}})
	e.enroll("t", "app")
	e.enroll("t", "gw")
	e.enroll("t", "gw2")
	web := e.register("app", inventory.Workload{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}})[0]
	if _, err := e.s.PutSite(ctx, "alice", site("site-eu", "db", map[string]string{"role": "db"}, "198.19.1.0/24")); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{"gw", "gw2"} {
		if err := e.advertise(gw, wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	now := e.now
	rec := func(workload string) wire.FlowRecord {
		return wire.FlowRecord{Start: now, End: now, Direction: wire.DirIngress, Workload: workload,
			Src: web.IP, Dst: netip.MustParseAddr("198.19.1.10"), Protocol: "TCP", Port: 5432, Verdict: "allowed", Packets: 1}
	}
	res, err := e.s.IngestFlows(ctx, "gw", []wire.FlowRecord{rec("site-eu/db"), rec("")})
	if err != nil || res.Accepted != 2 {
		t.Fatalf("the approved gateway's site flows: %+v, %v", res, err)
	}
	for _, c := range []struct {
		node, workload, want string
	}{
		{"gw2", "site-eu/db", "nor a site address it is an approved gateway for"}, // route not approved
		{"app", "site-eu/db", "nor a site address it is an approved gateway for"},
		{"gw", "prod/web", `is site-eu/db, not "prod/web"`},
	} {
		res, err := e.s.IngestFlows(ctx, c.node, []wire.FlowRecord{rec(c.workload)})
		if err == nil && res.Accepted > 0 {
			t.Errorf("%s reporting %q for a site host was accepted", c.node, c.workload)
			continue
		}
		if msg := fmt.Sprint(err, res); !strings.Contains(msg, c.want) {
			t.Errorf("%s reporting %q: %s, want %q", c.node, c.workload, msg, c.want)
		}
	}
	fs, err := e.s.Flows(ctx, store.FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) == 0 {
		t.Fatal("no flows stored")
	}
	for _, f := range fs {
		if f.Dst.Namespace != "site-eu" || f.Dst.Workload != "db" || f.Dst.Node != "" || f.Src.Workload != "web" {
			t.Errorf("stored flow ends %+v → %+v, want prod/web → the site site-eu/db without a node", f.Src, f.Dst)
		}
	}
}
