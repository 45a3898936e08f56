//go:build linux

package wg

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/internal/syncbuf"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The end-to-end test runs one device in each of two network namespaces
// joined by a veth pair. Each device lives in a helper process, this test
// binary re-executed inside its namespace with `ip netns exec`, because
// wireguard-go opens its UDP sockets from whatever thread brings it up. The
// parent drives a helper over stdin/stdout with one command per line.

const (
	helperEnv    = "LATCH_WG_HELPER_CONFIG" // JSON Config for TestHelperProcess
	helperPrefix = "wghelper: "             // marks protocol lines on the helper's stdout
)

// TestHelperProcess is not a test: it is the device process of
// TestE2E, and does nothing unless helperEnv is set. Commands on stdin:
//
//	apply <JSON []Peer>  -> ok
//	peers                -> ok <JSON []PeerStatus>
//	addrs <JSON []netip.Prefix> -> ok (SetAddresses)
//	reopen               -> ok <error from a second Open of the same name>
//	close                -> ok, then exit
//
// Errors are answered "err <message>". EOF on stdin closes the device.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return // not re-executed by TestE2E; returning (not skipping) keeps CI's no-skip rule simple
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "helper: bad config: %v\n", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	reply := func(format string, args ...any) {
		fmt.Fprintf(out, helperPrefix+format+"\n", args...)
		out.Flush()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dev, impl, err := Open(cfg, log)
	if err != nil {
		reply("err %v", err)
		os.Exit(1)
	}
	reply("ready %d %s %s", dev.ListenPort(), impl, dev.PublicKey())

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "apply":
			var peers []Peer
			if err := json.Unmarshal([]byte(arg), &peers); err != nil {
				reply("err %v", err)
			} else if err := dev.Apply(peers); err != nil {
				reply("err %v", err)
			} else {
				reply("ok")
			}
		case "peers":
			st, err := dev.Peers()
			if err != nil {
				reply("err %v", err)
				break
			}
			b, _ := json.Marshal(st)
			reply("ok %s", b)
		case "addrs":
			var extra []netip.Prefix
			if err := json.Unmarshal([]byte(arg), &extra); err != nil {
				reply("err %v", err)
			} else if err := dev.SetAddresses(extra); err != nil {
				reply("err %v", err)
			} else {
				reply("ok")
			}
		case "reopen":
			d2, _, err := Open(cfg, log)
			if err == nil {
				d2.Close()
			}
			reply("ok %v", err)
		case "close":
			if err := dev.Close(); err != nil {
				reply("err %v", err)
			} else {
				reply("ok")
			}
			os.Exit(0)
		default:
			reply("err unknown command %q", cmd)
		}
	}
	dev.Close()
	os.Exit(0)
}

// skipOrFail skips the test, or fails it when CI=true: CI runs as root with
// every tool installed, so a test that cannot run there is a broken test.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

