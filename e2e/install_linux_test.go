package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/e2e/netlab"
	"github.com/latchnet/latch/internal/readme"
	"github.com/latchnet/latch/internal/tracetest"
)

var (
	distOnce sync.Once
	distBin  string
	distErr  error
)

// distBinary builds latch for this machine through scripts/build.sh, as
// `make dist` and the Dockerfile do, once per test run.
func distBinary(t *testing.T) string {
	t.Helper()
	distOnce.Do(func() {
		dir, err := os.MkdirTemp("", "latch-e2e-dist-")
		if err != nil {
			distErr = err
			return
		}
		distBin = filepath.Join(dir, "latch-linux-"+runtime.GOARCH)
		cmd := exec.Command("../scripts/build.sh", distBin)
		cmd.Env = append(os.Environ(), "VERSION=v0.0.0-e2e")
		if out, err := cmd.CombinedOutput(); err != nil {
			distErr = fmt.Errorf("scripts/build.sh: %v\n%s", err, out)
		}
	})
	if distErr != nil {
		t.Fatal(distErr)
	}
	return distBin
}

// writeDist puts bin into dir as latch-linux-ARCH, with extra appended
// (an ELF file runs with bytes after its end: a stand-in for a new build),
// and writes SHA256SUMS for it.
func writeDist(t *testing.T, dir, bin string, extra []byte) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, extra...)
	name := "latch-linux-" + runtime.GOARCH
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum[:])
}

// freshRoot is a network namespace of the lab with a mount namespace of
// its own in which /etc, /usr/local and /var are overlays whose upper
// layers are directories of the test, and /run is an empty tmpfs (no
// systemd runs): whatever the install script writes lands in the upper
// layers, where the test reads it, and the machine's own files stay
// untouched. A holder process keeps the mount namespace alive between the
// script's runs; nsenter runs commands in it.
type freshRoot struct {
	t      *testing.T
	host   *netlab.Host
	holder *netlab.Proc
	layers string // layers/{etc,usr-local,var}/upper
	tmp    string // TMPDIR for the script
}

var overlaid = []string{"/etc", "/usr/local", "/var"}

func newFreshRoot(t *testing.T, h *netlab.Host) *freshRoot {
	t.Helper()
	for _, tool := range []string{"unshare", "nsenter", "curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the install test needs %s: %v", tool, err)
		}
	}
	r := &freshRoot{t: t, host: h, layers: t.TempDir(), tmp: t.TempDir()}
	var setup strings.Builder
	setup.WriteString("set -e\n")
	for _, d := range overlaid {
		l := filepath.Join(r.layers, strings.ReplaceAll(strings.TrimPrefix(d, "/"), "/", "-"))
		fmt.Fprintf(&setup, "mkdir -p %[1]s/upper %[1]s/work\nmount -t overlay overlay -o lowerdir=%[2]s,upperdir=%[1]s/upper,workdir=%[1]s/work %[2]s\n", l, d)
	}
	fmt.Fprintf(&setup, "mount -t tmpfs tmpfs /run\ntouch %s/ready\nexec sleep 3600\n", r.layers)
	r.holder = h.Start(t, nil, "unshare", "--mount", "--propagation", "private", "sh", "-c", setup.String())
	netlab.Eventually(t, 10*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(r.layers, "ready")); err != nil {
			return fmt.Errorf("mount namespace not ready: %v; holder log: %s", err, r.holder.Output())
		}
		return nil
	})
	return r
}

// run runs argv inside the fresh root and returns its combined output.
func (r *freshRoot) run(timeout time.Duration, argv ...string) (string, error) {
	return r.runWithInput(timeout, "", argv...)
}

