package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
	"github.com/latchnet/latch/inventory"
)

// sitesPolicy is the policy of TestSites, over two sites:
//   - site a (198.19.1.0/24): db (198.19.1.0/25, role=db) and the office
//     LAN (198.19.1.128/25, role=office);
//   - site b (198.19.2.0/24): backup (role=backup).
//
// web reaches the database on 5432 (by labels on both sides) and all of
// backup on 9000; the laptop reaches backup on 9000 only in
// 198.19.2.0/24 except 198.19.2.128/25 (ipBlock); the office LAN reaches
// backup on 9000 (site to site). Nothing else: the baseline denies.
const sitesPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {region: a}}, podSelector: {matchLabels: {role: db}}}]
      ports: [{port: 5432}]
    - to: [{namespaceSelector: {matchLabels: {region: b}}}]
      ports: [{port: 9000}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: laptop, namespace: prod}
spec:
  podSelector: {matchLabels: {app: laptop}}
  policyTypes: [Ingress, Egress]
  egress:
    - to: [{ipBlock: {cidr: 198.19.2.0/24, except: [198.19.2.128/25]}}, {ipBlock: {cidr: 198.19.1.0/24}}]
      ports: [{port: 9000}, {port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: site-a}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{namespaceSelector: {matchLabels: {env: prod}}, podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: office, namespace: site-a}
spec:
  podSelector: {matchLabels: {role: office}}
  policyTypes: [Ingress, Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {region: b}}, podSelector: {matchLabels: {role: backup}}}]
      ports: [{port: 9000}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backup, namespace: site-b}
spec:
  podSelector: {matchLabels: {role: backup}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{namespaceSelector: {matchLabels: {env: prod}}}]
      ports: [{port: 9000}]
    - from: [{namespaceSelector: {matchLabels: {region: a}}, podSelector: {matchLabels: {role: office}}}]
      ports: [{port: 9000}]
