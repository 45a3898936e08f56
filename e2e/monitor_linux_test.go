package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// flowLine is the part of a `latch flows --json` line the test reads.
type flowLine struct {
	Reporter string `json:"reporter"`
	Src      struct {
		Namespace, Workload string
		IP                  netip.Addr
	} `json:"src"`
	Dst struct {
		Namespace, Workload string
		IP                  netip.Addr
	} `json:"dst"`
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
	Verdict  string `json:"verdict"`
	Packets  uint64 `json:"packets"`
}

// flows runs `latch flows --json` with args and parses the lines.
func (c *cluster) flows(args ...string) ([]flowLine, error) {
	out, err := c.admin(append([]string{"flows", "--json"}, args...)...)
	if err != nil {
		return nil, err
	}
	var fs []flowLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var f flowLine
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			return nil, fmt.Errorf("latch flows --json printed %q: %v", line, err)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// waitFlow waits until `latch flows` (filtered by args) shows a flow from
// src to dst:port reported by both its ends.
func (c *cluster) waitFlow(t *testing.T, src, dst string, port uint16, args ...string) {
	t.Helper()
	netlab.Eventually(t, 30*time.Second, func() error {
		fs, err := c.flows(args...)
		if err != nil {
			return err
		}
		reporters := map[string]bool{}
		for _, f := range fs {
			if f.Src.Workload == src && f.Dst.Workload == dst && f.Port == port && f.Protocol == "TCP" && f.Packets > 0 {
				reporters[f.Reporter] = true
			}
		}
		if !reporters[src] || !reporters[dst] {
			return fmt.Errorf("latch flows %v: no flow %s -> %s:%d reported by both ends yet (%d flows, reporters %v)", args, src, dst, port, len(fs), reporters)
		}
		return nil
	})
}

// TestMonitorMode: a namespace in monitor mode carries traffic no policy
// allows: nothing is dropped and `latch flows` reports the flows as
// would-deny. The policy `latch policy suggest` writes from them is
// applied and the namespace switched to enforce (the switch reaches both
// nodes' enforcers, timed): the same traffic still passes, new traffic
// is denied and reported as denied.
func TestMonitorMode(t *testing.T) {
	for _, mode := range []string{"ebpf", "userspace"} {
		t.Run(mode, func(t *testing.T) { testMonitorMode(t, mode) })
	}
}

func testMonitorMode(t *testing.T, mode string) {
	c := newCluster(t)
	c.mustAdmin("admin", "namespace", "set", "shop", "--mode", "monitor")
	extra := []string{"--enforce", mode, "--flow-interval", "300ms"}
	web := c.AddNodeWith("web", c.joinToken("shop", "app=web"), "app=web", extra...)
	api := c.AddNodeWith("api", c.joinToken("shop", "app=api"), "app=api", extra...)
	// No policy names shop, and the baseline denies: only monitor mode
	// makes the nodes peers.
	c.expectPeers(20*time.Second, map[string][]string{"web": {"api"}, "api": {"web"}})
	webIP, apiIP := c.overlayIP(web), c.overlayIP(api)
	api.host.ServeTCP(t, netip.AddrPortFrom(apiIP, 8080))
	api.host.ServeTCP(t, netip.AddrPortFrom(apiIP, 9090))
	web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 9000))

	// Monitor: the traffic passes, nothing is dropped by policy.
	netlab.Eventually(t, 20*time.Second, func() error { return web.host.DialTCP(netip.AddrPortFrom(apiIP, 8080), 2*time.Second) })
	for range 3 {
		if err := web.host.DialTCP(netip.AddrPortFrom(apiIP, 8080), 2*time.Second); err != nil {
			t.Fatalf("monitor mode: web -> api:8080: %v", err)
		}
	}
	for _, n := range []*node{web, api} {
		st, err := c.enforceStatus(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.Enforce != mode || st.Enforcement == nil || st.Enforcement.Packets["policy"] != 0 || st.Enforcement.Packets["monitor"] == 0 {
			t.Fatalf("%s in monitor mode: enforcement %+v, want %s with no policy drops and some monitor passes", n.name, st.Enforcement, mode)
		}
	}
	c.waitFlow(t, "web", "api", 8080, "--namespace", "shop", "--verdict", "would-deny")
	out := c.mustAdmin("flows", "--namespace", "shop", "--verdict", "would-deny")
	t.Logf("latch flows --namespace shop --verdict would-deny:\n%s", out)
	if !strings.Contains(out, "shop/web (web "+webIP.String()+") -> shop/api (api "+apiIP.String()+"):8080/TCP  WOULD-DENY") {
		t.Fatalf("latch flows prints no would-deny line for web -> api:8080:\n%s", out)
	}

	// The suggestion, applied, then enforce.
	yml := c.mustAdmin("policy", "suggest", "--namespace", "shop", "--since", "1h")
	t.Logf("suggested policy:\n%s", yml)
	f := filepath.Join(t.TempDir(), "shop.yaml")
	if err := os.WriteFile(f, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustAdmin("policy", "validate", "-n", "shop", "-f", f)
	// kubectl's habits: diff shows what apply would add and exits 1; the
	// policies name their namespace, which must agree with -n.
	if out, err := c.admin("policy", "diff", "-n", "shop", "-f", f); err == nil || !strings.Contains(err.Error(), "exit status 1") ||
		!strings.Contains(out, "+++ merged/networking.k8s.io.v1.NetworkPolicy.shop.") {
		t.Fatalf("latch policy diff before apply: %v\n%s; want exit status 1 and a diff", err, out)
	}
	if out, err := c.admin("policy", "apply", "-n", "other", "-f", f); err == nil || !strings.Contains(out, "You must pass '--namespace=shop'") {
		t.Fatalf("latch policy apply -n other of policies in shop: %v\n%s; want the namespace conflict", err, out)
	}
	c.mustAdmin("policy", "apply", "-n", "shop", "-f", f)
	if out := c.mustAdmin("policy", "diff", "-n", "shop", "-f", f); out != "" {
		t.Fatalf("latch policy diff after apply: %s; want no change", out)
	}
	got := filepath.Join(t.TempDir(), "got.yaml")
	if err := os.WriteFile(got, []byte(c.mustAdmin("policy", "get", "-n", "shop", "-o", "yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := c.mustAdmin("policy", "diff", "-f", got); out != "" {
		t.Fatalf("latch policy diff of latch policy get -n shop -o yaml: %s; want no change", out)
	}
	before := map[*node]uint64{}
	for _, n := range []*node{web, api} {
		st, err := c.status(n)
		if err != nil {
			t.Fatal(err)
		}
		before[n] = st.ViewVersion
	}
	start := time.Now()
	c.mustAdmin("admin", "namespace", "set", "shop", "--mode", "enforce")
	sent := time.Now()
	netlab.Eventually(t, 20*time.Second, func() error {
		for _, n := range []*node{web, api} {
			st, err := c.status(n)
			if err != nil {
				return err
			}
			if st.ViewVersion == before[n] {
				return fmt.Errorf("%s still holds view %d", n.name, st.ViewVersion)
			}
		}
		return nil
	})
	t.Logf("mode switch: the admin call took %v; both nodes held the new view %v after it was sent (polled with latch status, which adds its own delay)",
		sent.Sub(start).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))

	// The learned traffic still passes; new traffic is denied.
	netlab.Eventually(t, 20*time.Second, func() error { return web.host.DialTCP(netip.AddrPortFrom(apiIP, 8080), 2*time.Second) })
	polBefore := c.policyDrops(t, api)
	if err := web.host.DialTCP(netip.AddrPortFrom(apiIP, 9090), 1500*time.Millisecond); err == nil {
		t.Error("enforce: web connected to api:9090, which was never observed nor suggested")
	}
	if err := api.host.DialTCP(netip.AddrPortFrom(webIP, 9000), 1500*time.Millisecond); err == nil {
		t.Error("enforce: api connected to web:9000, which was never observed nor suggested")
	}
	if err := web.host.DialTCP(netip.AddrPortFrom(apiIP, 8080), 2*time.Second); err != nil {
		t.Errorf("enforce: the learned flow web -> api:8080 no longer passes: %v", err)
	}
	if after := c.policyDrops(t, web) + c.policyDrops(t, api); after <= polBefore {
		t.Errorf("enforce: no policy drops counted for the new traffic (%d -> %d)", polBefore, after)
	}
	netlab.Eventually(t, 30*time.Second, func() error {
		fs, err := c.flows("--namespace", "shop", "--verdict", "denied")
		if err != nil {
			return err
		}
		for _, f := range fs {
			if f.Src.Workload == "web" && f.Dst.Workload == "api" && f.Port == 9090 {
				return nil
			}
		}
		return fmt.Errorf("latch flows shows no denied web -> api:9090 yet (%d denied flows)", len(fs))
	})
}
