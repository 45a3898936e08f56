// Package netlab builds throwaway networks of Linux network namespaces for
// end-to-end tests: real processes, real links, real sockets, and nothing
// added to the host's own namespace, interfaces, routes or firewall.
//
// A [Lab] is one bridged underlay (198.18.0.0/24 unless [WithUnderlay] says
// otherwise) living in a private "hub" namespace. Each [Host] is a namespace
// of its own with one veth ("eth0") plugged into that bridge and the next free
// underlay address. Tests run programs in a host with [Host.Start] (long-lived,
// killed at cleanup) or [Host.Run] (to completion, bounded), and probe from
// the test process itself with [Host.Do], [Host.DialTCP] and [Host.ServeTCP].
//
//	lab := netlab.New(t)
//	a, b := lab.Host("a"), lab.Host("b")
//	b.ServeTCP(t, netip.AddrPortFrom(b.Underlay, 443))
//	netlab.Eventually(t, 5*time.Second, func() error {
//		return a.DialTCP(netip.AddrPortFrom(b.Underlay, 443), time.Second)
//	})
//
// A [Site] is a LAN apart from the underlay ([Lab.Site]); a [NAT]
// ([Lab.NAT]) is a home router on the underlay with a site as its LAN,
// masquerading the LAN's traffic with nftables and dropping unsolicited
// packets on its WAN (it needs nft, Debian package nftables).
//
// Every name a lab creates carries a random per-lab suffix, so parallel and
// leftover runs never collide, and everything (processes, listeners,
// namespaces, links, the bridge) is removed by t.Cleanup, also when the test
// fails or panics half-way. Then the lab's leak check ([Lab.Leaks], a
// [Leaks]) fails the test if anything it made is left: a process it started
// or one still in one of its namespaces, a namespace, a link in the root
// namespace, a WireGuard UAPI socket or BPF pin or cgroup named with the
// suffix, or what the harness registered besides (temporary directories,
// pin directories, mounts). Harnesses that make things outside a lab use
// [CheckLeaks] the same way. Tests may only send traffic to loopback or to
// addresses inside namespaces they created: underlay 198.18.0.0/15, overlay
// 100.64.0.0/10, site subnets 198.19.0.0/16.
//
// Labs need root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's ip. Without
// root, [New] skips the test with a message saying so, unless CI is set, in
// which case it fails: CI runs as root and must never skip these tests.
//
// Only tests import it. The lab itself is Linux-only; on other systems the
// package holds only [Eventually].
package netlab