// runWithInput runs argv inside the fresh root with stdin as its input
// and returns its combined output.
func (r *freshRoot) runWithInput(timeout time.Duration, stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(r.holder.Pid), "-m", "-n", "--"}, argv...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+r.tmp)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// install runs the documented command, README's one-liner (which the
// console shows too), typed into a shell as a user pastes it, with args
// for the script: it fetches the CA certificate, keeps exactly one,
// checks its SPKI hash against the token, then pipes /install.sh fetched
// over TLS verified against that certificate into sudo sh. wrap, if not
// nil, wraps the shell's argv (a tracer).
func (r *freshRoot) install(coord, token string, wrap func(...string) []string, args ...string) (string, error) {
	r.t.Helper()
	if _, err := exec.LookPath("sudo"); err != nil {
		r.t.Fatalf("the install one-liner runs sudo: install it (make deps): %v", err)
	}
	cmd, err := readme.InstallCommand("..", coord, token)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(args) > 0 {
		const tail = "| sudo --preserve-env=LATCH_TOKEN sh)"
		if !strings.HasSuffix(cmd, tail) {
			r.t.Fatalf("README's one-liner does not end with %q", tail)
		}
		cmd = strings.TrimSuffix(cmd, "sh)") + "sh -s -- " + strings.Join(args, " ") + ")"
	}
	argv := []string{"sh"}
	if wrap != nil {
		argv = wrap(argv...)
	}
	return r.runWithInput(3*time.Minute, cmd+"\n", argv...)
}

// added lists what the fresh root holds that the machine does not: the
// files, links and whiteouts in the upper layers, and directories there
// that have no counterpart below (directories merely copied up are not
// listed), plus anything left in the script's TMPDIR.
func (r *freshRoot) added() []string {
	r.t.Helper()
	var out []string
	for _, d := range overlaid {
		upper := filepath.Join(r.layers, strings.ReplaceAll(strings.TrimPrefix(d, "/"), "/", "-"), "upper")
		filepath.WalkDir(upper, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				out = append(out, fmt.Sprintf("%s: %v", p, err))
				return nil
			}
			rel, _ := filepath.Rel(upper, p)
			if rel == "." {
				return nil
			}
			real := filepath.Join(d, rel)
			if e.IsDir() {
				if fi, err := os.Stat(real); err == nil && fi.IsDir() {
					return nil
				}
			}
			out = append(out, real)
			return nil
		})
	}
	left, _ := os.ReadDir(r.tmp)
	for _, e := range left {
		out = append(out, filepath.Join("$TMPDIR", e.Name()))
	}
	return out
}

func (r *freshRoot) expectNothingAdded(what string) {
	r.t.Helper()
	if a := r.added(); len(a) > 0 {
		r.t.Errorf("%s left behind: %v", what, a)
	}
}

func (r *freshRoot) upper(path string) string {
	for _, d := range overlaid {
		if rel, ok := strings.CutPrefix(path, d+"/"); ok {
			return filepath.Join(r.layers, strings.ReplaceAll(strings.TrimPrefix(d, "/"), "/", "-"), "upper", rel)
		}
	}
	r.t.Fatalf("%s is not under an overlaid directory", path)
	return ""
}

func (r *freshRoot) status() (status, error) {
	out, err := r.run(20*time.Second, "/usr/local/bin/latch", "status", "--json")
	if err != nil {
		return status{}, fmt.Errorf("latch status: %v: %s", err, out)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return status{}, fmt.Errorf("latch status: %v: %s", err, out)
	}
	return st, nil
}

const installPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: peer, namespace: prod}
spec:
  podSelector: {matchLabels: {app: peer}}
  ingress: [{from: [{podSelector: {matchLabels: {app: inst}}}], ports: [{port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: inst, namespace: prod}
spec:
  podSelector: {matchLabels: {app: inst}}
  policyTypes: [Ingress, Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: peer}}}], ports: [{port: 8080}]}]