func TestE2E(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to create network namespaces and WireGuard devices; run as root (CI does)")
	}
	for _, tool := range []string{"ip", "wg", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %q on PATH (apt-get install iproute2 wireguard-tools iputils-ping): %v", tool, err)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		skipOrFail(t, "needs /dev/net/tun for wireguard-go: %v", err)
	}
	exe, err := os.Executable() // not /proc/self/exe: that would be ip's own binary
	if err != nil {
		t.Fatal(err)
	}

	suffix := randHex(t, 3)
	var a, b node
	for i, n := range []*node{&a, &b} {
		side := string(rune('a' + i))
		key, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		*n = node{
			ns:       "lt-wg-" + side + "-" + suffix,
			veth:     "lv" + side + suffix,
			underlay: netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}),
			overlay:  netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}),
			cfg: Config{
				Name:       "lt" + side + suffix,
				PrivateKey: key,
				Address:    netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)}), 32),
				Route:      netip.MustParsePrefix("100.64.0.0/10"),
			},
		}
		ns := n.ns
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { runQuiet("ip", "netns", "del", ns) })
		name := n.cfg.Name
		t.Cleanup(func() { os.Remove(filepath.Join(socketDir, name+".sock")) })
	}
	run(t, "ip", "link", "add", a.veth, "netns", a.ns, "type", "veth", "peer", "name", b.veth, "netns", b.ns)
	for _, n := range []*node{&a, &b} {
		run(t, "ip", "-n", n.ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", n.ns, "addr", "add", n.underlay.String()+"/24", "dev", n.veth)
		run(t, "ip", "-n", n.ns, "link", "set", n.veth, "up")
	}

	for _, n := range []*node{&a, &b} {
		n.h = startHelper(t, exe, n.ns, n.cfg)
		t.Logf("%s: %s listening on %d", n.cfg.Name, n.h.impl, n.h.port)
		if n.h.port == 0 {
			t.Fatalf("%s: ListenPort() = 0 after Open with a random port", n.cfg.Name)
		}
		if n.h.pub != n.cfg.PrivateKey.PublicKey() {
			t.Fatalf("%s: PublicKey() = %s, want %s", n.cfg.Name, n.h.pub, n.cfg.PrivateKey.PublicKey())
		}
	}
	if a.h.impl == Userspace {
		if _, err := os.Stat(filepath.Join(socketDir, a.cfg.Name+".sock")); err != nil {
			t.Fatalf("wireguard-go device has no UAPI socket: %v", err)
		}
	}
	show := run(t, "ip", "netns", "exec", a.ns, "wg", "show", a.cfg.Name)
	if !strings.Contains(show, a.cfg.PrivateKey.PublicKey().String()) {
		t.Fatalf("wg show %s does not show the device's public key:\n%s", a.cfg.Name, show)
	}
	addrs := run(t, "ip", "-n", a.ns, "addr", "show", "dev", a.cfg.Name)
	if !strings.Contains(addrs, "100.64.0.1/32") || !strings.Contains(addrs, "UP") {
		t.Fatalf("%s lacks its address or is down:\n%s", a.cfg.Name, addrs)
	}
	if r := run(t, "ip", "-n", a.ns, "route", "show", "100.64.0.0/10"); !strings.Contains(r, "dev "+a.cfg.Name) {
		t.Fatalf("no route 100.64.0.0/10 through %s: %q", a.cfg.Name, r)
	}
	// SetAddresses adds workload addresses, removes stale ones, keeps the
	// device's own, and is idempotent.
	v4addrs := func() string {
		out := run(t, "ip", "-n", a.ns, "-4", "-o", "addr", "show", "dev", a.cfg.Name)
		var got []string
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "100.64.") {
				got = append(got, f)
			}
		}
		return strings.Join(got, " ")
	}
	for _, step := range []struct{ extra, want string }{
		{`["100.64.0.101/32","100.64.0.102/32"]`, "100.64.0.1/32 100.64.0.101/32 100.64.0.102/32"},
		{`["100.64.0.101/32","100.64.0.102/32"]`, "100.64.0.1/32 100.64.0.101/32 100.64.0.102/32"},
		{`["100.64.0.102/32"]`, "100.64.0.1/32 100.64.0.102/32"},
		{`[]`, "100.64.0.1/32"},
	} {
		a.h.cmd(t, "addrs "+step.extra)
		if got := v4addrs(); got != step.want {
			t.Fatalf("after SetAddresses(%s): addresses %q, want %q", step.extra, got, step.want)
		}
	}
	fmt.Fprintln(a.h.in, `addrs ["100.64.0.0/24"]`)
	if got := a.h.read(t); !strings.Contains(got, ErrInvalidAddress.Error()) {
		t.Fatalf("SetAddresses with a /24: %s, want %v", got, ErrInvalidAddress)
	}
	if got := a.h.cmd(t, "reopen"); !strings.Contains(got, ErrExists.Error()) {
		t.Fatalf("second Open of %s: %q, want an ErrExists error", a.cfg.Name, got)
	}

	peerOf := func(n *node, extra ...string) Peer {
		return Peer{
			PublicKey:  n.cfg.PrivateKey.PublicKey(),
			Endpoint:   net.UDPAddrFromAddrPort(netip.AddrPortFrom(n.underlay, uint16(n.h.port))),
			AllowedIPs: append([]netip.Prefix{netip.PrefixFrom(n.overlay, 32)}, pfx(extra...)...),
		}
	}
	a.h.apply(t, peerOf(&b))
	b.h.apply(t, peerOf(&a))

	// Traffic flows through the tunnel.
	waitFor(t, 20*time.Second, "ping from A to B's overlay address", func() bool {
		return exec.Command("ip", "netns", "exec", a.ns, "ping", "-c1", "-W1", b.overlay.String()).Run() == nil
	})
	show = run(t, "ip", "netns", "exec", a.ns, "wg", "show", a.cfg.Name)
	if !strings.Contains(show, "peer: "+b.cfg.PrivateKey.PublicKey().String()) || !strings.Contains(show, "latest handshake") {
		t.Fatalf("wg show %s lacks the peer or its handshake:\n%s", a.cfg.Name, show)
	}
	hs := a.h.onlyPeer(t, b.cfg.PrivateKey.PublicKey())
	if hs.LastHandshake.IsZero() || hs.RxBytes == 0 || hs.TxBytes == 0 {
		t.Fatalf("Peers() after ping: %+v, want a handshake and traffic both ways", hs)
	}
	wgHS := run(t, "ip", "netns", "exec", a.ns, "wg", "show", a.cfg.Name, "latest-handshakes")

	// Applying the same peers changes nothing.
	a.h.apply(t, peerOf(&b))
	if got := a.h.onlyPeer(t, b.cfg.PrivateKey.PublicKey()); !got.LastHandshake.Equal(hs.LastHandshake) {
		t.Fatalf("re-Apply of the same peers reset the handshake: %v, was %v", got.LastHandshake, hs.LastHandshake)
	}
	if got := run(t, "ip", "netns", "exec", a.ns, "wg", "show", a.cfg.Name, "latest-handshakes"); got != wgHS {
		t.Fatalf("wg show latest-handshakes changed after re-Apply: %q, was %q", got, wgHS)
	}

	// Changing allowed IPs updates the peer in place: the session survives.
	a.h.apply(t, peerOf(&b, "198.19.7.0/24"))
	got := a.h.onlyPeer(t, b.cfg.PrivateKey.PublicKey())
	if !got.LastHandshake.Equal(hs.LastHandshake) {
		t.Fatalf("changing allowed IPs reset the handshake: %v, was %v", got.LastHandshake, hs.LastHandshake)
	}
	if want := pfx("100.64.0.2/32", "198.19.7.0/24"); !equalPrefixSets(got.AllowedIPs, want) {
		t.Fatalf("allowed IPs after update: %v, want %v", got.AllowedIPs, want)
	}
	if err := exec.Command("ip", "netns", "exec", a.ns, "ping", "-c1", "-W2", b.overlay.String()).Run(); err != nil {
		t.Fatalf("ping after in-place update: %v", err)
	}

	// An empty peer set removes the peer, and traffic stops.
	a.h.apply(t)
	if st := a.h.peers(t); len(st) != 0 {
		t.Fatalf("Peers() after Apply(nil): %+v", st)
	}
	if p := run(t, "ip", "netns", "exec", a.ns, "wg", "show", a.cfg.Name, "peers"); strings.TrimSpace(p) != "" {
		t.Fatalf("wg show %s peers after Apply(nil): %q", a.cfg.Name, p)
	}
	if err := exec.Command("ip", "netns", "exec", a.ns, "ping", "-c2", "-i0.2", "-W1", b.overlay.String()).Run(); err == nil {
		t.Fatal("ping from A to B still works after A's peers were removed")
	}

	// Close removes the interface and the UAPI socket.
	a.h.close(t)
	if out, err := exec.Command("ip", "-n", a.ns, "link", "show", a.cfg.Name).CombinedOutput(); err == nil {
		t.Fatalf("%s still exists after Close:\n%s", a.cfg.Name, out)
	}
	if _, err := os.Stat(filepath.Join(socketDir, a.cfg.Name+".sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("UAPI socket after Close: %v, want it gone", err)
	}
}

