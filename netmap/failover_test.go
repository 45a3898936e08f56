package netmap

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/view"
)

func pfxs(ss ...string) []view.Prefix {
	var out []view.Prefix
	for _, s := range ss {
		out = append(out, view.MustPrefix(s))
	}
	return out
}

func testNode(name string, i byte) inventory.Node {
	return inventory.Node{Name: name, Namespace: "infra", IP: netip.AddrFrom4([4]byte{100, 64, i, 1}), PublicKey: "K" + name,
		Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, i}), 51820)}}
}

func readPolicies(t *testing.T, name string) []*policy.Policy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := policy.Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// peerIPs returns the AllowedIPs of each peer of a node's view, by name.
func peerIPs(v *view.View) map[string][]view.Prefix {
	out := map[string][]view.Prefix{}
	for _, p := range v.Peers {
		out[p.Node] = p.AllowedIPs
	}
	return out
}

func siteCIDRsOf(v *view.View) map[string][]view.Prefix {
	out := map[string][]view.Prefix{}
	for _, s := range v.Sites {
		out[s.Site] = s.CIDRs
	}
	return out
}

var dbSite = inventory.Site{Name: "db", Namespace: "site-eu", Labels: map[string]string{"role": "db"},
	CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}, Ports: []inventory.Port{{Port: 5432, Protocol: inventory.TCP}}}