`

// endpoint is one end of TestSites' truth table: a node or an agentless
// site host, the address it serves on and the ports it listens on.
type endpoint struct {
	name  string // node name or site host name
	key   string // workload or site key in the eval rows
	host  *netlab.Host
	addr  netip.Addr
	ports []uint16
	// lan is the site LAN of an agentless host: traffic between two hosts
	// of one LAN does not cross a gateway, so it is no part of the table.
	lan string
}

// sameLAN reports whether a and b are hosts of one site LAN.
func sameLAN(a, b endpoint) bool { return a.lan != "" && a.lan == b.lan }

// wgAllowedIPs reads, with `wg show`, the AllowedIPs n holds for each
// peer, by peer node name.
func (c *cluster) wgAllowedIPs(n *node) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Run(ctx, "wg", "show", n.iface, "allowed-ips")
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for name, id := range c.identities() {
		keys[id.key] = name
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name, ok := keys[f[0]]
		if !ok {
			name = "unknown:" + f[0]
		}
		ips := []string{}
		for _, p := range f[1:] {
			if p != "(none)" {
				ips = append(ips, p)
			}
		}
		sort.Strings(ips)
		got[name] = ips
	}
	return got, nil
}

// nodeID is what identities remembers of a node.
type nodeID struct{ key, ip string }

// identities returns the public key and overlay address of every running
// node by name, asking `latch status` only for state directories not seen
// before (a node's key and address belong to its state directory and
// survive its restarts; a node not answering is left out).
func (c *cluster) identities() map[string]nodeID {
	if c.ids == nil {
		c.ids = map[string]nodeID{}
	}
	out := map[string]nodeID{}
	for name, n := range c.nodes {
		id, ok := c.ids[n.state]
		if !ok {
			st, err := c.status(n)
			if err != nil || st.PublicKey == "" || st.IP == "" {
				continue
			}
			id = nodeID{key: st.PublicKey, ip: st.IP}
			c.ids[n.state] = id
		}
		out[name] = id
	}
	return out
}

// expectAllowedIPs waits until each node of want holds exactly the given
// peers with exactly the given AllowedIPs ("self" stands for the peer's
// own overlay address).
func (c *cluster) expectAllowedIPs(timeout time.Duration, want map[string]map[string][]string) {
	c.t.Helper()
	ids := c.identities()
	netlab.Eventually(c.t, timeout, func() error {
		var errs []string
		names := make([]string, 0, len(want))
		for name := range want {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			got, err := c.wgAllowedIPs(c.nodes[name])
			if err != nil {
				return err
			}
			exp := map[string][]string{}
			for peer, ps := range want[name] {
				e := []string{}
				for _, p := range ps {
					if p == "self" {
						p = ids[peer].ip + "/32"
					}
					e = append(e, p)
				}
				sort.Strings(e)
				exp[peer] = e
			}
			if fmt.Sprint(got) != fmt.Sprint(exp) {
				errs = append(errs, fmt.Sprintf("%s holds %v, want %v", name, got, exp))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("wg show allowed-ips:\n  %s", strings.Join(errs, "\n  "))
		}
		return nil
	})
}

// TestSites: two sites of agentless hosts behind two gateways (one with
// the eBPF enforcer, one with the userspace enforcer), nodes elsewhere, a
// policy over the sites by labels and by ipBlock. An unapproved route
// carries nothing. Once approved: every node holds exactly the gateway
// peers its allowed flows need, with exactly the allowed CIDRs (read with
// wg show) and a kernel route for each (read with ip route); the full
// truth table of real connects (nodes ↔ site hosts, site host ↔ site
// host through both gateways) equals `latch policy eval`; the gateway
// reports flows with the site's identity. Rejecting a route withdraws
// it from every node.
func TestSites(t *testing.T) {
	c := newCluster(t)
	lab := c.lab
	siteA := lab.Site("a", netip.MustParsePrefix("198.19.1.0/24"))
	siteB := lab.Site("b", netip.MustParsePrefix("198.19.2.0/24"))
	gwA := c.AddNodeWith("gwa", c.joinToken("infra", "role=gw"), "role=gw", "--advertise-routes", "198.19.1.0/24")
	gwB := c.AddNodeWith("gwb", c.joinToken("infra", "role=gw"), "role=gw", "--advertise-routes", "198.19.2.0/24", "--enforce", "userspace")
	siteA.Attach(gwA.host, netip.MustParseAddr("198.19.1.1"))
	siteB.Attach(gwB.host, netip.MustParseAddr("198.19.2.1"))
	web := c.AddNodeWith("web", c.joinToken("prod", "app=web"), "app=web")
	laptop := c.AddNodeWith("laptop", c.joinToken("prod", "app=laptop"), "app=laptop")
	ops := c.AddNodeWith("ops", c.joinToken("prod", "app=ops"), "app=ops")

	// Site hosts route the overlay and the other site through their
	// gateway, as the site's router would be told to.
	gwAddrA, gwAddrB := netip.MustParseAddr("198.19.1.1"), netip.MustParseAddr("198.19.2.1")
	db := siteA.Host("db", netip.MustParseAddr("198.19.1.10"), gwAddrA)
	office := siteA.Host("office", netip.MustParseAddr("198.19.1.200"), gwAddrA)
	bk := siteB.Host("bk", netip.MustParseAddr("198.19.2.10"), gwAddrB)
	bk2 := siteB.Host("bk2", netip.MustParseAddr("198.19.2.200"), gwAddrB)

	c.mustAdmin("admin", "namespace", "set", "site-a", "--labels", "region=a")
	c.mustAdmin("admin", "namespace", "set", "site-b", "--labels", "region=b")
	c.mustAdmin("admin", "namespace", "set", "prod", "--labels", "env=prod")
	c.mustAdmin("admin", "site", "set", "site-a/db", "--cidr", "198.19.1.0/25", "--labels", "role=db", "--port", "5432", "--port", "5433")
	c.mustAdmin("admin", "site", "set", "site-a/office", "--cidr", "198.19.1.128/25", "--labels", "role=office", "--port", "22")
	c.mustAdmin("admin", "site", "set", "site-b/backup", "--cidr", "198.19.2.0/24", "--labels", "role=backup", "--port", "9000", "--port", "9001")
	if _, err := c.applyPolicy(sitesPolicy); err != nil {
		t.Fatal(err)
	}

	eps := []endpoint{
		{name: "web", key: "prod/web", host: web.host, addr: c.overlayIP(web), ports: []uint16{8080}},
		{name: "laptop", key: "prod/laptop", host: laptop.host, addr: c.overlayIP(laptop), ports: []uint16{8080}},
		{name: "ops", key: "prod/ops", host: ops.host, addr: c.overlayIP(ops), ports: []uint16{8080}},
		{name: "db", key: "site-a/db", host: db, addr: netip.MustParseAddr("198.19.1.10"), ports: []uint16{5432, 5433}, lan: "a"},
		{name: "office", key: "site-a/office", host: office, addr: netip.MustParseAddr("198.19.1.200"), ports: []uint16{22}, lan: "a"},
		{name: "bk", key: "site-b/backup", host: bk, addr: netip.MustParseAddr("198.19.2.10"), ports: []uint16{9000, 9001}, lan: "b"},
		{name: "bk2", key: "site-b/backup", host: bk2, addr: netip.MustParseAddr("198.19.2.200"), ports: []uint16{9000, 9001}, lan: "b"},
	}
	for _, e := range eps {
		for _, p := range e.ports {
			e.host.ServeTCP(t, netip.AddrPortFrom(e.addr, p))
		}
	}

	// Unapproved routes carry nothing: no node holds a gateway.
	none := map[string]map[string][]string{"web": {}, "laptop": {}, "ops": {}, "gwa": {}, "gwb": {}}
	c.expectAllowedIPs(15*time.Second, none)
	if err := web.host.DialTCP(netip.MustParseAddrPort("198.19.1.10:5432"), 500*time.Millisecond); err == nil {
		t.Errorf("web reached the database through an unapproved route")
	}

	c.mustAdmin("admin", "route", "approve", "gwa", "198.19.1.0/24")
	c.mustAdmin("admin", "route", "approve", "gwb", "198.19.2.0/24")
	c.expectAllowedIPs(15*time.Second, map[string]map[string][]string{
		"web":    {"gwa": {"198.19.1.0/25"}, "gwb": {"198.19.2.0/24"}},
		"laptop": {"gwb": {"198.19.2.0/25"}},
		"ops":    {},
		"gwa":    {"web": {"self"}, "gwb": {"198.19.2.0/24"}},
		"gwb":    {"web": {"self"}, "laptop": {"self"}, "gwa": {"198.19.1.128/25"}},
	})

	// Each node routes exactly those CIDRs through its WireGuard device
	// (read with ip route: Latch's routes carry protocol 76).
	for n, want := range map[*node][]string{web: {"198.19.1.0/25", "198.19.2.0/24"}, laptop: {"198.19.2.0/25"}, ops: {}, gwA: {"198.19.2.0/24"}, gwB: {"198.19.1.128/25"}} {
		netlab.Eventually(t, 10*time.Second, func() error {
			out, err := n.host.Run(context.Background(), "ip", "-4", "route", "show", "proto", "76")
			if err != nil {
				return err
			}
			got := []string{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(line); len(f) >= 3 && f[1] == "dev" && f[2] == n.iface {
					got = append(got, f[0])
				} else if line != "" {
					return fmt.Errorf("%s: unexpected route %q", n.name, line)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s routes %v through %s, want %v", n.name, got, n.iface, want)
			}
			return nil
		})
	}

	// The truth table: every (source, destination, port) by real connects,
	// against `latch policy eval` over the same inventory and policy.
	inv := inventory.Inventory{
		Namespaces: []inventory.Namespace{
			{Name: "prod", Labels: map[string]string{"env": "prod"}},
			{Name: "infra"},
			{Name: "site-a", Labels: map[string]string{"region": "a"}},
			{Name: "site-b", Labels: map[string]string{"region": "b"}},
		},
		Sites: []inventory.Site{
			{Name: "db", Namespace: "site-a", Labels: map[string]string{"role": "db"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/25")},
				Ports: []inventory.Port{{Port: 5432, Protocol: inventory.TCP}, {Port: 5433, Protocol: inventory.TCP}}},
			{Name: "office", Namespace: "site-a", Labels: map[string]string{"role": "office"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.128/25")},
				Ports: []inventory.Port{{Port: 22, Protocol: inventory.TCP}}},
			{Name: "backup", Namespace: "site-b", Labels: map[string]string{"role": "backup"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.2.0/24")},
				Ports: []inventory.Port{{Port: 9000, Protocol: inventory.TCP}, {Port: 9001, Protocol: inventory.TCP}}},
		},
	}
	for _, e := range eps[:3] {
		inv.Workloads = append(inv.Workloads, inventory.Workload{Name: e.name, Namespace: "prod", Labels: map[string]string{"app": e.name},
			IP: e.addr, Ports: []inventory.Port{{Port: 8080, Protocol: inventory.TCP}}})
	}
	want, err := c.siteTruth(inv, sitesPolicy, eps)
	if err != nil {
		t.Fatal(err)
	}
	if got := dialAll(eps); !slices.Equal(got, want) {
		t.Errorf("connects differ from latch policy eval:\n%s", diffLines(want, got))
	}
	for _, must := range []string{"web→db:5432", "web→bk2:9000", "laptop→bk:9000", "office→bk:9000", "office→bk2:9000"} {
		if !slices.Contains(want, must) {
			t.Errorf("latch policy eval does not allow %s, which the policy does", must)
		}
	}

	// The gateway reports the flow through it with the site's identity.
	netlab.Eventually(t, 30*time.Second, func() error {
		fs, err := c.flows("--namespace", "site-a")
		if err != nil {
			return err
		}
		for _, f := range fs {
			if f.Reporter == "gwa" && f.Dst.Namespace == "site-a" && f.Dst.Workload == "db" && f.Dst.IP == netip.MustParseAddr("198.19.1.10") && f.Port == 5432 {
				return nil
			}
		}
		return fmt.Errorf("gwa reports no flow to site-a/db:5432 yet: %+v", fs)
	})

	// Rejecting an approved route withdraws it from every node.
	start := time.Now()
	c.mustAdmin("admin", "route", "reject", "gwb", "198.19.2.0/24")
	gwbKey := c.identities()["gwb"].key
	netlab.Eventually(t, 15*time.Second, func() error {
		for _, n := range []*node{web, laptop} {
			out, err := n.host.Run(context.Background(), "wg", "show", n.iface, "peers")
			if err != nil {
				return err
			}
			if strings.Contains(out, gwbKey) {
				return fmt.Errorf("%s still holds gwb", n.name)
			}
		}
		return nil
	})
	t.Logf("route rejected: gone from web's and laptop's WireGuard (wg show) %v after the command returned", time.Since(start).Round(time.Millisecond))
	c.expectAllowedIPs(15*time.Second, map[string]map[string][]string{
		"web":    {"gwa": {"198.19.1.0/25"}},
		"laptop": {},
		"ops":    {},
		"gwa":    {"web": {"self"}},
		"gwb":    {},
	})
	if err := web.host.DialTCP(netip.MustParseAddrPort("198.19.2.10:9000"), 500*time.Millisecond); err == nil {
		t.Errorf("web reached site b after its route was rejected")
	}
}

// siteTruth returns the connects `latch policy eval` allows between the
// endpoints, as "src→dst:port", sorted.
func (c *cluster) siteTruth(inv inventory.Inventory, policyDoc string, eps []endpoint) ([]string, error) {
	res, err := c.policyEvalSites(inv, policyDoc)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range eps {
		for _, d := range eps {
			if s.name == d.name || sameLAN(s, d) {
				continue
			}
			for _, p := range d.ports {
				if res.allows(s, d, p) {
					out = append(out, fmt.Sprintf("%s→%s:%d", s.name, d.name, p))
				}
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// dialAll connects from every endpoint to every port of every other one,
// concurrently, and returns those that completed, as "src→dst:port",
// sorted. A connect that does not complete within 2 s counts as refused.
func dialAll(eps []endpoint) []string {
	var mu sync.Mutex
	var out []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, s := range eps {
		for _, d := range eps {
			if s.name == d.name || sameLAN(s, d) {
				continue
			}
			for _, p := range d.ports {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					if s.host.DialTCP(netip.AddrPortFrom(d.addr, p), 2*time.Second) == nil {
						mu.Lock()
						out = append(out, fmt.Sprintf("%s→%s:%d", s.name, d.name, p))
						mu.Unlock()
					}
				}()
			}
		}
	}
	wg.Wait()
	sort.Strings(out)
	return out
}

// diffLines lists what is only in want (-) and only in got (+).
func diffLines(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			fmt.Fprintf(&b, "  - %s (allowed by eval, refused)\n", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			fmt.Fprintf(&b, "  + %s (refused by eval, connected)\n", g)
		}
	}
	return b.String()
}

// evalResults are the rows of `latch policy eval -o json`.
type evalResults struct {
	Results     []evalRow `json:"results"`
	SiteResults []struct {
		evalRow
		Verdict string `json:"verdict"`
		Allowed []struct {
			From []netip.Prefix `json:"from"`
			To   []netip.Prefix `json:"to"`
		} `json:"allowed"`
	} `json:"siteResults"`
}

// allows reports whether the rows allow s to connect to d on TCP port p.
func (r *evalResults) allows(s, d endpoint, p uint16) bool {
	for _, row := range r.Results {
		if row.From == s.key && row.To == d.key && row.Port == p && row.Protocol == inventory.TCP {
			return row.Allowed
		}
	}
	in := func(ps []netip.Prefix, a netip.Addr) bool {
		return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	for _, row := range r.SiteResults {
		if row.From == s.key && row.To == d.key && row.Port == p && row.Protocol == inventory.TCP {
			for _, a := range row.Allowed {
				if in(a.From, s.addr) && in(a.To, d.addr) {
					return true
				}
			}
			return false
		}
	}
	return false
}

// policyEvalSites runs `latch policy eval -o json` over inv and the
// policy document, sites included.
func (c *cluster) policyEvalSites(inv inventory.Inventory, policyDoc string) (*evalResults, error) {
	out, err := c.policyEvalJSON(inv, policyDoc)
	if err != nil {
		return nil, err
	}
	var res evalResults
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("latch policy eval: %v: %s", err, out)
	}
	return &res, nil
}

const failoverPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cl, namespace: prod}
spec:
  podSelector: {matchLabels: {app: cl}}
  policyTypes: [Ingress, Egress]
  egress:
    - to: [{namespaceSelector: {matchLabels: {region: c}}}]
      ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: app, namespace: site-c}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{namespaceSelector: {matchLabels: {env: prod}}, podSelector: {matchLabels: {app: cl}}}]
      ports: [{port: 80}]
`