type node struct {
	ns, veth          string
	underlay, overlay netip.Addr
	cfg               Config
	h                 *helper
}

// helper is a running TestHelperProcess.
type helper struct {
	name string
	in   io.WriteCloser
	out  chan string // protocol lines from stdout
	port int
	impl Impl
	pub  wgtypes.Key
	done chan struct{}
}

const helperTimeout = 15 * time.Second

func startHelper(t *testing.T, exe, ns string, cfg Config) *helper {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestHelperProcess$", "-test.count=1")
	c.Env = append(os.Environ(), helperEnv+"="+string(raw))
	stderr := &syncbuf.Buffer{}
	c.Stderr = stderr
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("starting helper in %s: %v", ns, err)
	}
	h := &helper{name: cfg.Name, in: stdin, out: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(h.out)
		s := bufio.NewScanner(stdout)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			if line, ok := strings.CutPrefix(s.Text(), helperPrefix); ok {
				h.out <- line
			}
		}
	}()
	go func() { c.Wait(); close(h.done) }()
	t.Cleanup(func() {
		stdin.Close() // the helper closes its device on EOF
		select {
		case <-h.done:
		case <-time.After(helperTimeout):
			c.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("helper %s stderr:\n%s", cfg.Name, stderr.String())
		}
	})

	line := h.read(t)
	var port int
	var impl, pub string
	if _, err := fmt.Sscanf(line, "ready %d %s %s", &port, &impl, &pub); err != nil {
		t.Fatalf("helper %s did not start: %q\nstderr:\n%s", cfg.Name, line, stderr.String())
	}
	h.port, h.impl = port, Impl(impl)
	if h.pub, err = wgtypes.ParseKey(pub); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *helper) read(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-h.out:
		if !ok {
			t.Fatalf("helper %s exited", h.name)
		}
		return line
	case <-time.After(helperTimeout):
		t.Fatalf("helper %s did not answer within %v", h.name, helperTimeout)
		return ""
	}
}