// TestViewRoutes: a gateway's view names its approved routes in prefix
// order, primary where it is the primary gateway for some site address
// in them; other nodes have none.
func TestViewRoutes(t *testing.T) {
	app := inventory.Site{Name: "app", Namespace: "site-eu", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.2.0/24")}}
	e, err := New(Input{
		Namespaces: []inventory.Namespace{{Name: "infra"}, {Name: "site-eu"}},
		Nodes:      []inventory.Node{testNode("gw-a", 1), testNode("gw-b", 2), testNode("other", 3)},
		Baseline:   policy.BaselineDeny,
		Sites:      []inventory.Site{dbSite, app},
		Routes: map[string][]netip.Prefix{
			"gw-a": {netip.MustParsePrefix("198.19.1.0/24")},
			// Listed out of order; 198.19.0.0/16 holds app's addresses,
			// 203.0.113.0/24 no site's.
			"gw-b": {netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.19.0.0/16")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]view.Route{
		"gw-a": {{Prefix: view.MustPrefix("198.19.1.0/24"), Primary: true}},
		"gw-b": {{Prefix: view.MustPrefix("198.19.0.0/16"), Primary: true}, {Prefix: view.MustPrefix("203.0.113.0/24")}},
	}
	check := func(when string) {
		t.Helper()
		for _, n := range e.Nodes() {
			if d := cmp.Diff(want[n], e.View(n).Routes); d != "" {
				t.Fatalf("%s: routes of %s (-want +got):\n%s", when, n, d)
			}
		}
	}
	check("at start")
	// Without the app site gw-b is primary for nothing.
	changed, err := e.DeleteSite(app.Key())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"gw-b"}, changed); d != "" {
		t.Fatalf("changed views (-want +got):\n%s", d)
	}
	want["gw-b"][0].Primary = false
	check("without site app")
	// Routes show without any site, and go with the approval.
	if _, err := e.DeleteSite(dbSite.Key()); err != nil {
		t.Fatal(err)
	}
	want["gw-a"][0].Primary = false
	check("without sites")
	if _, err := e.SetApprovedRoutes("gw-b", nil); err != nil {
		t.Fatal(err)
	}
	delete(want, "gw-b")
	check("after gw-b's routes are rejected")
}

// TestGatewayFailover: the primary gateway of a site address is the
// lowest-named online gateway with a route containing it. Marking it
// offline moves the AllowedIPs to the next gateway on every client, the
// site rule tables and Primary to it; back online, everything returns.
func TestGatewayFailover(t *testing.T) {
	in := Input{
		Namespaces: []inventory.Namespace{{Name: "prod"}, {Name: "infra"}, {Name: "site-eu"}},
		Nodes:      []inventory.Node{testNode("app", 1), testNode("gw-a", 2), testNode("gw-b", 3)},
		Workloads: []inventory.Workload{
			{Name: "web", Namespace: "prod", Node: "app", Labels: map[string]string{"app": "web"}, IP: netip.MustParseAddr("100.64.1.10")},
		},
		Policies: readPolicies(t, "web-to-db.yaml"),
		Baseline: policy.BaselineDeny,
		Sites:    []inventory.Site{dbSite},
		Routes: map[string][]netip.Prefix{
			"gw-a": {netip.MustParsePrefix("198.19.1.0/24")},
			"gw-b": {netip.MustParsePrefix("198.19.0.0/16")},
		},
	}
	e, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	dbIPs := pfxs("198.19.1.0/25", "198.19.1.192/26")
	// state checks the views when primary is the primary gateway and
	// other the standby, online or not. An online standby is a peer of
	// the client without AllowedIPs (and the client of it), so that their
	// tunnel is up when it takes over.
	state := func(when, primary, standby string, standbyOnline bool) {
		t.Helper()
		wantApp := map[string][]view.Prefix{primary: dbIPs}
		wantStandby := map[string][]view.Prefix{}
		if standbyOnline {
			wantApp[standby] = nil
			wantStandby["app"] = nil
		}
		if d := cmp.Diff(wantApp, peerIPs(e.View("app"))); d != "" {
			t.Fatalf("%s: app's peers (-want +got):\n%s", when, d)
		}
		if d := cmp.Diff(map[string][]view.Prefix{"app": pfxs("100.64.1.10/32")}, peerIPs(e.View(primary))); d != "" {
			t.Fatalf("%s: %s's peers (-want +got):\n%s", when, primary, d)
		}
		if d := cmp.Diff(map[string][]view.Prefix{"site-eu/db": pfxs("198.19.1.0/24")}, siteCIDRsOf(e.View(primary))); d != "" {
			t.Fatalf("%s: %s's sites (-want +got):\n%s", when, primary, d)
		}
		if r := e.View(primary).Routes; len(r) != 1 || !r[0].Primary {
			t.Fatalf("%s: %s's route is not primary: %+v", when, primary, e.View(primary).Routes)
		}
		sv := e.View(standby)
		if d := cmp.Diff(wantStandby, peerIPs(sv)); d != "" {
			t.Fatalf("%s: the standby %s's peers (-want +got):\n%s", when, standby, d)
		}
		if len(sv.Sites) != 0 || len(sv.Routes) != 1 || sv.Routes[0].Primary {
			t.Fatalf("%s: the standby %s holds sites %+v, routes %+v", when, standby, sv.Sites, sv.Routes)
		}
	}
	state("at start", "gw-a", "gw-b", true)
	set := func(node string, online bool, want []string) {
		t.Helper()
		if d := cmp.Diff(want, e.SetGatewayOnline(node, online)); d != "" {
			t.Fatalf("SetGatewayOnline(%s, %v): changed views (-want +got):\n%s", node, online, d)
		}
	}
	set("gw-a", false, []string{"app", "gw-a", "gw-b"})
	state("gw-a offline", "gw-b", "gw-a", false)
	set("gw-a", false, nil) // again: nothing changes
	set("gw-a", true, []string{"app", "gw-a", "gw-b"})
	state("gw-a back", "gw-a", "gw-b", true)
	set("gw-b", false, []string{"app", "gw-b"}) // the standby: it and its client part
	state("gw-b offline", "gw-a", "gw-b", false)
	// With every gateway of an address offline, the lowest-named keeps
	// it: taking the gateway away would cut the site off for certain.
	set("gw-a", false, nil)
	state("both offline", "gw-a", "gw-b", false)
	set("gw-b", true, []string{"app", "gw-a", "gw-b"})
	state("gw-b back, gw-a still offline", "gw-b", "gw-a", false)
	// A node the engine does not hold may be marked; it takes effect
	// when it joins.
	set("gw-0", false, nil)
	n := testNode("gw-0", 9)
	if _, err := e.UpsertNode(n); err != nil {
		t.Fatal(err)
	}
	if _, err := e.SetApprovedRoutes("gw-0", []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	state("gw-0 joined offline", "gw-b", "gw-0", false)
}

// TestSiteToSite: a flow allowed between hosts of two sites behind
// different gateways makes the gateways peers, each with the other
// site's allowed addresses; the sites' rule tables name each other by
// CIDR; the pair follows a failover; two sites behind one gateway add
// no peer.
func TestSiteToSite(t *testing.T) {
	us := inventory.Site{Name: "app", Namespace: "site-us", Labels: map[string]string{"role": "app"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.2.0/24")}}
	in := Input{
		Namespaces: []inventory.Namespace{{Name: "infra"}, {Name: "site-eu"}, {Name: "site-us"}},
		Nodes:      []inventory.Node{testNode("gw-eu", 1), testNode("gw-us", 2), testNode("gw-z", 3), testNode("other", 4)},
		Policies:   readPolicies(t, "site-to-site.yaml"),
		Baseline:   policy.BaselineDeny,
		Sites:      []inventory.Site{dbSite, us},
		Routes: map[string][]netip.Prefix{
			"gw-eu": {netip.MustParsePrefix("198.19.1.0/24")},
			"gw-us": {netip.MustParsePrefix("198.19.2.0/24")},
			"gw-z":  {netip.MustParsePrefix("198.19.1.0/24")},
		},
	}
	e, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	usIPs := pfxs("198.19.2.0/24")
	euIPs := pfxs("198.19.1.0/25", "198.19.1.192/26")
	// pair checks the views with eu as site eu's primary gateway and
	// standby as its online standby ("" for none), which gw-us holds
	// without AllowedIPs.
	pair := func(when, eu, standby string) {
		t.Helper()
		want := map[string]map[string][]view.Prefix{
			eu:      {"gw-us": usIPs},
			"gw-us": {eu: euIPs},
		}
		if standby != "" {
			want["gw-us"][standby] = nil
			want[standby] = map[string][]view.Prefix{"gw-us": nil}
		}
		for _, n := range e.Nodes() {
			w := want[n]
			if w == nil {
				w = map[string][]view.Prefix{}
			}
			if d := cmp.Diff(w, peerIPs(e.View(n))); d != "" {
				t.Fatalf("%s: %s's peers (-want +got):\n%s", when, n, d)
			}
		}
		// The rule tables name the other site by CIDR.
		var db, app *view.SiteRules
		for i, s := range e.View(eu).Sites {
			if s.Site == "site-eu/db" {
				db = &e.View(eu).Sites[i]
			}
		}
		for i, s := range e.View("gw-us").Sites {
			if s.Site == "site-us/app" {
				app = &e.View("gw-us").Sites[i]
			}
		}
		if db == nil || app == nil {
			t.Fatalf("%s: site rules missing: %s has %+v, gw-us has %+v", when, eu, e.View(eu).Sites, e.View("gw-us").Sites)
		}
		for _, c := range []struct {
			rules *view.Rules
			addr  string
			port  uint16
			want  bool
		}{
			{&db.Ingress, "198.19.2.7", 5432, true},
			{&db.Ingress, "198.19.2.7", 5433, false},
			{&db.Ingress, "198.19.3.7", 5432, false},
			{&app.Egress, "198.19.1.5", 5432, true},
			{&app.Egress, "198.19.1.200", 5432, true},
			{&app.Egress, "198.19.1.130", 5432, false},
			{&app.Egress, "198.19.1.5", 22, false},
		} {
			if got := c.rules.Allows(view.IdentityUnknown, view.MustAddr(c.addr), inventory.TCP, c.port); got != c.want {
				t.Fatalf("%s: rules allow %s:%d = %v, want %v: %+v", when, c.addr, c.port, got, c.want, *c.rules)
			}
		}
	}
	pair("at start", "gw-eu", "gw-z")
	if d := cmp.Diff([]string{"gw-eu", "gw-us", "gw-z"}, e.SetGatewayOnline("gw-eu", false)); d != "" {
		t.Fatalf("changed views (-want +got):\n%s", d)
	}
	pair("gw-eu offline", "gw-z", "")
	e.SetGatewayOnline("gw-eu", true)
	pair("gw-eu back", "gw-eu", "gw-z")

	// One gateway for both sites: traffic between them does not cross
	// the tunnel, no gateway is anyone's peer.
	if _, err := e.SetApprovedRoutes("gw-eu", []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24"), netip.MustParsePrefix("198.19.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	for _, n := range e.Nodes() {
		if p := e.View(n).Peers; len(p) != 0 {
			t.Fatalf("node %s holds peers %+v with both sites behind gw-eu", n, p)
		}
	}
	if d := cmp.Diff(map[string][]view.Prefix{"site-eu/db": pfxs("198.19.1.0/24"), "site-us/app": pfxs("198.19.2.0/24")}, siteCIDRsOf(e.View("gw-eu"))); d != "" {
		t.Fatalf("gw-eu's sites (-want +got):\n%s", d)
	}
}
