package e2e

import (
	"context"
	"fmt"
	"net/netip"
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
}
