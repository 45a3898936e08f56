// Package e2e holds the end-to-end tests: the real latch binary, real
// WireGuard devices and real sockets, in network namespaces the tests make
// (package netlab). They need root; under CI=true they fail rather than
// skip. Every test leaves nothing behind, and its lab's leak check
// (netlab.Leaks) fails it otherwise: processes, namespaces, links,
// WireGuard sockets, pins, cgroups, mounts, temporary directories.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
)

var (
	buildOnce sync.Once
	latchBin  string
	buildErr  error
)

// binary builds cmd/latch once per test run.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "latch-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		latchBin = filepath.Join(dir, "latch")
		out, err := exec.Command("go", "build", "-o", latchBin, "../cmd/latch").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building latch: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return latchBin
}

// cluster is a coordinator and nodes in one lab.
type cluster struct {
	t       testing.TB
	bin     string
	lab     *netlab.Lab
	coord   *netlab.Host
	data    string
	url     string
	coordP  *netlab.Proc
	nodes   map[string]*node
	nextIdx int
	ids     map[string]nodeID // by state directory; see identities
}

type node struct {
	name  string
	host  *netlab.Host
	state string
	iface string
	proc  *netlab.Proc
	args  []string
}

type status struct {
	SVIDExpiry  time.Time `json:"svidExpiry"`
	LastError   string    `json:"lastError"`
	Name        string    `json:"name"`
	IP          string    `json:"ip"`
	PublicKey   string    `json:"publicKey"`
	ViewVersion uint64    `json:"viewVersion"`
	Connected   bool      `json:"connected"`
}

func newCluster(t testing.TB, extra ...string) *cluster {
	c := &cluster{t: t, bin: binary(t), lab: netlab.New(t), nodes: map[string]*node{}}
	c.coord = c.lab.Host("coord")
	c.data = t.TempDir()
	c.url = fmt.Sprintf("https://%s:7443", c.coord.Underlay)
	c.startCoordinator(extra...)
	return c
}

func (c *cluster) startCoordinator(extra ...string) {
	args := append([]string{c.bin, "coordinator", "--listen", c.coord.Underlay.String() + ":7443",
		"--data-dir", c.data, "--trust-domain", "example.test", "--keepalive", "1s"}, extra...)
	c.coordP = c.coord.Start(c.t, nil, args...)
	netlab.Eventually(c.t, 15*time.Second, func() error {
		_, err := c.admin("admin", "node", "list")
		return err
	})
}

// admin runs a latch client command against the coordinator.
func (c *cluster) admin(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.coord.Command(ctx, append([]string{c.bin}, args...)...)
	cmd.Env = append(os.Environ(), "LATCH_COORDINATOR="+c.url, "LATCH_TOKEN_FILE="+filepath.Join(c.data, "admin.token"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("latch %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *cluster) mustAdmin(args ...string) string {
	c.t.Helper()
	out, err := c.admin(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) token(args ...string) string {
	c.t.Helper()
	return strings.TrimSpace(c.mustAdmin(append([]string{"admin", "token", "create"}, args...)...))
}

// addNode starts `latch node` in a new host and waits until it is up.
func (c *cluster) addNode(name, token string, labels string) *node {
	c.t.Helper()
	return c.AddNodeWith(name, token, labels)
}

// restart starts a stopped node again from its state dir (no token).
func (c *cluster) restart(n *node) {
	n.proc = n.host.Start(c.t, nil, n.args...)
}

func (c *cluster) status(n *node) (status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Command(ctx, c.bin, "status", "--state-dir", n.state, "--json").Output()
	if err != nil {
		return status{}, fmt.Errorf("latch status on %s: %v", n.name, err)
	}
	var st status
	if err := json.Unmarshal(out, &st); err != nil {
		return status{}, fmt.Errorf("latch status on %s: %v: %s", n.name, err, out)
	}
	return st, nil
}

// wgPeers lists the node names of the WireGuard peers a node holds, read
// with `wg show` from wireguard-tools.
func (c *cluster) wgPeers(n *node) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Run(ctx, "wg", "show", n.iface, "peers")
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for name, id := range c.identities() {
		keys[id.key] = name
	}
	var names []string
	for _, k := range strings.Fields(out) {
		name, ok := keys[k]
		if !ok {
			name = "unknown:" + k
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// expectPeers waits until every node holds exactly the given peers.
func (c *cluster) expectPeers(timeout time.Duration, want map[string][]string) {
	c.t.Helper()
	netlab.Eventually(c.t, timeout, func() error {
		for name, n := range c.nodes {
			if n.proc == nil {
				continue
			}
			got, err := c.wgPeers(n)
			if err != nil {
				return err
			}
			w := append([]string(nil), want[name]...)
			sort.Strings(w)
			if strings.Join(got, ",") != strings.Join(w, ",") {
				return fmt.Errorf("node %s has peers %v, want %v", name, got, w)
			}
		}
		return nil
	})
}

func (c *cluster) overlayIP(n *node) netip.Addr {
	c.t.Helper()
	st, err := c.status(n)
	if err != nil {
		c.t.Fatal(err)
	}
	return netip.MustParseAddr(st.IP)
}

const chainPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: laptop}}}], ports: [{port: 443}]}]
  egress: [{to: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 5432}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: laptop, namespace: prod}