// cmd sends one command and returns the answer after "ok".
func (h *helper) cmd(t *testing.T, line string) string {
	t.Helper()
	if _, err := fmt.Fprintln(h.in, line); err != nil {
		t.Fatalf("helper %s: %v", h.name, err)
	}
	got := h.read(t)
	if got != "ok" && !strings.HasPrefix(got, "ok ") {
		t.Fatalf("helper %s: %s: %s", h.name, strings.Fields(line)[0], got)
	}
	return strings.TrimPrefix(strings.TrimPrefix(got, "ok"), " ")
}

func (h *helper) apply(t *testing.T, peers ...Peer) {
	t.Helper()
	b, err := json.Marshal(peers)
	if err != nil {
		t.Fatal(err)
	}
	h.cmd(t, "apply "+string(b))
}

func (h *helper) peers(t *testing.T) []PeerStatus {
	t.Helper()
	var st []PeerStatus
	if err := json.Unmarshal([]byte(h.cmd(t, "peers")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (h *helper) onlyPeer(t *testing.T, k wgtypes.Key) PeerStatus {
	t.Helper()
	st := h.peers(t)
	if len(st) != 1 || st[0].PublicKey != k {
		t.Fatalf("helper %s: Peers() = %+v, want only %s", h.name, st, k)
	}
	return st[0]
}

func (h *helper) close(t *testing.T) {
	t.Helper()
	h.cmd(t, "close")
	select {
	case <-h.done:
	case <-time.After(helperTimeout):
		t.Fatalf("helper %s did not exit after close", h.name)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func runQuiet(name string, args ...string) { exec.Command(name, args...).Run() }

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func equalPrefixSets(a, b []netip.Prefix) bool {
	na, nb := normalize(a), normalize(b)
	if len(na) != len(nb) {
		return false
	}
	for i := range na {
		if na[i] != nb[i] {
			return false
		}
	}
	return true
}