// TestGatewayFailover: two gateways advertise one site's prefix (with
// SNAT, so site hosts answer whichever gateway carried the flow). A
// client opens a connection to a site host every 5 ms while the
// primary gateway's agent is killed with SIGKILL; the client moves to the
// other gateway and connects again. The outage (kill to the first
// connect that completes after it) is logged; LATCH_FAILOVER_KILLS=N
// repeats the kill N times (the killed gateway comes back and takes over
// again in between), which `make bench-failover` uses. The test fails
// only if traffic does not come back.
func TestGatewayFailover(t *testing.T) {
	kills := 1
	if v := os.Getenv("LATCH_FAILOVER_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("LATCH_FAILOVER_KILLS=%q: want a number from 1 to 100", v)
		}
		kills = n
	}
	c := newCluster(t)
	site := c.lab.Site("c", netip.MustParsePrefix("198.19.3.0/24"))
	gw1 := c.AddNodeWith("gw1", c.joinToken("infra", "role=gw"), "role=gw", "--advertise-routes", "198.19.3.0/24:snat")
	gw2 := c.AddNodeWith("gw2", c.joinToken("infra", "role=gw"), "role=gw", "--advertise-routes", "198.19.3.0/24:snat")
	site.Attach(gw1.host, netip.MustParseAddr("198.19.3.1"))
	site.Attach(gw2.host, netip.MustParseAddr("198.19.3.2"))
	app := site.Host("app", netip.MustParseAddr("198.19.3.10"), netip.Addr{}) // SNAT: replies stay on the LAN
	target := app.ServeTCP(t, netip.MustParseAddrPort("198.19.3.10:80"))
	cl := c.AddNodeWith("cl", c.joinToken("prod", "app=cl"), "app=cl")
	c.mustAdmin("admin", "namespace", "set", "prod", "--labels", "env=prod")
	c.mustAdmin("admin", "namespace", "set", "site-c", "--labels", "region=c")
	c.mustAdmin("admin", "site", "set", "site-c/app", "--cidr", "198.19.3.0/24", "--port", "80")
	if _, err := c.applyPolicy(failoverPolicy); err != nil {
		t.Fatal(err)
	}
	c.mustAdmin("admin", "route", "approve", "gw1", "198.19.3.0/24")
	c.mustAdmin("admin", "route", "approve", "gw2", "198.19.3.0/24")
	// The client holds the standby gateway too, without AllowedIPs, so
	// that their tunnel is up when it takes over; a killed gateway is no
	// standby.
	primary := func(gw, standby string) map[string]map[string][]string {
		want := map[string]map[string][]string{"cl": {gw: {"198.19.3.0/24"}}, gw: {"cl": {"self"}}}
		if standby != "" {
			want["cl"][standby] = []string{}
			want[standby] = map[string][]string{"cl": {}}
		}
		return want
	}
	c.expectAllowedIPs(20*time.Second, primary("gw1", "gw2"))
	netlab.Eventually(t, 20*time.Second, func() error { return cl.host.DialTCP(target, time.Second) })

	var outages []time.Duration
	for i := range kills {
		// The lowest name is primary whenever it is up, so every kill
		// hits gw1 while it is in charge.
		victim := gw1
		out, ok := measureFailover(t, cl.host, target, func() {
			victim.proc.Kill(syscall.SIGKILL)
		})
		if !ok {
			t.Fatalf("kill %d of %s: the client never connected again (probes: %s)", i+1, victim.name, out)
		}
		outages = append(outages, out)
		t.Logf("kill %d of the primary gateway %s: outage %v", i+1, victim.name, out.Round(time.Millisecond))
		victim.proc.Wait(10 * time.Second)
		c.expectAllowedIPs(20*time.Second, primary("gw2", ""))
		// The killed gateway comes back and, lowest name, is primary again.
		c.restart(victim)
		c.WaitConnected(victim, 20*time.Second)
		c.expectAllowedIPs(20*time.Second, primary("gw1", "gw2"))
		netlab.Eventually(t, 20*time.Second, func() error { return cl.host.DialTCP(target, time.Second) })
	}
	if kills > 1 {
		s := slices.Clone(outages)
		slices.Sort(s)
		t.Logf("failover over %d kills: median %v, max %v", kills, s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	}
}

// measureFailover opens a new TCP connection from h to target every
// 20 ms (each with a 2 s timeout, at most 64 at once), calls kill once a
// first one has passed, and returns the time from kill to the earliest
// completion of a connection opened after it. ok is false when none
// completes within 30 s. A connection whose SYN was lost completes only
// after TCP's retransmission, later than one opened after the failover,
// so the earliest completion is the end of the outage, to within one
// probe interval and a round trip.
func measureFailover(t *testing.T, h *netlab.Host, target netip.AddrPort, kill func()) (time.Duration, bool) {
	t.Helper()
	if err := h.DialTCP(target, time.Second); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	killed := time.Now()
	kill()
	var (
		mu    sync.Mutex
		first time.Time
		wg    sync.WaitGroup
	)
	done := func() bool { mu.Lock(); defer mu.Unlock(); return !first.IsZero() }
	sem := make(chan struct{}, 64)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := killed.Add(30 * time.Second); !done() && time.Now().Before(deadline); <-tick.C {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if h.DialTCP(target, 2*time.Second) == nil {
				at := time.Now()
				mu.Lock()
				if first.IsZero() || at.Before(first) {
					first = at
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first.IsZero() {
		return 30 * time.Second, false
	}
	return first.Sub(killed), true
}
