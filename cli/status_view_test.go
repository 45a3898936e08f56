package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/node/agent"
	"github.com/latchnet/latch/node/enforce"
)

// TestPrintStatusViewNotLoaded: `latch status` says when the received view
// is not the one in force, and why.
func TestPrintStatusViewNotLoaded(t *testing.T) {
	var b strings.Builder
	printStatus(&b, agent.Status{ViewVersion: 7, EnforcedVersion: 7})
	if !strings.Contains(b.String(), "View version:  7\n") {
		t.Errorf("a loaded view:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, agent.Status{ViewVersion: 8, EnforcedVersion: 7, ViewError: "eBPF enforcer: view does not fit the eBPF maps"})
	if want := "8 received, 7 in force (not loaded: eBPF enforcer: view does not fit the eBPF maps; its new peers wait)"; !strings.Contains(b.String(), want) {
		t.Errorf("a view not loaded: want %q in\n%s", want, b.String())
	}
}

// TestPrintStatusEnforcer: `latch status` shows the counters each enforcer
// keeps, and what it does with a workload's cgroup.
func TestPrintStatusEnforcer(t *testing.T) {
	ws := []agent.WorkloadStatus{{Name: "api", Namespace: "prod", IP: "100.64.0.5", Cgroup: "/sys/fs/cgroup/api.service"}}
	for _, tc := range []struct {
		mode        string
		enforcement *agent.EnforceStatus
		want        []string
	}{
		{agent.EnforceEBPF, &agent.EnforceStatus{Stats: enforce.Stats{ViewVersion: 3, Passed: 5, Dropped: 2}, Events: 4},
			[]string{"Enforcement:        view 3, 5 packets passed, 2 dropped, 4 events (0 lost)\n",
				"Workload prod/api:  100.64.0.5 cgroup /sys/fs/cgroup/api.service (eBPF: its sockets use this address, denied connects are refused)\n"}},
		{agent.EnforceUserspace, &agent.EnforceStatus{Stats: enforce.Stats{ViewVersion: 3, Flows: new(6), Passed: 5}},
			[]string{"view 3, 6 flows tracked, 5 packets passed, 0 dropped, 0 events (0 lost)\n",
				"cgroup /sys/fs/cgroup/api.service (not enforced: the userspace enforcer knows no cgroups; --enforce ebpf does)\n"}},
		{agent.EnforceOff, nil, []string{"cgroup /sys/fs/cgroup/api.service (not enforced: --enforce off)\n"}},
	} {
		var b strings.Builder
		printStatus(&b, agent.Status{Enforce: tc.mode, Enforcement: tc.enforcement, Workloads: ws})
		for _, want := range tc.want {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: want %q in\n%s", tc.mode, want, b.String())
			}
		}
	}
}

// TestPrintStatusRoutes: `latch status` on a gateway shows each advertised
// route with its status as the coordinator last answered.
func TestPrintStatusRoutes(t *testing.T) {
	var b strings.Builder
	printStatus(&b, agent.Status{Name: "gw-1", Routes: []agent.RouteStatus{
		{Prefix: "198.19.1.0/24", Status: "approved"},
		{Prefix: "198.19.2.0/24", SNAT: true, Status: "advertised"},
		{Prefix: "198.19.3.0/24"},
	}})
	for _, want := range []string{
		"Route 198.19.1.0/24:  approved (as of the last registration)\n",
		"Route 198.19.2.0/24:  advertised (as of the last registration; waits for an admin: latch admin route approve gw-1 198.19.2.0/24), snat\n",
		"Route 198.19.3.0/24:  advertised, not registered yet\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("want %q in\n%s", want, b.String())
		}
	}
}

