package e2e

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
	"github.com/latchnet/latch/inventory"
)

// wlSpec is a workload the test declares with --workload.
type wlSpec struct {
	node, name, ns string
	labels         map[string]string
	ports          []inventory.Port
}

func (w wlSpec) key() string { return w.ns + "/" + w.name }

// flag renders w as a --workload value.
func (w wlSpec) flag() string {
	var labels, ports []string
	for k, v := range w.labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	for _, p := range w.ports {
		s := fmt.Sprintf("%d/%s", p.Port, strings.ToLower(string(p.Protocol)))
		if p.Name != "" {
			s = p.Name + "=" + s
		}
		ports = append(ports, s)
	}
	return fmt.Sprintf("name=%s,namespace=%s,labels=%s,ports=%s", w.name, w.ns, strings.Join(labels, ";"), strings.Join(ports, ";"))
}

// grant renders the grant that lets a node host exactly w, for
// `latch admin token create --workload`.
func (w wlSpec) grant() string {
	var labels []string
	for k, v := range w.labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return fmt.Sprintf("namespace=%s,labels=%s,name=%s", w.ns, strings.Join(labels, ";"), w.name)
}

func tcp(name string, port uint16) inventory.Port {
	return inventory.Port{Name: name, Port: port, Protocol: inventory.TCP}
}

func udp(name string, port uint16) inventory.Port {
	return inventory.Port{Name: name, Port: port, Protocol: inventory.UDP}
}

// Two workloads on each of three nodes, in three namespaces.
var wlSpecs = []wlSpec{
	{"n1", "web", "front", map[string]string{"app": "web"}, []inventory.Port{tcp("http", 8080), tcp("metrics", 9090)}},
	{"n1", "cache", "back", map[string]string{"app": "cache"}, []inventory.Port{tcp("", 6379), udp("", 7000)}},
	{"n2", "api", "back", map[string]string{"app": "api"}, []inventory.Port{tcp("http", 8080), tcp("", 9001), tcp("", 9002), tcp("", 9005), udp("dns", 5353)}},
	{"n2", "metrics", "data", map[string]string{"app": "metrics"}, []inventory.Port{tcp("", 9100)}},
	{"n3", "db", "data", map[string]string{"app": "db"}, []inventory.Port{tcp("pg", 5432), udp("", 5353)}},
	{"n3", "dns", "front", map[string]string{"app": "dns"}, []inventory.Port{udp("dns", 5353), tcp("", 8053)}},
}

var wlNamespaceLabels = map[string]map[string]string{
	"front": {"tier": "front"},
	"back":  {"tier": "back"},
	"data":  {"tier": "data"},
}

// workloadPolicy is the policy under test. It needs the addresses the
// coordinator assigned, for the ipBlock excepts: ip("ns/name") is one.
func workloadPolicy(ip func(string) netip.Addr) string {
	r := strings.NewReplacer(
		"WEB", ip("front/web").String(), "CACHE", ip("back/cache").String(),
		"API", ip("back/api").String(), "DB", ip("data/db").String(),
		"METRICS", ip("data/metrics").String())
	return r.Replace(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: front}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {tier: data}}, podSelector: {matchLabels: {app: metrics}}}]
    ports: [{port: metrics}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {tier: back}}, podSelector: {matchLabels: {app: api}}}]
    ports: [{port: http}, {port: 9001, endPort: 9004}]
  - to: [{ipBlock: {cidr: 100.64.0.0/10, except: [DB/32, CACHE/32]}}]
    ports: [{port: 5353, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: back}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {tier: front}}}]
    ports: [{port: http}, {port: 9001, endPort: 9010}, {port: dns, protocol: UDP}]
  - from: [{podSelector: {matchLabels: {app: cache}}}]
    ports: [{port: 9005}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {tier: data}}}]
    ports: [{port: 5432}, {port: 5353, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache, namespace: back}
spec:
  podSelector: {matchLabels: {app: cache}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 100.64.0.0/10, except: [WEB/32]}}]
    ports: [{port: 6379}, {port: 7000, protocol: UDP}]
  egress:
  - to: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 9000, endPort: 9010}]
  - to: [{namespaceSelector: {matchLabels: {tier: data}}, podSelector: {matchLabels: {app: db}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: data}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {tier: back}}}]
    ports: [{port: pg}, {port: 5353, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: metrics, namespace: data}
spec:
  podSelector: {matchLabels: {app: metrics}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 100.64.0.0/10, except: [API/32]}}]
    ports: [{port: 9100}]
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: 9090}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns, namespace: front}
spec:
  podSelector: {matchLabels: {app: dns}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: dns, protocol: UDP}]
  egress:
  - to: [{ipBlock: {cidr: 100.64.0.0/10, except: [METRICS/32]}}]
