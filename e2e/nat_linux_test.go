package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// addNodeBehind starts `latch node` on a new host of nat's LAN with
// address a and no --endpoint: the node registers its LAN address and the
// reflexive endpoint the coordinator's STUN server tells it.
func (c *cluster) addNodeBehind(nat *netlab.NAT, name string, a netip.Addr, token, labels string) *node {
	c.t.Helper()
	c.nextIdx++
	h := nat.Host(name, a)
	n := &node{name: name, host: h, state: c.t.TempDir(), iface: fmt.Sprintf("lt%s%02d", c.lab.Suffix(), c.nextIdx)}
	n.args = []string{c.bin, "node", "--coordinator", c.url, "--state-dir", n.state, "--iface", n.iface,
		"--name", name, "--listen-port", "51820", "--labels", labels}
	n.proc = h.Start(c.t, nil, append(n.args, "--join-token", token)...)
	c.nodes[name] = n
	c.WaitConnected(n, 30*time.Second)
	return n
}

// wgEndpoint is the endpoint n's WireGuard device holds for its one peer,
// from `wg show IFACE endpoints`.
func wgEndpoint(n *node) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Run(ctx, "wg", "show", n.iface, "endpoints")
	if err != nil {
		return netip.AddrPort{}, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return netip.AddrPort{}, fmt.Errorf("%s: wg show endpoints: %q, want one peer", n.name, out)
	}
	if f[1] == "(none)" {
		return netip.AddrPort{}, fmt.Errorf("%s: the peer has no endpoint yet", n.name)
	}
	return netip.ParseAddrPort(f[1])
}

// TestNATDirect: two nodes, each behind its own endpoint-independent NAT
// router (masquerade, unsolicited inbound dropped), learn their reflexive
// endpoints from the coordinator's STUN server and connect directly: each
// one's WireGuard holds the other's NAT router's WAN address, and an
// allowed TCP port connects through the tunnel.
func TestNATDirect(t *testing.T) {
	c := newCluster(t)
	natA := c.lab.NAT("nata", netip.MustParsePrefix("198.19.200.0/24"))
	natB := c.lab.NAT("natb", netip.MustParsePrefix("198.19.201.0/24"))
	a := c.addNodeBehind(natA, "laptop", netip.MustParseAddr("198.19.200.2"), c.joinToken("prod", "app=laptop"), "app=laptop")
	b := c.addNodeBehind(natB, "web", netip.MustParseAddr("198.19.201.2"), c.joinToken("prod", "app=web"), "app=web")

	// Neither node can reach the other's LAN address: only the reflexive
	// endpoints (the NAT routers' WAN addresses, from STUN) can connect
	// them.
	start := time.Now()
	if _, err := c.applyPolicy(chainPolicy); err != nil {
		t.Fatal(err)
	}
	webIP := c.overlayIP(b)
	b.host.ServeTCP(t, netip.AddrPortFrom(webIP, 443))
	netlab.Eventually(t, 90*time.Second, func() error { return a.host.DialTCP(netip.AddrPortFrom(webIP, 443), 2*time.Second) })
	t.Logf("laptop connected to web through both NATs %v after the policy was applied", time.Since(start).Round(time.Millisecond))

	for _, p := range []struct {
		n   *node
		nat *netlab.NAT // of the peer
	}{{a, natB}, {b, natA}} {
		ep, err := wgEndpoint(p.n)
		if err != nil {
			t.Fatal(err)
		}
		if ep.Addr() != p.nat.Router.Underlay {
			t.Errorf("%s holds its peer at %s, want the peer's NAT router's WAN address %s", p.n.name, ep, p.nat.Router.Underlay)
		}
	}

	// Each node tells the path: direct-public, at the peer's NAT router's
	// WAN address, which is the peer's reflexive candidate, in use.
	for _, p := range []struct {
		n, peer *node
		nat     *netlab.NAT // of the peer
	}{{a, b, natB}, {b, a, natA}} {
		netlab.Eventually(t, 10*time.Second, func() error { return c.checkPath(p.n, p.peer.name, p.nat.Router.Underlay) })
	}
}

// peerPath is the path part of an entry of `latch peers --json`.
type peerPath struct {
	Node       string `json:"node"`
	Endpoint   string `json:"endpoint"`
	Path       string `json:"path"`
	Reason     string `json:"reason"`
	Candidates []struct {
		Endpoint string `json:"endpoint"`
		InUse    bool   `json:"inUse"`
		Tried    bool   `json:"tried"`
	} `json:"candidates"`
}

// checkPath checks with `latch peers` (--json and the table) that n
// reaches its one peer, named peer, on the direct-public path at wan, and
// that the endpoint in use is one of the peer's candidates.
func (c *cluster) checkPath(n *node, peer string, wan netip.Addr) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Command(ctx, c.bin, "peers", "--state-dir", n.state, "--json").Output()
	if err != nil {
		return fmt.Errorf("latch peers --json on %s: %v", n.name, err)
	}
	var ps []peerPath
	if err := json.Unmarshal(out, &ps); err != nil {
		return fmt.Errorf("latch peers --json on %s: %v: %s", n.name, err, out)
	}
	if len(ps) != 1 || ps[0].Node != peer {
		return fmt.Errorf("%s: peers %s, want only %s", n.name, out, peer)
	}
	p := ps[0]
	ep, err := netip.ParseAddrPort(p.Endpoint)
	if err != nil || p.Path != "direct-public" || ep.Addr() != wan || p.Reason != "" {
		return fmt.Errorf("%s: peer %s at %q on path %q (reason %q), want direct-public at %s", n.name, peer, p.Endpoint, p.Path, p.Reason, wan)
	}
	inUse := 0
	for _, cd := range p.Candidates {
		if cd.InUse {
			inUse++
			if cd.Endpoint != p.Endpoint || !cd.Tried {
				return fmt.Errorf("%s: candidate %+v in use, want %s, tried", n.name, cd, p.Endpoint)
			}
		}
	}
	if len(p.Candidates) < 2 || inUse != 1 {
		return fmt.Errorf("%s: candidates %+v, want the LAN and the reflexive one, the reflexive in use", n.name, p.Candidates)
	}
	table, err := n.host.Command(ctx, c.bin, "peers", "--state-dir", n.state).Output()
	if err != nil {
		return fmt.Errorf("latch peers on %s: %v", n.name, err)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(peer) + ` +` + regexp.QuoteMeta(p.Endpoint) + ` +direct-public `).Match(table) {
		return fmt.Errorf("%s: latch peers shows no direct-public row for %s at %s:\n%s", n.name, peer, p.Endpoint, table)
	}
	return nil
}
