package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
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
//	go test -run '^$' -bench Throughput -benchtime 5x ./e2e/   # as root
//
// One cluster holds a client and a server node per mode (both ends run
// that mode). Each iteration is one round: a 5 s iperf3 run per mode, in
// turn, so that whatever else the machine does falls on every mode alike.
// The figures are the medians of the receiver's rate over the rounds, and
// each mode's difference from "off".
func BenchmarkThroughput(b *testing.B) {
	modes := []string{"off", "ebpf", "userspace"}
	c := newCluster(b)
	tok := c.token("--namespace", "prod", "--uses", "6", "--ttl", "10m")
	type pair struct {
		client *node
		server netip.Addr
	}
	pairs := map[string]pair{}
	for _, mode := range modes {
		server := c.AddNodeWith("server-"+mode, tok, "app=server", "--enforce", mode)
		client := c.AddNodeWith("client-"+mode, tok, "app=client", "--enforce", mode)
		pairs[mode] = pair{client, c.overlayIP(server)}
		server.host.Start(b, nil, "iperf3", "-s", "-B", pairs[mode].server.String(), "-p", "5201")
	}
	if _, err := c.applyPolicy(throughputPolicy); err != nil {
		b.Fatal(err)
	}
	for _, mode := range modes {
		p := pairs[mode]
		netlab.Eventually(b, 20*time.Second, func() error {
			return p.client.host.DialTCP(netip.AddrPortFrom(p.server, 5201), 2*time.Second)
		})
	}
	rates := map[string][]float64{}
	for b.Loop() {
		for _, mode := range modes {
			p := pairs[mode]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := p.client.host.Run(ctx, "iperf3", "-c", p.server.String(), "-p", "5201", "-t", "5", "-J")
			cancel()
			if err != nil {
				b.Fatalf("iperf3 (%s): %v\n%s", mode, err, out)
			}
			var r struct {
				End struct {
					SumReceived struct {
						BitsPerSecond float64 `json:"bits_per_second"`
					} `json:"sum_received"`
				} `json:"end"`
			}
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
				b.Fatalf("iperf3 output (%s): %v\n%s", mode, err, out)
			}
			rates[mode] = append(rates[mode], r.End.SumReceived.BitsPerSecond/1e6)
		}
	}
	off := median(rates["off"])
	for _, mode := range modes {
		m := median(rates[mode])
		b.ReportMetric(m, "Mbit/s-"+mode)
		if mode != "off" {
			b.ReportMetric(100*(m-off)/off, "%-"+mode)
		}
		b.Logf("enforce=%s: rounds %s Mbit/s, median %.0f", mode, fmtRates(rates[mode]), m)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}