// TestPrintStatusGateway: `latch status` shows a route in force with
// whether the node is primary and SNAT applies, the forwarding switch,
// and the site routes through the device, a conflict among them.
func TestPrintStatusGateway(t *testing.T) {
	var b strings.Builder
	printStatus(&b, agent.Status{Name: "gw-1", Iface: "latch0",
		Routes: []agent.RouteStatus{
			{Prefix: "198.19.1.0/24", Status: "approved", Approved: true, Primary: true, SNAT: true, SNATActive: true},
			{Prefix: "198.19.2.0/24", Status: "approved", Approved: true, SNAT: true},
		},
		Forwarding: &agent.ForwardingStatus{Enabled: true, SetByAgent: true},
		SiteRoutes: []agent.SiteRoute{
			{Prefix: "198.19.5.0/24", Conflict: "proto kernel dev eth1"},
			{Prefix: "198.19.6.0/24", Installed: true},
		},
		RouteError: "setting the SNAT rules of latch0: no nf_tables",
	})
	for _, want := range []string{
		"Route 198.19.1.0/24:       approved, in force, primary gateway, snat: overlay sources masqueraded to this gateway's address\n",
		"Route 198.19.2.0/24:       approved, in force, snat NOT applied (see Route error)\n",
		"IPv4 forwarding:           on (set by the agent when it started)\n",
		"Site route 198.19.5.0/24:  not routed: the kernel has a route of another owner for it (proto kernel dev eth1), left in place; remove it to let the overlay carry the prefix\n",
		"Site route 198.19.6.0/24:  routed through latch0\n",
		"Route error:               setting the SNAT rules of latch0: no nf_tables\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("want %q in\n%s", want, b.String())
		}
	}
	b.Reset()
	printStatus(&b, agent.Status{Forwarding: &agent.ForwardingStatus{}})
	if want := "IPv4 forwarding:  OFF: the advertised routes carry nothing"; !strings.Contains(b.String(), want) {
		t.Errorf("want %q in\n%s", want, b.String())
	}
}

// TestPrintPeersSiteRoutes: `latch peers` marks a gateway peer's site
// prefixes, and whether each is routed.
func TestPrintPeersSiteRoutes(t *testing.T) {
	var b strings.Builder
	printPeers(&b, []agent.PeerInfo{{Node: "gw-2", PublicKey: "k", AllowedIPs: []string{"100.64.0.3/32", "198.19.5.0/24", "198.19.6.0/24"},
		SiteRoutes: []agent.SiteRoute{{Prefix: "198.19.5.0/24", Conflict: "proto kernel dev eth1"}, {Prefix: "198.19.6.0/24", Installed: true}}}}, time.Now())
	if want := "100.64.0.3/32,198.19.5.0/24 (site, NOT routed: proto kernel dev eth1 holds it),198.19.6.0/24 (site, routed)"; !strings.Contains(b.String(), want) {
		t.Errorf("want %q in\n%s", want, b.String())
	}
	b.Reset()
	printPeers(&b, []agent.PeerInfo{{Node: "gw-3", PublicKey: "k"}}, time.Now())
	if want := "gw-3  -         -     none (standby gateway)"; !strings.Contains(b.String(), want) {
		t.Errorf("a peer without allowed IPs: want %q in\n%s", want, b.String())
	}
}

// TestPrintPeersPath: `latch peers` shows each peer's path, and says why
// below the table for a peer without one.
func TestPrintPeersPath(t *testing.T) {
	var b strings.Builder
	printPeers(&b, []agent.PeerInfo{
		{Node: "web", PublicKey: "k1", Endpoint: "198.18.0.9:40211", AllowedIPs: []string{"100.64.0.3/32"}, Path: agent.PathDirectPublic, LastHandshake: time.Now()},
		{Node: "db", PublicKey: "k2", Endpoint: "198.18.0.5:51820", AllowedIPs: []string{"100.64.0.4/32"}, Path: agent.PathNone,
			Reason: "no handshake yet on any of 2 candidates; tried 198.18.0.5:51820, 198.18.0.9:40211; a relay is not built yet"},
	}, time.Now())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	for i, re := range []string{
		`^NODE +ENDPOINT +PATH +ALLOWED IPS +HANDSHAKE +RX +TX$`,
		`^web +198\.18\.0\.9:40211 +direct-public +100\.64\.0\.3/32 `,
		`^db +198\.18\.0\.5:51820 +none +100\.64\.0\.4/32 +never `,
		`^$`,
		`^db: no handshake yet on any of 2 candidates; tried 198\.18\.0\.5:51820, 198\.18\.0\.9:40211; a relay is not built yet$`,
	} {
		if i >= len(lines) || !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Fatalf("line %d: want %q in\n%s", i, re, b.String())
		}
	}
}