spec:
  podSelector: {matchLabels: {app: laptop}}
  policyTypes: [Ingress, Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 443}]}]
`

func (c *cluster) applyPolicy(doc string) (string, error) {
	f := filepath.Join(c.t.TempDir(), "policy.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return c.admin("policy", "apply", "-f", f)
}

func TestOverlay(t *testing.T) {
	// Short SVIDs, so that renewal happens during the test.
	c := newCluster(t, "--svid-ttl", "20s")
	web := c.addNode("web", c.joinToken("prod", "app=web"), "app=web")
	api := c.addNode("api", c.joinToken("prod", "app=api"), "app=api")
	db := c.addNode("db", c.joinToken("prod", "app=db"), "app=db")
	laptop := c.addNode("laptop", c.joinToken("prod", "app=laptop"), "app=laptop")
	// A node that no policy mentions: it must never hold a peer.
	tok := c.joinToken("prod", "app=idle")
	c.addNode("idle", tok, "app=idle")

	// Baseline deny, no policy: nobody has a peer.
	c.expectPeers(10*time.Second, map[string][]string{})

	if _, err := c.applyPolicy(chainPolicy); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"web": {"api", "laptop"}, "api": {"db", "web"}, "db": {"api"}, "laptop": {"web"},
	}
	c.expectPeers(10*time.Second, want)

	// Allowed flows connect through the tunnel; a node cannot reach one it
	// holds no peer for.
	webIP, apiIP, dbIP := c.overlayIP(web), c.overlayIP(api), c.overlayIP(db)
	web.host.ServeTCP(t, netip.AddrPortFrom(webIP, 443))
	api.host.ServeTCP(t, netip.AddrPortFrom(apiIP, 8080))
	db.host.ServeTCP(t, netip.AddrPortFrom(dbIP, 5432))
	for _, f := range []struct {
		from *node
		to   netip.AddrPort
	}{
		{laptop, netip.AddrPortFrom(webIP, 443)},
		{web, netip.AddrPortFrom(apiIP, 8080)},
		{api, netip.AddrPortFrom(dbIP, 5432)},
	} {
		netlab.Eventually(t, 15*time.Second, func() error { return f.from.host.DialTCP(f.to, 2*time.Second) })
	}
	for _, f := range []struct {
		from *node
		to   netip.AddrPort
	}{
		{laptop, netip.AddrPortFrom(apiIP, 8080)},
		{laptop, netip.AddrPortFrom(dbIP, 5432)},
		{web, netip.AddrPortFrom(dbIP, 5432)},
	} {
		if err := f.from.host.DialTCP(f.to, time.Second); err == nil {
			t.Errorf("%s reached %s without an allowed flow", f.from.name, f.to)
		}
	}

	t.Run("bad policy keeps the old one", func(t *testing.T) {
		out, err := c.applyPolicy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]\n")
		if err == nil || !strings.Contains(out, "spec.ingress[0].ports[0].port") {
			t.Fatalf("bad policy: %v %s", err, out)
		}
		c.expectPeers(3*time.Second, want)
	})

	t.Run("expired token", func(t *testing.T) {
		short := c.token("--namespace", "prod", "--ttl", "1s")
		time.Sleep(1500 * time.Millisecond) // let the token expire: the point of the test
		h := c.lab.Host("expired")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := h.Command(ctx, c.bin, "node", "--coordinator", c.url, "--join-token", short, "--state-dir", t.TempDir(),
			"--iface", "ltexp"+c.lab.Suffix(), "--name", "expired").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "expired") {
			t.Fatalf("enrolling with an expired token: %v\n%s", err, out)
		}
	})

	t.Run("SVID renewal", func(t *testing.T) {
		first, err := c.status(web)
		if err != nil {
			t.Fatal(err)
		}
		netlab.Eventually(t, 30*time.Second, func() error {
			st, err := c.status(web)
			if err != nil {
				return err
			}
			if !st.SVIDExpiry.After(first.SVIDExpiry) {
				return fmt.Errorf("SVID not renewed yet (expires %v)", st.SVIDExpiry)
			}
			return nil
		})
		c.expectPeers(5*time.Second, want)
	})

	t.Run("node restart without a token", func(t *testing.T) {
		laptop.proc.Kill(15)
		laptop.proc.Wait(10 * time.Second)
		c.restart(laptop)
		netlab.Eventually(t, 20*time.Second, func() error {
			st, err := c.status(laptop)
			if err != nil || !st.Connected {
				return fmt.Errorf("laptop not back: %+v %v", st, err)
			}
			return nil
		})
		c.expectPeers(10*time.Second, want)
		netlab.Eventually(t, 15*time.Second, func() error { return laptop.host.DialTCP(netip.AddrPortFrom(webIP, 443), 2*time.Second) })
	})

	t.Run("labels come from the token", func(t *testing.T) {
		h := c.lab.Host("claimer")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// A node asking for web's labels with a token that gives none.
		out, err := h.Command(ctx, c.bin, "node", "--coordinator", c.url, "--join-token", c.joinToken("dev", ""), "--state-dir", t.TempDir(),
			"--iface", "ltclm"+c.lab.Suffix(), "--name", "claimer", "--labels", "app=web", "--enroll-only").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "latch admin token create --labels") {
			t.Fatalf("enrolling with labels the token does not give: %v\n%s", err, out)
		}
	})

	t.Run("a node cannot claim another's workload", func(t *testing.T) {
		// A dev laptop declares prod/fake-web with app=web: every flow
		// web has, if the coordinator believed it.
		h := c.lab.Host("fake")
		fake := &node{name: "fake", host: h, state: t.TempDir(), iface: "ltfak" + c.lab.Suffix()}
		fake.args = []string{c.bin, "node", "--coordinator", c.url, "--state-dir", fake.state, "--iface", fake.iface,
			"--name", "fake", "--endpoint", h.Underlay.String() + ":51820", "--listen-port", "51820",
			"--workload", "name=fake-web,namespace=prod,labels=app=web", "--join-token", c.joinToken("dev", "")}
		fake.proc = h.Start(t, nil, fake.args...)
		netlab.Eventually(t, 20*time.Second, func() error {
			st, err := c.status(fake)
			if err != nil {
				return err
			}
			if !strings.Contains(st.LastError, "not granted") || !strings.Contains(st.LastError, "prod/fake-web") {
				return fmt.Errorf("fake's last error %q does not say prod/fake-web is not granted", st.LastError)
			}
			return nil
		})
		audit := c.mustAdmin("admin", "audit")
		if !regexp.MustCompile(`node:fake\s+node.register.refused\s+fake`).MatchString(audit) {
			t.Errorf("no audit entry for the refused registration:\n%s", audit)
		}
		// Nobody peers with the fake node: its claim changed no view.
		c.expectPeers(3*time.Second, want)
		fake.proc.Kill(15)
		fake.proc.Wait(10 * time.Second)
		c.mustAdmin("admin", "node", "delete", "fake")
	})

	t.Run("used token", func(t *testing.T) {
		h := c.lab.Host("late")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := h.Command(ctx, c.bin, "node", "--coordinator", c.url, "--join-token", tok, "--state-dir", t.TempDir(),
			"--iface", "ltlate"+c.lab.Suffix(), "--name", "late").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "used") {
			t.Fatalf("enrolling with a used-up token: %v\n%s", err, out)
		}
	})

	t.Run("policy change moves peers and keeps other tunnels", func(t *testing.T) {
		// laptop may now also reach api directly.
		extra := strings.Replace(chainPolicy, "ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]",
			"ingress: [{from: [{podSelector: {matchLabels: {app: web}}}, {podSelector: {matchLabels: {app: laptop}}}], ports: [{port: 8080}]}]", 1)
		extra = strings.Replace(extra, "egress: [{to: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 443}]}]",
			"egress: [{to: [{podSelector: {matchLabels: {app: web}}}, {podSelector: {matchLabels: {app: api}}}]}]", 1)
		before := handshake(t, c, db, api)
		start := time.Now()
		if _, err := c.applyPolicy(extra); err != nil {
			t.Fatal(err)
		}
		c.expectPeers(5*time.Second, map[string][]string{
			"web": {"api", "laptop"}, "api": {"db", "laptop", "web"}, "db": {"api"}, "laptop": {"api", "web"},
		})
		// Measured, not asserted: docs/benchmarks.md records it.
		t.Logf("policy change converged on every node's WireGuard device in %v (from `latch policy apply` starting, polling wg show included)", time.Since(start).Round(time.Millisecond))
		if after := handshake(t, c, db, api); before != "" && after != before {
			t.Errorf("db's tunnel to api was reset by an unrelated change: handshake %s -> %s", before, after)
		}
		if _, err := c.applyPolicy(chainPolicy); err != nil {
			t.Fatal(err)
		}
		c.expectPeers(5*time.Second, want)
	})

	t.Run("coordinator away: tunnels keep working, then converge", func(t *testing.T) {
		c.coordP.Kill(9)
		c.coordP.Wait(10 * time.Second)
		if err := laptop.host.DialTCP(netip.AddrPortFrom(webIP, 443), 3*time.Second); err != nil {
			t.Fatalf("tunnel stopped with the coordinator away: %v", err)
		}
		c.startCoordinator()
		netlab.Eventually(t, 20*time.Second, func() error {
			for _, n := range c.nodes {
				if st, err := c.status(n); err != nil || !st.Connected {
					return fmt.Errorf("node %s not reconnected: %+v %v", n.name, st, err)
				}
			}
			return nil
		})
		c.expectPeers(10*time.Second, want)
	})

	t.Run("deleted node disappears and is refused", func(t *testing.T) {
		c.mustAdmin("admin", "node", "delete", "db")
		delete(c.nodes, "db")
		c.expectPeers(5*time.Second, map[string][]string{"web": {"api", "laptop"}, "api": {"web"}, "laptop": {"web"}})
		netlab.Eventually(t, 10*time.Second, func() error {
			st, err := c.status(db)
			if err != nil {
				return err
			}
			if st.Connected || !strings.Contains(st.LastError, "revoked") {
				return fmt.Errorf("deleted node: connected=%v, last error %q; want its certificate refused as revoked", st.Connected, st.LastError)
			}
			return nil
		})
	})
}

// handshake returns the latest-handshake time n holds for peer.
func handshake(t *testing.T, c *cluster, n, peer *node) string {
	t.Helper()
	st, err := c.status(peer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.host.Run(ctx, "wg", "show", n.iface, "latest-handshakes")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == st.PublicKey {
			return f[1]
		}
	}
	return ""
}
