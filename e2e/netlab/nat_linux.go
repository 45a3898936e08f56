package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// NAT is a home router: a host on the underlay (its WAN, Router.Link)
// that routes a LAN of its own (a Site) and masquerades the LAN's traffic
// to its WAN address with nftables. Its firewall drops what arrives on
// the WAN unsolicited (only replies to the LAN's traffic pass, ct state
// established,related), as a home router's does: with plain masquerade
// that keeps a LAN host's source port stable (an early packet from
// outside would otherwise take the port in conntrack, and masquerade
// would pick another). Mapping is endpoint-independent: a LAN socket
// keeps one WAN address and port whatever it sends to, and a reply from a
// peer passes once the LAN socket has sent to that peer's address and
// port (Linux conntrack filters by both, so there is no full-cone case).
type NAT struct {
	// Router is the NAT router's host; Router.Underlay is its WAN
	// address, the one peers and servers see.
	Router *Host
	// LAN is the router's LAN; LANAddr is the router's address on it,
	// the default gateway of the LAN's hosts.
	LAN     *Site
	LANAddr netip.Addr
}

// NAT adds a NAT router named name (a host on the underlay) with a LAN of
// the given prefix (inside 198.19.0.0/16; the router takes its first
// address). name must be valid both as a host and as a site name. It
// needs the nft command (Debian package nftables).
func (l *Lab) NAT(name string, lan netip.Prefix) *NAT {
	l.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") == "" {
			l.t.Skipf("netlab: skipping, NAT needs nft: install the nftables package (make deps) (CI is unset; with CI set this is a failure)")
		}
		l.t.Fatalf("netlab: NAT needs nft and CI is set, so it must not skip: install the nftables package (make deps)")
	}
	r := l.Host(name)
	site := l.Site(name, lan)
	n := &NAT{Router: r, LAN: site, LANAddr: lan.Addr().Next()}
	site.Attach(r, n.LANAddr)
	ruleset := fmt.Sprintf(`table ip latchnat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q ip saddr %s masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname %q oifname %q accept
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname %q ct state established,related accept
		iifname %q drop
	}
}
`, r.Link, lan, site.Link, r.Link, r.Link, r.Link)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := r.Run(ctx, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		l.t.Fatalf("netlab: NAT %s: turning on forwarding: %v: %s", name, err, out)
	}
	cmd := r.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: NAT %s: loading the nftables ruleset: %v: %s", name, err, out)
	}
	return n
}

// Host adds a host on the NAT's LAN with address a, its default route
// through the router. It has no underlay address: it reaches the
// underlay only through the NAT.
func (n *NAT) Host(name string, a netip.Addr) *Host {
	n.Router.lab.t.Helper()
	return n.LAN.Host(name, a, n.LANAddr)
}
