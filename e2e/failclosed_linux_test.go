package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// portsPolicy lets nodes labelled app=cli reach those labelled app=srv on
// n separate TCP ports (1001, 1003, ...), both ways of the policy, so that
// each node's rule for the other holds n port ranges.
func portsPolicy(n int) string {
	var ports []string
	for i := range n {
		ports = append(ports, fmt.Sprintf("{port: %d}", 1001+2*i))
	}
	p := "[" + strings.Join(ports, ", ") + "]"
	return `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: srv, namespace: prod}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{podSelector: {matchLabels: {app: cli}}}], ports: ` + p + `}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cli, namespace: prod}
spec:
  podSelector: {matchLabels: {app: cli}}
  egress: [{to: [{podSelector: {matchLabels: {app: srv}}}], ports: ` + p + `}]
`
}

// TestViewTooLargeAddsNoPeer: a policy of 17 separate ports gives both
// nodes a view whose rules do not fit the eBPF maps (16 port ranges per
// rule). Each agent keeps its old rules and so must not add the peer the
// new view brings; its status says why. A policy that fits then makes
// them peers.
func TestViewTooLargeAddsNoPeer(t *testing.T) {
	c := newCluster(t)
	srv := c.AddNodeWith("srv", c.joinToken("prod", "app=srv"), "app=srv", "--enforce", "ebpf")
	cli := c.AddNodeWith("cli", c.joinToken("prod", "app=cli"), "app=cli", "--enforce", "ebpf")
	c.WaitConnected(srv, 15*time.Second)
	c.WaitConnected(cli, 15*time.Second)
	if _, err := c.applyPolicy(portsPolicy(17)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{srv, cli} {
		// Once the agent has tried the view (it is received), its peers
		// are what the rules in force allow: none.
		var st status
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err = c.status(n)
			if err == nil && strings.Contains(st.LastError, "does not fit the eBPF maps") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no error for the view too large for the eBPF maps: status %+v, %v", n.name, st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		peers, err := c.wgPeers(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != 0 {
			t.Errorf("%s: WireGuard peers %v of a view whose rules did not load; want none", n.name, peers)
		}
	}
	if _, err := c.applyPolicy(portsPolicy(16)); err != nil {
		t.Fatal(err)
	}
	c.expectPeers(20*time.Second, map[string][]string{"srv": {"cli"}, "cli": {"srv"}})
}