`)
}

// TestWorkloads measures the truth table of a policy over six workloads on
// three nodes, through the tunnel, with each enforcer, and compares it with
// `latch policy eval` over the same inventory.
func TestWorkloads(t *testing.T) {
	for _, mode := range []string{"ebpf", "userspace"} {
		t.Run(mode, func(t *testing.T) { testWorkloads(t, mode) })
	}
}

func testWorkloads(t *testing.T, mode string) {
	start := time.Now()
	c := newCluster(t)
	for ns, labels := range wlNamespaceLabels {
		var kv []string
		for k, v := range labels {
			kv = append(kv, k+"="+v)
		}
		c.mustAdmin("admin", "namespace", "set", ns, "--labels", strings.Join(kv, ","))
	}
	nodes := map[string]*node{}
	for _, name := range []string{"n1", "n2", "n3"} {
		args := []string{"--enforce", mode}
		var grants []string
		for _, w := range wlSpecs {
			if w.node == name {
				args = append(args, "--workload", w.flag())
				grants = append(grants, w.grant())
			}
		}
		nodes[name] = c.AddNodeWith(name, c.joinToken("infra", "role=node", grants...), "role=node", args...)
	}

	// The addresses the coordinator assigned, as the nodes report them.
	ips := map[string]netip.Addr{}
	for name, n := range nodes {
		var want []string
		for _, w := range wlSpecs {
			if w.node == name {
				want = append(want, w.key())
			}
		}
		netlab.Eventually(t, 10*time.Second, func() error {
			got, err := c.workloadIPs(n, want)
			for k, ip := range got {
				ips[k] = ip
			}
			return err
		})
	}
	ip := func(key string) netip.Addr {
		a, ok := ips[key]
		if !ok {
			t.Fatalf("no address for workload %s", key)
		}
		return a
	}
	doc := workloadPolicy(ip)
	if out, err := c.applyPolicy(doc); err != nil {
		t.Fatalf("applying the policy: %v\n%s", err, out)
	}

	// The same workloads as an inventory, with the nodes as workloads too.
	inv := inventory.Inventory{Namespaces: []inventory.Namespace{{Name: "infra"}}}
	for ns, labels := range wlNamespaceLabels {
		inv.Namespaces = append(inv.Namespaces, inventory.Namespace{Name: ns, Labels: labels})
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		inv.Nodes = append(inv.Nodes, inventory.Node{Name: name, Namespace: "infra", Labels: map[string]string{"role": "node"}, IP: c.overlayIP(nodes[name])})
	}
	byKey := map[string]wlSpec{}
	for _, w := range wlSpecs {
		byKey[w.key()] = w
		inv.Workloads = append(inv.Workloads, inventory.Workload{Name: w.name, Namespace: w.ns, Labels: w.labels, Node: w.node, IP: ip(w.key()), Ports: w.ports})
	}
	rows, err := c.policyEval(inv, doc)
	if err != nil {
		t.Fatal(err)
	}

	// Listeners: every declared port on the workload's own address.
	for _, w := range wlSpecs {
		h := nodes[w.node].host
		for _, p := range w.ports {
			ap := netip.AddrPortFrom(ip(w.key()), p.Port)
			switch p.Protocol {
			case inventory.TCP:
				h.ServeTCP(t, ap)
			case inventory.UDP:
				ServeUDPEcho(t, h, ap)
			}
		}
	}

	type flow struct {
		row evalRow
		src wlSpec
		dst netip.AddrPort
	}
	probe := func(f flow, timeout time.Duration) error {
		h := nodes[f.src.node].host
		if f.row.Protocol == inventory.UDP {
			return UDPEchoFrom(h, ip(f.src.key()), f.dst, timeout)
		}
		return DialTCPFrom(h, ip(f.src.key()), f.dst, timeout)
	}
	var allowed, denied []flow
	sameNode := 0
	for _, r := range rows {
		src, ok1 := byKey[r.From]
		dst, ok2 := byKey[r.To]
		if !ok1 || !ok2 {
			continue // a node: it declares no ports and we do not dial from it
		}
		// Workloads on the same node talk over the loopback path, not
		// through the tunnel, so neither enforcer sees them; the cgroup
		// hooks will cover them. Skip those pairs.
		if src.node == dst.node {
			sameNode++
			continue
		}
		f := flow{row: r, src: src, dst: netip.AddrPortFrom(ip(dst.key()), r.Port)}
		if r.Allowed {
			allowed = append(allowed, f)
		} else {
			denied = append(denied, f)
		}
	}
	if len(allowed) < 5 || len(denied) < 5 {
		t.Fatalf("the truth table is too one-sided to test: %d allowed, %d denied rows", len(allowed), len(denied))
	}
	for _, f := range allowed {
		netlab.Eventually(t, 15*time.Second, func() error { return probe(f, 2*time.Second) })
	}
	// The denied rows, one bounded attempt each, in parallel: the
	// handshakes the allowed rows made are up, so a failure here is the
	// enforcer's.
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		leak []string
		sem  = make(chan struct{}, 16)
	)
	for _, f := range denied {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := probe(f, time.Second); err == nil {
				mu.Lock()
				leak = append(leak, fmt.Sprintf("%s -> %s %d/%s", f.row.From, f.row.To, f.row.Port, f.row.Protocol))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(leak)
	for _, l := range leak {
		t.Errorf("connected, but the policy denies it (%s): %s", mode, l)
	}
	t.Logf("%s: %d allowed and %d denied cross-node rows match latch policy eval (%d same-node rows skipped) in %v",
		mode, len(allowed), len(denied)-len(leak), sameNode, time.Since(start).Round(time.Second))
}
