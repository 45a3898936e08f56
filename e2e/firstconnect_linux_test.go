package e2e

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkFirstConnect measures how long the first TCP connection through
// a tunnel the policy has just opened takes: from the moment both devices
// hold the new peer (polled with `wg show`) to an accepted connection, one
// dial with a 15 s timeout (TCP retransmits its SYN, so a lost WireGuard
// handshake shows as seconds):
//
//	go test -run '^$' -bench FirstConnect -benchtime 5x ./e2e/   # as root
//
// Each iteration applies the policy, connects, deletes the policy and
// waits until both peers are gone again. Before node/wg held back the
// keepalive of one end of each new pair (node/wg/keepalive_hold.go), crossing
// handshake initiations made about one first connection in three wait
// for WireGuard's 5 s retry.
func BenchmarkFirstConnect(b *testing.B) {
	c := newCluster(b)
	server := c.AddNodeWith("server", c.joinToken("prod", "app=server"), "app=server", "--enforce", "ebpf")
	client := c.AddNodeWith("client", c.joinToken("prod", "app=client"), "app=client", "--enforce", "ebpf")
	ip := c.overlayIP(server)
	server.host.ServeTCP(b, netip.AddrPortFrom(ip, 5201))
	var worst, total time.Duration
	for b.Loop() {
		b.StopTimer()
		if _, err := c.applyPolicy(throughputPolicy); err != nil {
			b.Fatal(err)
		}
		c.expectPeers(20*time.Second, map[string][]string{"server": {"client"}, "client": {"server"}})
		b.StartTimer()
		start := time.Now()
		if err := client.host.DialTCP(netip.AddrPortFrom(ip, 5201), 15*time.Second); err != nil {
			b.Fatalf("first connection: %v", err)
		}
		d := time.Since(start)
		b.StopTimer()
		b.Logf("first connection after %v", d.Round(time.Millisecond))
		total += d
		worst = max(worst, d)
		c.mustAdmin("policy", "delete", "prod/server")
		c.mustAdmin("policy", "delete", "prod/client")
		c.expectPeers(20*time.Second, map[string][]string{})
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-connect")
	b.ReportMetric(float64(worst.Milliseconds()), "ms-worst")
}
