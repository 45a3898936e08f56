package netmap

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

// The benchmark organisation: 100 namespaces with 10 services each (1,000
// services, one policy each), 10,000 nodes hosting 5 workloads each, so
// every service has 50 replicas spread over the nodes. Service app-K may
// receive from app-(K-1) on its named port "http" and send to app-(K+1) on
// 8080; every app-0 also takes app-9 of its team's namespaces on 9090, and
// every app-5 may reach the site subnet 198.19.0.0/16 except one /24.
const (
	benchNamespaces   = 100
	benchApps         = 10
	benchNodes        = 10000
	benchWorkloadsPer = 5
)

func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)})
}

func benchInput(b testing.TB) Input {
	in := Input{Baseline: policy.BaselineDeny}
	for n := 0; n < benchNamespaces; n++ {
		in.Namespaces = append(in.Namespaces, inventory.Namespace{
			Name:   fmt.Sprintf("ns-%03d", n),
			Labels: map[string]string{"team": fmt.Sprintf("t%d", n%10)},
		})
	}
	for i := 0; i < benchNodes; i++ {
		node := inventory.Node{
			Name:      fmt.Sprintf("node-%05d", i),
			Namespace: fmt.Sprintf("ns-%03d", i%benchNamespaces),
			Labels:    map[string]string{"role": "server"},
			IP:        benchAddr(i * 8),
			PublicKey: fmt.Sprintf("key-%05d", i),
			Endpoints: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 51820)},
		}
		in.Nodes = append(in.Nodes, node)
		for j := 0; j < benchWorkloadsPer; j++ {
			k := i*benchWorkloadsPer + j
			in.Workloads = append(in.Workloads, inventory.Workload{
				Name:      fmt.Sprintf("w-%06d", k),
				Namespace: fmt.Sprintf("ns-%03d", k%benchNamespaces),
				Labels: map[string]string{
					"app":     fmt.Sprintf("app-%d", (k/benchNamespaces)%benchApps),
					"version": fmt.Sprintf("v%d", k%3),
				},
				Node: node.Name,
				IP:   benchAddr(i*8 + 1 + j),
				Ports: []inventory.Port{
					{Name: "http", Port: 8080, Protocol: inventory.TCP},
					{Name: "metrics", Port: 9090, Protocol: inventory.TCP},
				},
			})
		}
	}
	for n := 0; n < benchNamespaces; n++ {
		for a := 0; a < benchApps; a++ {
			in.Policies = append(in.Policies, benchPolicy(b, n, a, 8080))
		}
	}
	return in
}

func benchPolicy(b testing.TB, n, a int, egressPort int) *policy.Policy {
	ns := fmt.Sprintf("ns-%03d", n)
	ingress := fmt.Sprintf(`    - from: [{podSelector: {matchLabels: {app: app-%d}}}]
      ports: [{port: http}]
`, (a+benchApps-1)%benchApps)
	egress := fmt.Sprintf(`    - to: [{podSelector: {matchLabels: {app: app-%d}}}]
      ports: [{port: %d}]
`, (a+1)%benchApps, egressPort)
	switch a {
	case 0:
		ingress += fmt.Sprintf(`    - from:
        - namespaceSelector: {matchLabels: {team: t%d}}
          podSelector: {matchExpressions: [{key: app, operator: In, values: [app-9]}]}
      ports: [{port: 9090}]
`, n%10)
	case 9:
		egress += fmt.Sprintf(`    - to:
        - namespaceSelector: {matchLabels: {team: t%d}}
          podSelector: {matchLabels: {app: app-0}}
      ports: [{port: 9090}]
`, n%10)
	case 5:
		egress += `    - to: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.7.0/24]}}]
      ports: [{port: 443}]
`
	}
	doc := fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: app-%d, namespace: %s}
spec:
  podSelector: {matchLabels: {app: app-%d}}
  policyTypes: [Ingress, Egress]
  ingress:
%s  egress:
%s`, a, ns, a, ingress, egress)
	ps, err := policy.Parse("bench", []byte(doc))
	if err != nil {
		b.Fatalf("%v\n%s", err, doc)
	}
	return ps[0]
}

func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// BenchmarkFull computes every view of 10,000 nodes × 5 workloads under
// 1,000 policies.
func BenchmarkFull(b *testing.B) {
	in := benchInput(b)
	base := heapMB()
	e, err := New(in)
	if err != nil {
		b.Fatal(err)
	}
	retained := heapMB() - base
	runtime.KeepAlive(e)
	b.ResetTimer()
	for b.Loop() {
		var err error
		e, err = New(in)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := e.Stats()
	b.ReportMetric(retained, "retained-MB")
	b.ReportMetric(float64(st.PeerEntries)/float64(st.Nodes), "peers/node")
	b.ReportMetric(float64(st.Flows), "flows")
}

// BenchmarkIncrementalPolicy replaces one policy (its egress port toggles)
// at full size.
func BenchmarkIncrementalPolicy(b *testing.B) {
	in := benchInput(b)
	e, err := New(in)
	if err != nil {
		b.Fatal(err)
	}
	ps := []*policy.Policy{benchPolicy(b, 7, 3, 8081), benchPolicy(b, 7, 3, 8080)}
	changed := 0
	i := 0
	b.ResetTimer()
	for b.Loop() {
		ch, err := e.UpsertPolicy(ps[i%2])
		if err != nil {
			b.Fatal(err)
		}
		changed = len(ch)
		i++
	}
	b.ReportMetric(float64(changed), "nodes-changed")
}

// BenchmarkIncrementalRelabel moves one workload between services by
// changing its app label, at full size.
func BenchmarkIncrementalRelabel(b *testing.B) {
	in := benchInput(b)
	e, err := New(in)
	if err != nil {
		b.Fatal(err)
	}
	w := in.Workloads[12345]
	w2 := w
	w2.Labels = map[string]string{"app": "app-7", "version": "v0"}
	ws := []inventory.Workload{w2, w}
	changed := 0
	i := 0
	b.ResetTimer()
	for b.Loop() {
		ch, err := e.UpsertWorkload(ws[i%2])
		if err != nil {
			b.Fatal(err)
		}
		changed = len(ch)
		i++
	}
	b.ReportMetric(float64(changed), "nodes-changed")
}

// BenchmarkIncrementalJoin has one node with 5 workloads join (one
// SetNode) and then leave (one DeleteNode); ns/op covers both changes.
func BenchmarkIncrementalJoin(b *testing.B) {
	in := benchInput(b)
	e, err := New(in)
	if err != nil {
		b.Fatal(err)
	}
	node := inventory.Node{Name: "node-new", Namespace: "ns-001", IP: benchAddr(benchNodes * 8), Labels: map[string]string{"role": "server"}}
	var ws []inventory.Workload
	for j := 0; j < benchWorkloadsPer; j++ {
		ws = append(ws, inventory.Workload{
			Name: fmt.Sprintf("new-%d", j), Namespace: fmt.Sprintf("ns-%03d", j), Node: node.Name,
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", j)}, IP: benchAddr(benchNodes*8 + 1 + j),
			Ports: []inventory.Port{{Name: "http", Port: 8080, Protocol: inventory.TCP}},
		})
	}
	changed := 0
	b.ResetTimer()
	for b.Loop() {
		ch, err := e.SetNode(node, ws)
		if err != nil {
			b.Fatal(err)
		}
		changed = len(ch)
		if _, err := e.DeleteNode(node.Name); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(changed), "nodes-changed")
}