`

// TestInstallScript runs scripts/install.sh, served by a real coordinator,
// in a fresh root inside a lab host: refused installs leave nothing
// behind; an install comes up, enrolls and reaches an allowed peer;
// re-running upgrades in place; --uninstall removes everything.
func TestInstallScript(t *testing.T) {
	bin := distBinary(t)
	dist := t.TempDir()
	sum := writeDist(t, dist, bin, nil)
	c := newCluster(t, "--dist-dir", dist)
	if _, err := c.applyPolicy(installPolicy); err != nil {
		t.Fatal(err)
	}
	peer := c.AddNodeWith("peer", c.joinToken("prod", "app=peer"), "app=peer")
	// The installed node's token gives it the labels it is installed with.
	tok := c.token("--namespace", "prod", "--labels", "app=inst", "--uses", "2", "--ttl", "10m")
	peerAddr := netip.AddrPortFrom(c.overlayIP(peer), 8080)
	peer.host.ServeTCP(t, peerAddr)
	r := newFreshRoot(t, c.lab.Host("inst"))
	withLabels := []string{"--name", "inst", "--labels", "app=inst"}

	t.Run("token for another coordinator", func(t *testing.T) {
		other := tok[:strings.LastIndex(tok, ".")+1] + strings.Repeat("ab", 32)
		out, err := r.run(time.Minute, "sh", "-c", `curl -fsS -k "$1/install.sh" | LATCH_TOKEN="$2" sh`, "sh", c.url, other)
		if err == nil || !strings.Contains(out, "is not the one the token was made for") || !strings.Contains(out, "nothing was changed") {
			t.Errorf("want a refusal naming the CA mismatch: %v\n%s", err, out)
		}
		r.expectNothingAdded("a refused CA")
	})

	t.Run("bad token", func(t *testing.T) {
		parts := strings.Split(tok, ".")
		parts[2] = strings.Repeat("a", len(parts[2])) // right CA, wrong secret
		// Traced: the whole way from the one-liner through sudo and the
		// script to latch's enrollment, the secret is on no command line
		// (ps), and no file is written in /tmp or TMPDIR outside a
		// private directory.
		var trace func() tracetest.Trace
		wrap := func(argv ...string) []string {
			var w []string
			w, trace = tracetest.Wrap(t, argv...)
			return w
		}
		out, err := r.install(c.url, strings.Join(parts, "."), wrap, withLabels...)
		// The one-liner's exit status is sudo sh's.
		if err == nil || !strings.Contains(out, "enrollment failed") || !strings.Contains(out, "nothing was changed") {
			t.Errorf("want an enrollment failure: %v\n%s", err, out)
		}
		t.Logf("bad token:\n%s", out)
		r.expectNothingAdded("a refused token")
		tr := trace()
		var enrolled bool
		for _, e := range tr.Execs {
			enrolled = enrolled || strings.Contains(e, "--enroll-only")
		}
		if !enrolled {
			t.Errorf("the trace shows no latch node --enroll-only: not a trace of the install (%d programs)", len(tr.Execs))
		}
		if e := tr.ExecsWith(parts[2]); len(e) > 0 {
			t.Errorf("the token's secret is on a command line:\n%s", strings.Join(e, "\n"))
		}
		for _, dir := range []string{r.tmp, "/tmp"} {
			if w := tr.PublicWritesUnder(dir); len(w) > 0 {
				t.Errorf("files written in %s outside a private (0700) directory: %v", dir, w)
			}
		}
	})

	t.Run("wrong checksum", func(t *testing.T) {
		good, err := os.ReadFile(filepath.Join(dist, "latch-linux-"+runtime.GOARCH))
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(nil), good...)
		bad[len(bad)/2] ^= 0xff
		os.WriteFile(filepath.Join(dist, "latch-linux-"+runtime.GOARCH), bad, 0o755)
		defer os.WriteFile(filepath.Join(dist, "latch-linux-"+runtime.GOARCH), good, 0o755)
		out, err := r.install(c.url, tok, nil, withLabels...)
		if err == nil || !strings.Contains(out, "checksum mismatch for latch-linux-"+runtime.GOARCH) || !strings.Contains(out, "nothing was changed") {
			t.Errorf("want a checksum failure: %v\n%s", err, out)
		}
		t.Logf("wrong checksum:\n%s", out)
		r.expectNothingAdded("a corrupt download")
	})

	t.Run("unreachable coordinator", func(t *testing.T) {
		closed := fmt.Sprintf("https://%s:7444", c.coord.Underlay)
		out, err := r.run(time.Minute, "sh", "-c", `curl -fsS -k "$1/install.sh" | LATCH_TOKEN="$2" sh -s -- --coordinator "$3"`, "sh", c.url, tok, closed)
		if err == nil || !strings.Contains(out, "cannot reach the coordinator at "+closed) {
			t.Errorf("want an unreachable coordinator: %v\n%s", err, out)
		}
		r.expectNothingAdded("an unreachable coordinator")
	})

	var firstPid string
	t.Run("install", func(t *testing.T) {
		out, err := r.install(c.url, tok, nil, withLabels...)
		t.Logf("install:\n%s", out)
		if err != nil {
			t.Fatalf("install: %v", err)
		}
		for _, want := range []string{"systemd is not running here", "the node is connected", "Connected", "inst"} {
			if !strings.Contains(out, want) {
				t.Errorf("install output lacks %q", want)
			}
		}
		got, err := os.ReadFile(r.upper("/usr/local/bin/latch"))
		if err != nil || hex.EncodeToString(sha256Of(got)) != sum {
			t.Errorf("installed binary: %v, or not the served one", err)
		}
		unit, err := os.ReadFile(r.upper("/etc/systemd/system/latch-node.service"))
		pkg, _ := os.ReadFile("../packaging/systemd/latch-node.service")
		if err != nil || !bytes.Equal(unit, pkg) {
			t.Errorf("unit: %v, or not packaging/systemd/latch-node.service", err)
		}
		if target, err := os.Readlink(r.upper("/etc/systemd/system/multi-user.target.wants/latch-node.service")); err != nil || target != "/etc/systemd/system/latch-node.service" {
			t.Errorf("unit not enabled: %q %v", target, err)
		}
		conf, err := os.ReadFile(r.upper("/etc/latch/node.yaml"))
		if err != nil || !strings.Contains(string(conf), "coordinator: "+c.url+"\n") {
			t.Errorf("node.yaml: %v %q", err, conf)
		}
		if _, err := os.Stat(r.upper("/var/lib/latch/svid.pem")); err != nil {
			t.Errorf("no identity in the state directory: %v", err)
		}
		st, err := r.status()
		if err != nil || !st.Connected || st.Name != "inst" {
			t.Fatalf("status: %+v %v", st, err)
		}
		// The installed node reaches its allowed peer over the overlay.
		netlab.Eventually(t, 20*time.Second, func() error { return r.host.DialTCP(peerAddr, 2*time.Second) })
		firstPid, _ = r.run(10*time.Second, "cat", "/run/latch-node.pid")
	})
	if t.Failed() {
		return
	}

	t.Run("re-run upgrades in place", func(t *testing.T) {
		key, _ := os.ReadFile(r.upper("/var/lib/latch/wg.key"))
		newSum := writeDist(t, dist, bin, []byte("new build"))
		// The same command again: the token (used up by now) only pins
		// the CA; the node is enrolled already.
		out, err := r.install(c.url, tok, nil, withLabels...)
		t.Logf("upgrade:\n%s", out)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if strings.Contains(out, "enrolling") {
			t.Error("the upgrade enrolled again")
		}
		got, _ := os.ReadFile(r.upper("/usr/local/bin/latch"))
		if hex.EncodeToString(sha256Of(got)) != newSum {
			t.Error("the binary was not replaced by the new build")
		}
		if key2, _ := os.ReadFile(r.upper("/var/lib/latch/wg.key")); len(key) == 0 || !bytes.Equal(key, key2) {
			t.Error("the node's WireGuard key changed: the upgrade did not keep the state")
		}
		if pid, _ := r.run(10*time.Second, "cat", "/run/latch-node.pid"); pid == firstPid {
			t.Errorf("the agent was not restarted (pid %s)", pid)
		}
		if st, err := r.status(); err != nil || !st.Connected || st.Name != "inst" {
			t.Errorf("status after the upgrade: %+v %v", st, err)
		}
		n := 0
		for _, line := range strings.Split(c.mustAdmin("admin", "node", "list"), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "inst" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the coordinator lists %d nodes named inst, want 1", n)
		}
		netlab.Eventually(t, 20*time.Second, func() error { return r.host.DialTCP(peerAddr, 2*time.Second) })

		// Without a token: an enrolled node upgrades trusting the CA it
		// enrolled with.
		newSum = writeDist(t, dist, bin, []byte("newer build"))
		out, err = r.run(3*time.Minute, "sh", "-c", `curl -fsS -k "$1/install.sh" | sh -s --`, "sh", c.url)
		if err != nil || !strings.Contains(out, "the node is connected") {
			t.Fatalf("upgrade without a token: %v\n%s", err, out)
		}
		if got, _ := os.ReadFile(r.upper("/usr/local/bin/latch")); hex.EncodeToString(sha256Of(got)) != newSum {
			t.Error("the binary was not replaced by the newer build")
		}
		netlab.Eventually(t, 20*time.Second, func() error { return r.host.DialTCP(peerAddr, 2*time.Second) })
	})

	t.Run("uninstall", func(t *testing.T) {
		out, err := r.run(time.Minute, "sh", "-c", `curl -fsS -k "$1/install.sh" | sh -s -- --uninstall`, "sh", c.url)
		t.Logf("uninstall:\n%s", out)
		if err != nil {
			t.Fatalf("uninstall: %v", err)
		}
		r.expectNothingAdded("--uninstall")
		if out, err := r.run(10*time.Second, "ls", "/run/latch-node.pid"); err == nil {
			t.Errorf("pid file left: %s", out)
		}
		if out, err := r.run(10*time.Second, "ip", "link", "show", "latch0"); err == nil {
			t.Errorf("the WireGuard interface is still there: %s", out)
		}
		if err := r.host.DialTCP(peerAddr, time.Second); err == nil {
			t.Error("the peer is still reachable after --uninstall")
		}
	})
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// unitCapabilities returns the capabilities a packaged unit keeps
// (CapabilityBoundingSet), in setpriv's form: "-all,+net_admin,...".
func unitCapabilities(t *testing.T, unit string) string {
	t.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			set := "-all"
			for _, c := range strings.Fields(v) {
				set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
			}
			return set
		}
	}
	t.Fatalf("%s has no CapabilityBoundingSet", unit)
	return ""
}

// TestNodeUnitCapabilities runs the node agent with only the capabilities
// packaging/systemd/latch-node.service keeps (bpffs mounted, as systemd
// mounts it at boot) and checks that it comes up with the eBPF enforcer
// and reaches an allowed peer: the unit's set is enough.
func TestNodeUnitCapabilities(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("this test needs setpriv (util-linux): %v", err)
	}
	caps := unitCapabilities(t, "../packaging/systemd/latch-node.service")
	c := newCluster(t)
	if _, err := c.applyPolicy(installPolicy); err != nil {
		t.Fatal(err)
	}
	peer := c.AddNodeWith("peer", c.joinToken("prod", "app=peer"), "app=peer")
	tok := c.joinToken("prod", "app=inst")
	peerAddr := netip.AddrPortFrom(c.overlayIP(peer), 8080)
	peer.host.ServeTCP(t, peerAddr)

	h := c.lab.Host("capped")
	n := &node{name: "capped", host: h, state: t.TempDir(), iface: "ltcap" + c.lab.Suffix()}
	n.args = []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t bpf bpf /sys/fs/bpf && exec setpriv --bounding-set "$0" --inh-caps "$0" --ambient-caps "$0" "$@"`, caps,
		c.bin, "node", "--coordinator", c.url, "--state-dir", n.state, "--iface", n.iface, "--name", "capped",
		"--labels", "app=inst", "--enforce", "ebpf", "--join-token", tok}
	n.proc = h.Start(t, nil, n.args...)
	c.nodes["capped"] = n
	c.WaitConnected(n, 30*time.Second)
	out, err := h.Run(context.Background(), "grep", "^CapBnd", "/proc/"+strconv.Itoa(n.proc.Pid)+"/status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities %s: %s", caps, strings.TrimSpace(out))
	if strings.Contains(out, "000001ffffffffff") || strings.Contains(out, "000003ffffffffff") {
		t.Fatalf("the agent kept every capability: %s", out)
	}
	netlab.Eventually(t, 20*time.Second, func() error { return h.DialTCP(peerAddr, 2*time.Second) })
}
