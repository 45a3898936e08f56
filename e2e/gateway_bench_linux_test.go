package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// BenchmarkGatewayThroughput measures iperf3 TCP throughput from a node
// through a gateway to an agentless site host, with each enforcement
// mode on the gateway and the client:
//
//	go test -run '^$' -bench GatewayThroughput -benchtime 5x ./e2e/   # as root
//
// One cluster holds, per mode, a gateway for a site of its own
// (198.19.1x.0/24) with one host running the iperf3 server, and a client
// node; the policy allows the clients to the site hosts' port 5201. Each
// iteration is one round: a 5 s iperf3 run per mode, in turn. The figures
// are the medians of the receiver's rate over the rounds, and each mode's
// difference from "off".
func BenchmarkGatewayThroughput(b *testing.B) {
	c := newCluster(b)
	c.mustAdmin("admin", "namespace", "set", "prod", "--labels", "env=prod")
	c.mustAdmin("admin", "namespace", "set", "site-bench", "--labels", "region=bench")
	pairs := map[string]pair{}
	for i, mode := range enforceModes {
		prefix := netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", 11+i))
		site := c.lab.Site("bench"+mode[:1], prefix)
		gw := c.AddNodeWith("gw-"+mode, c.joinToken("infra", "role=gw"), "role=gw", "--enforce", mode, "--advertise-routes", prefix.String())
		gwAddr := prefix.Addr().Next()
		site.Attach(gw.host, gwAddr)
		host := site.Host("iperf-"+mode, gwAddr.Next().Next(), gwAddr)
		host.Start(b, nil, "iperf3", "-s", "-B", gwAddr.Next().Next().String(), "-p", "5201")
		client := c.AddNodeWith("client-"+mode, c.joinToken("prod", "app=client"), "app=client", "--enforce", mode)
		c.mustAdmin("admin", "site", "set", "site-bench/"+mode, "--cidr", prefix.String(), "--port", "5201")
		c.mustAdmin("admin", "route", "approve", gw.name, prefix.String())
		pairs[mode] = pair{client, gwAddr.Next().Next()}
	}
	if _, err := c.applyPolicy(gatewayBenchPolicy); err != nil {
		b.Fatal(err)
	}
	for _, mode := range enforceModes {
		p := pairs[mode]
		netlab.Eventually(b, 30*time.Second, func() error {
			return p.client.host.DialTCP(netip.AddrPortFrom(p.server, 5201), 2*time.Second)
		})
	}
	iperfRounds(b, pairs)
}

const gatewayBenchPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client, namespace: prod}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Ingress, Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {region: bench}}}], ports: [{port: 5201}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: iperf, namespace: site-bench}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{namespaceSelector: {matchLabels: {env: prod}}, podSelector: {matchLabels: {app: client}}}], ports: [{port: 5201}]}]
`
