package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// enforcePolicy is the demo chain (laptop -> web:443 -> api:8080 ->
// db:5432) plus api -> db on UDP 5353.
var enforcePolicy = strings.NewReplacer(
	"egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 5432}]}]",
	"egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 5432}, {port: 5353, protocol: UDP}]}]",
	"ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}]}]",
	"ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}, {port: 5353, protocol: UDP}]}]",
).Replace(chainPolicy)

// enforceStatus is the enforcement part of `latch status --json`.
type enforceStatus struct {
	Enforce     string `json:"enforce"`
	Enforcement *struct {
		Passed  uint64            `json:"passed"`
		Dropped uint64            `json:"dropped"`
		Packets map[string]uint64 `json:"packets"`
	} `json:"enforcement"`
}

func (c *cluster) enforceStatus(n *node) (enforceStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Command(ctx, c.bin, "status", "--state-dir", n.state, "--json").Output()
	if err != nil {
		return enforceStatus{}, fmt.Errorf("latch status on %s: %v", n.name, err)
	}
	var st enforceStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return enforceStatus{}, fmt.Errorf("latch status on %s: %v: %s", n.name, err, out)
	}
	return st, nil
}

// policyDrops is how many packets n's enforcer dropped by policy.
func (c *cluster) policyDrops(t *testing.T, n *node) uint64 {
	t.Helper()
	st, err := c.enforceStatus(n)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enforcement == nil {
		t.Fatalf("%s reports no enforcement counters: %+v", n.name, st)
	}
	return st.Enforcement.Packets["policy"]
}

// TestEnforce runs every node with each enforcer (eBPF, userspace) and
// checks that the directions peer visibility alone would let through (a
// node may reach every address of a peer, on any port, both ways) are now
// refused, while the allowed flows connect.
func TestEnforce(t *testing.T) {
	for _, mode := range []string{"ebpf", "userspace"} {
		t.Run(mode, func(t *testing.T) { testEnforce(t, mode) })
	}
}

func testEnforce(t *testing.T, mode string) {
	c := newCluster(t)
	enforce := []string{"--enforce", mode}
	web := c.AddNodeWith("web", c.joinToken("prod", "app=web"), "app=web", enforce...)
	api := c.AddNodeWith("api", c.joinToken("prod", "app=api"), "app=api", enforce...)
	db := c.AddNodeWith("db", c.joinToken("prod", "app=db"), "app=db", enforce...)
	laptop := c.AddNodeWith("laptop", c.joinToken("prod", "app=laptop"), "app=laptop", enforce...)
	for _, n := range []*node{web, api, db, laptop} {
		st, err := c.enforceStatus(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.Enforce != mode || st.Enforcement == nil {
			t.Fatalf("%s: status enforce=%q enforcement=%v, want %s with counters", n.name, st.Enforce, st.Enforcement, mode)
		}
	}
	if _, err := c.applyPolicy(enforcePolicy); err != nil {
		t.Fatal(err)
	}
	c.expectPeers(15*time.Second, map[string][]string{
		"web": {"api", "laptop"}, "api": {"db", "web"}, "db": {"api"}, "laptop": {"web"},
	})

	webIP, apiIP, dbIP, laptopIP := c.overlayIP(web), c.overlayIP(api), c.overlayIP(db), c.overlayIP(laptop)
	web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 443))
	api.host.ServeTCP(t, netip.AddrPortFrom(apiIP, 8080))
	db.host.ServeTCP(t, netip.AddrPortFrom(dbIP, 5432))
	// Listeners the refused directions aim at, so that a refusal is the
	// enforcer's doing and not a closed port.
	laptop.host.ServeTCP(t, netip.AddrPortFrom(laptopIP, 22))
	web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 8080))
	api.host.ServeTCP(t, netip.AddrPortFrom(apiIP, 5432))
	ServeUDPEcho(t, db.host, netip.AddrPortFrom(dbIP, 5353))
	ServeUDPEcho(t, api.host, netip.AddrPortFrom(apiIP, 5353))

	type flow struct {
		from *node
		to   netip.AddrPort
	}
	allowed := []flow{
		{laptop, netip.AddrPortFrom(webIP, 443)},
		{web, netip.AddrPortFrom(apiIP, 8080)},
		{api, netip.AddrPortFrom(dbIP, 5432)},
	}
	for _, f := range allowed {
		netlab.Eventually(t, 20*time.Second, func() error { return f.from.host.DialTCP(f.to, 2*time.Second) })
	}
	netlab.Eventually(t, 10*time.Second, func() error {
		return UDPEcho(api.host, netip.AddrPortFrom(dbIP, 5353), time.Second)
	})

	// Each reverse direction is between peers whose tunnel is up (the
	// allowed flows above made the handshakes).
	refused := []flow{
		{web, netip.AddrPortFrom(laptopIP, 22)},   // laptop -> web:443 reversed
		{web, netip.AddrPortFrom(laptopIP, 443)},  // the same port, the other way
		{api, netip.AddrPortFrom(webIP, 443)},     // web -> api reversed
		{api, netip.AddrPortFrom(webIP, 8080)},    // web -> api:8080 reversed
		{db, netip.AddrPortFrom(apiIP, 5432)},     // api -> db:5432 reversed
		{laptop, netip.AddrPortFrom(webIP, 8080)}, // an allowed peer, a port not allowed
	}
	checkRefused := func(t *testing.T, fs []flow) {
		t.Helper()
		for _, f := range fs {
			if err := f.from.host.DialTCP(f.to, 1500*time.Millisecond); err == nil {
				t.Errorf("%s connected to %s: the policy does not allow it", f.from.name, f.to)
			}
		}
	}
	before := c.policyDrops(t, web)
	checkRefused(t, refused)
	if err := UDPEcho(db.host, netip.AddrPortFrom(apiIP, 5353), 1500*time.Millisecond); err == nil {
		t.Error("db got a UDP echo from api:5353: the policy allows UDP only from api to db")
	}
	if after := c.policyDrops(t, web); after <= before {
		t.Errorf("web's enforcer counted no policy drop (%d -> %d) while refusing web -> laptop", before, after)
	}
	// Allowed flows still work after the refusals.
	for _, f := range allowed {
		if err := f.from.host.DialTCP(f.to, 3*time.Second); err != nil {
			t.Errorf("allowed flow %s -> %s: %v", f.from.name, f.to, err)
		}
	}

	t.Run("destination enforces ingress when the source does not", func(t *testing.T) {
		web.proc.Kill(15)
		web.proc.Wait(10 * time.Second)
		web.proc = web.host.Start(t, nil, append(append([]string(nil), web.args...), "--enforce", "off")...)
		c.WaitConnected(web, 20*time.Second)
		st, err := c.enforceStatus(web)
		if err != nil || st.Enforce != "off" {
			t.Fatalf("web restarted with --enforce off reports %+v, %v", st, err)
		}
		netlab.Eventually(t, 20*time.Second, func() error { return laptop.host.DialTCP(netip.AddrPortFrom(webIP, 443), 2*time.Second) })
		before := c.policyDrops(t, laptop)
		// web sends; laptop's ingress rules refuse.
		checkRefused(t, []flow{{web, netip.AddrPortFrom(laptopIP, 22)}})
		if after := c.policyDrops(t, laptop); after <= before {
			t.Errorf("laptop's enforcer counted no policy drop (%d -> %d) while refusing web -> laptop:22", before, after)
		}
	})
}
