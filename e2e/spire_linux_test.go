//go:build spire

// The SPIRE end-to-end test needs SPIRE's binaries, whose cold build
// (`make spire`, about 28 minutes on a busy 2-core machine) does not fit
// CI's time budget beside the other tests; it is built only with the tag
// spire: `make e2e-spire`.

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

// spireBins returns the SPIRE binaries `make spire` builds into bin/ (or
// $SPIRE_BIN_DIR). Without them the test skips locally and fails under CI.
func spireBins(t *testing.T) (server, agent string) {
	t.Helper()
	dir := os.Getenv("SPIRE_BIN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "bin")
	}
	server, agent = filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")
	for _, b := range []string{server, agent} {
		if _, err := os.Stat(b); err != nil {
			if os.Getenv("CI") == "" {
				t.Skipf("SPIRE is not built (%v): run `make spire` first (CI is unset; with CI set this is a failure)", err)
			}
			t.Fatalf("SPIRE is not built (%v) and CI is set: `make test` builds it with `make spire`", err)
		}
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	return abs(server), abs(agent)
}

// spireLab is a real SPIRE server (trust domain latch.test, join-token
// node attestation, SQLite datastore in a temporary directory) in the
// coordinator's host, and one SPIRE agent per host.
type spireLab struct {
	t         *testing.T
	server    string // binary
	agent     string // binary
	dir       string // short: unix socket paths are limited to 108 bytes
	socket    string // the server's admin socket
	addr      netip.Addr
	bundle    string // the server's trust bundle (PEM), for agents to bootstrap
	serverLog *netlab.Proc
}

const spireTD = "latch.test"

func newSpireLab(t *testing.T, h *netlab.Host) *spireLab {
	t.Helper()
	server, agent := spireBins(t)
	// Checked after the removal below and after the server and agents,
	// started later, are stopped.
	leaks := netlab.CheckLeaks(t)
	dir, err := os.MkdirTemp("", "spire-")
	if err != nil {
		t.Fatal(err)
	}
	leaks.Path("temporary directory", dir)
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &spireLab{t: t, server: server, agent: agent, dir: dir, socket: filepath.Join(dir, "server.sock"), addr: h.Underlay}
	conf := fmt.Sprintf(`server {
	bind_address = "%s"
	bind_port = "8081"
	socket_path = "%s"
	trust_domain = "%s"
	data_dir = "%s"
	log_level = "INFO"
	# Short SVIDs: agents rotate them every 30 s during the test.
	default_x509_svid_ttl = "1m"
}
plugins {
	DataStore "sql" {
		plugin_data {
			database_type = "sqlite3"
			connection_string = "%s"
		}
	}
	KeyManager "memory" {
		plugin_data {}
	}
	NodeAttestor "join_token" {
		plugin_data {}
	}
}
`, h.Underlay, s.socket, spireTD, filepath.Join(dir, "server"), filepath.Join(dir, "datastore.sqlite3"))
	cf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.serverLog = h.Start(t, nil, server, "run", "-config", cf)
	netlab.Eventually(t, 60*time.Second, func() error {
		_, err := s.cmd("healthcheck")
		return err
	})
	out, err := s.cmd("bundle", "show")
	if err != nil {
		t.Fatal(err)
	}
	s.bundle = filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(s.bundle, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// cmd runs a spire-server client command against the server's socket.
func (s *spireLab) cmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(args, "-socketPath", s.socket) // after the subcommand words, among its flags
	out, err := exec.CommandContext(ctx, s.server, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("spire-server %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (s *spireLab) mustCmd(args ...string) string {
	s.t.Helper()
	out, err := s.cmd(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// startAgent attests a SPIRE agent in h with a join token whose entry
// gives the agent the ID spiffe://latch.test/agent/<name>, and returns the
// address of its Workload API socket.
func (s *spireLab) startAgent(h *netlab.Host, name string) string {
	s.t.Helper()
	out := s.mustCmd("token", "generate", "-spiffeID", "spiffe://"+spireTD+"/agent/"+name, "-ttl", "600")
	tok, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if !ok {
		s.t.Fatalf("spire-server token generate: unexpected output %q", out)
	}
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	conf := fmt.Sprintf(`agent {
	data_dir = "%s"
	log_level = "INFO"
	server_address = "%s"
	server_port = "8081"
	socket_path = "%s"
	trust_bundle_path = "%s"
	trust_domain = "%s"
	join_token = "%s"
}
plugins {
	NodeAttestor "join_token" {
		plugin_data {}
	}
	KeyManager "memory" {
		plugin_data {}
	}
	WorkloadAttestor "unix" {
		plugin_data {}
	}
}
`, dir, s.addr, sock, s.bundle, spireTD, tok)
	cf := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		s.t.Fatal(err)
	}
	h.Start(s.t, nil, s.agent, "run", "-config", cf)
	netlab.Eventually(s.t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, s.agent, "healthcheck", "-socketPath", sock).CombinedOutput()
		if err != nil {
			return fmt.Errorf("spire-agent %s not healthy: %v: %s", name, err, out)
		}
		return nil
	})
	return "unix://" + sock
}

// entry registers a workload entry: processes of uid 0 under the agent
// of host parent get the SPIFFE ID id. The parent ID is what tells the
// nodes apart, since every process here runs as root.
func (s *spireLab) entry(parent, id string) {
	s.t.Helper()
	s.mustCmd("entry", "create", "-parentID", "spiffe://"+spireTD+"/agent/"+parent,
		"-spiffeID", id, "-selector", "unix:uid:0", "-x509SVIDTTL", "60")
}

const spireMap = `# SPIRE node IDs -> namespace and labels; the first match wins.
- id: spiffe://latch.test/prod/client-*
  namespace: prod
  labels: {role: client}
# Servers may host the workload prod/api (no labels but its SPIFFE ID)
# with an ID under their own.
- id: spiffe://latch.test/prod/*
  namespace: prod
  labels: {role: server}
  workloads: [{namespace: prod, name: api}]
  workloadIDs: [spiffe://latch.test/prod/web/*]
`

const spirePolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: servers, namespace: prod}
spec:
  podSelector: {matchLabels: {role: server}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 8443}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: clients, namespace: prod}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Ingress, Egress]
  egress:
  - {to: [{podSelector: {matchLabels: {role: server}}}], ports: [{port: 8443}]}
  - {to: [{podSelector: {matchLabels: {spiffe.io/id: "spiffe://latch.test/prod/web/api"}}}], ports: [{port: 9000}]}
