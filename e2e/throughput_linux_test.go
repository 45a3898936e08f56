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

const throughputPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: prod}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 5201}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client, namespace: prod}
spec:
  podSelector: {matchLabels: {app: client}}
  egress: [{to: [{podSelector: {matchLabels: {app: server}}}], ports: [{port: 5201}]}]
`

// BenchmarkThroughput measures iperf3 TCP throughput through one tunnel
// (two nodes, wireguard-go) with each enforcement mode, in one run:
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./e2e/   # as root
//
// The figure is the receiver's rate over a 5 s iperf3 run.
func BenchmarkThroughput(b *testing.B) {
	for _, mode := range []string{"off", "userspace", "ebpf"} {
		b.Run(mode, func(b *testing.B) {
			c := newCluster(b)
			tok := c.token("--namespace", "prod", "--uses", "2", "--ttl", "10m")
			server := c.AddNodeWith("server", tok, "app=server", "--enforce", mode)
			client := c.AddNodeWith("client", tok, "app=client", "--enforce", mode)
			if _, err := c.applyPolicy(throughputPolicy); err != nil {
				b.Fatal(err)
			}
			ip := c.overlayIP(server)
			server.host.Start(b, nil, "iperf3", "-s", "-B", ip.String(), "-p", "5201")
			netlab.Eventually(b, 20*time.Second, func() error {
				return client.host.DialTCP(netip.AddrPortFrom(ip, 5201), 2*time.Second)
			})
			var mbps float64
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				out, err := client.host.Run(ctx, "iperf3", "-c", ip.String(), "-p", "5201", "-t", "5", "-J")
				cancel()
				if err != nil {
					b.Fatalf("iperf3: %v\n%s", err, out)
				}
				var r struct {
					End struct {
						SumReceived struct {
							BitsPerSecond float64 `json:"bits_per_second"`
						} `json:"sum_received"`
					} `json:"end"`
				}
				if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
					b.Fatalf("iperf3 output: %v\n%s", err, out)
				}
				mbps = r.End.SumReceived.BitsPerSecond / 1e6
			}
			st, err := c.status(client)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(mbps, "Mbit/s")
			b.Logf("enforce=%s: %s", mode, fmt.Sprintf("%.0f Mbit/s (client status: connected=%v)", mbps, st.Connected))
		})
	}
}