---
# The workload SPIRE attests as spiffe://latch.test/prod/web/api, selected
# by its SPIFFE ID.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {spiffe.io/id: "spiffe://latch.test/prod/web/api"}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 9000}]}]
`

// startSpireNode starts `latch node --spiffe-socket` in h; it waits for
// nothing, since an unmapped node stays unconnected.
func (c *cluster) startSpireNode(h *netlab.Host, name, socket string, extra ...string) *node {
	c.t.Helper()
	c.nextIdx++
	n := &node{name: name, host: h, state: c.t.TempDir(), iface: fmt.Sprintf("lt%s%02d", c.lab.Suffix(), c.nextIdx)}
	n.args = []string{c.bin, "node", "--coordinator", c.url, "--state-dir", n.state, "--iface", n.iface,
		"--spiffe-socket", socket, "--endpoint", h.Underlay.String() + ":51820", "--listen-port", "51820"}
	n.args = append(n.args, extra...)
	n.proc = h.Start(c.t, nil, n.args...)
	c.nodes[name] = n
	return n
}

// TestSPIRE runs the coordinator and nodes with identities from a real
// SPIRE server and agents: the mapping admits nodes into a namespace with
// labels, policy between them holds, an unmapped node waits for approval,
// and one-minute SVIDs rotate under the nodes without cutting them off.
func TestSPIRE(t *testing.T) {
	spireBins(t) // skip or fail before making namespaces
	lab := netlab.New(t)
	coordHost := lab.Host("coord")
	spire := newSpireLab(t, coordHost)

	hosts := map[string]*netlab.Host{"coord": coordHost}
	sockets := map[string]string{}
	for _, name := range []string{"coord", "client-a", "web", "laptop"} {
		if hosts[name] == nil {
			hosts[name] = lab.Host(name)
		}
		sockets[name] = spire.startAgent(hosts[name], name)
	}
	spire.entry("coord", "spiffe://latch.test/latch/coordinator")
	spire.entry("client-a", "spiffe://latch.test/prod/client-a")
	spire.entry("web", "spiffe://latch.test/prod/web")
	spire.entry("web", "spiffe://latch.test/prod/web/api")  // a workload on web
	spire.entry("laptop", "spiffe://latch.test/dev/laptop") // matches no mapping

	mapFile := filepath.Join(t.TempDir(), "spiffe-map.yaml")
	if err := os.WriteFile(mapFile, []byte(spireMap), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: binary(t), lab: lab, coord: coordHost, data: t.TempDir(), nodes: map[string]*node{}}
	c.url = fmt.Sprintf("https://%s:7443", coordHost.Underlay)
	c.startCoordinator("--spiffe-socket", sockets["coord"], "--spiffe-map", mapFile)
	if _, err := c.applyPolicy(spirePolicy); err != nil {
		t.Fatal(err)
	}

	client := c.startSpireNode(hosts["client-a"], "client-a", sockets["client-a"])
	web := c.startSpireNode(hosts["web"], "web", sockets["web"],
		"--workload", "name=api,namespace=prod,ports=9000/tcp,spiffe_id=spiffe://latch.test/prod/web/api")
	c.WaitConnected(client, 90*time.Second)
	c.WaitConnected(web, 90*time.Second)

	// The mapping decided namespace and labels (first match wins).
	nodes := c.mustAdmin("admin", "node", "list")
	for name, want := range map[string]string{"client-a": "prod role=client", "web": "prod role=server"} {
		found := false
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			found = found || len(f) >= 4 && f[0] == name && f[1]+" "+f[3] == want
		}
		if !found {
			t.Errorf("admin node list: want %s in %s:\n%s", name, want, nodes)
		}
	}
	c.expectPeers(20*time.Second, map[string][]string{"client-a": {"web"}, "web": {"client-a"}})

	webIP, clientIP := c.overlayIP(web), c.overlayIP(client)
	web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 8443))
	client.host.ServeTCP(t, netip.AddrPortFrom(clientIP, 8443))
	netlab.Eventually(t, 20*time.Second, func() error {
		return client.host.DialTCP(netip.AddrPortFrom(webIP, 8443), 2*time.Second)
	})
	if err := web.host.DialTCP(netip.AddrPortFrom(clientIP, 8443), time.Second); err == nil {
		t.Error("web (role=server) reached client-a:8443, which no policy allows")
	}

	// The workload with a SPIFFE ID is selected by it: client-a reaches
	// api:9000, but not port 9000 of the web node itself.
	var apiIP netip.Addr
	netlab.Eventually(t, 30*time.Second, func() error {
		ips, err := c.workloadIPs(web, []string{"prod/api"})
		apiIP = ips["prod/api"]
		return err
	})
	web.host.ServeTCP(t, netip.AddrPortFrom(apiIP, 9000))
	web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 9000))
	netlab.Eventually(t, 20*time.Second, func() error {
		return client.host.DialTCP(netip.AddrPortFrom(apiIP, 9000), 2*time.Second)
	})
	if err := client.host.DialTCP(netip.AddrPortFrom(webIP, 9000), time.Second); err == nil {
		t.Error("client-a reached web:9000; only the workload spiffe://latch.test/prod/web/api allows port 9000")
	}

	// An unmapped ID waits for approval and holds no peer meanwhile.
	laptop := c.startSpireNode(hosts["laptop"], "laptop", sockets["laptop"])
	netlab.Eventually(t, 90*time.Second, func() error {
		out, err := c.admin("admin", "node", "pending")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "spiffe://latch.test/dev/laptop") {
			return fmt.Errorf("laptop not pending yet:\n%s", out)
		}
		return nil
	})
	if st, err := c.status(laptop); err == nil && st.Connected {
		t.Fatalf("the unapproved laptop is connected: %+v", st)
	}
	delete(c.nodes, "laptop") // no WireGuard interface yet
	c.expectPeers(5*time.Second, map[string][]string{"client-a": {"web"}, "web": {"client-a"}})
	c.nodes["laptop"] = laptop
	if out, err := c.admin("admin", "node", "approve", "laptop"); err == nil || !strings.Contains(out, "--namespace") {
		t.Errorf("approve without --namespace: %v %s", err, out)
	}
	c.mustAdmin("admin", "node", "approve", "laptop", "--namespace", "prod", "--label", "role=client")
	c.WaitConnected(laptop, 60*time.Second)
	c.expectPeers(20*time.Second, map[string][]string{"client-a": {"web"}, "web": {"client-a", "laptop"}, "laptop": {"web"}})
	netlab.Eventually(t, 20*time.Second, func() error {
		return laptop.host.DialTCP(netip.AddrPortFrom(webIP, 8443), 2*time.Second)
	})
	audit := c.mustAdmin("admin", "audit")
	for _, want := range []string{"node.spiffe.admit", "node.spiffe.pending"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s:\n%s", want, audit)
		}
	}

	// SPIRE rotates the one-minute SVIDs at half-life; the nodes take the
	// new ones and stay connected, and flows keep working.
	before, err := c.status(client)
	if err != nil {
		t.Fatal(err)
	}
	netlab.Eventually(t, 150*time.Second, func() error {
		st, err := c.status(client)
		if err != nil {
			return err
		}
		if !st.SVIDExpiry.After(before.SVIDExpiry.Add(45 * time.Second)) {
			return fmt.Errorf("SVID expiry %v: not yet two rotations past %v", st.SVIDExpiry, before.SVIDExpiry)
		}
		return nil
	})
	// Before the SVID its stream was authorized with expires, each node
	// reconnects with the current one, which the coordinator verifies.
	netlab.Eventually(t, 90*time.Second, func() error {
		if !strings.Contains(client.proc.Output(), "SVID rotated by SPIRE: reconnecting") {
			return fmt.Errorf("client-a has not reconnected with a rotated SVID yet")
		}
		return nil
	})
	for _, n := range []*node{client, web, laptop} {
		c.WaitConnected(n, 30*time.Second)
	}
	netlab.Eventually(t, 20*time.Second, func() error {
		return client.host.DialTCP(netip.AddrPortFrom(webIP, 8443), 2*time.Second)
	})
	if !strings.Contains(c.coordP.Output(), "trusting SPIRE") {
		t.Error("the coordinator did not log that it trusts SPIRE")
	}

	t.Run("trust bundle file", func(t *testing.T) {
		// A coordinator without a SPIRE agent reads SPIRE's bundle from a
		// file; its SPIRE node trusts the coordinator's own CA instead.
		h := lab.Host("coord2")
		c2 := &cluster{t: t, bin: c.bin, lab: lab, coord: h, data: t.TempDir(), nodes: map[string]*node{}, nextIdx: c.nextIdx} // interface names stay unique
		c2.url = fmt.Sprintf("https://%s:7443", h.Underlay)
		c2.startCoordinator("--trust-bundle", spire.bundle, "--spiffe-trust-domain", spireTD, "--spiffe-map", mapFile,
			"--trust-bundle-poll", "1s")
		nh := lab.Host("solo")
		sock := spire.startAgent(nh, "solo")
		spire.entry("solo", "spiffe://latch.test/prod/solo")
		n := c2.startSpireNode(nh, "solo", sock, "--coordinator-ca", filepath.Join(c2.data, "ca.crt"))
		c2.WaitConnected(n, 90*time.Second)
		if out := c2.mustAdmin("admin", "node", "list"); !strings.Contains(out, "role=server") {
			t.Errorf("the mapping did not label solo:\n%s", out)
		}
	})
}
