package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
)

// synPacket is a TCP SYN from src to dst:port.
func synPacket(src, dst netip.Addr, port uint16) []byte {
	b := make([]byte, 40)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], 40)
	b[9] = 6
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[20:22], 40000)
	binary.BigEndian.PutUint16(b[22:24], port)
	b[32] = 5 << 4
	b[33] = 0x02
	return b
}

// sshView lets 100.64.0.9 (identity 400) reach this node on TCP 22.
func sshView(version uint64) *view.View {
	remote := view.MustAddr("100.64.0.9")
	self, _ := view.AddrFrom(nodeIP)
	return &view.View{
		Node: "n1", Version: version,
		Identities: []view.IdentityEntry{{IP: self, Identity: 300}, {IP: remote, Identity: 400}},
		Workloads: []view.WorkloadRules{{
			Workload: "default/n1", IP: self, Identity: 300,
			Ingress: view.Rules{Isolated: true, Identities: []view.IdentityRule{{Identity: 400,
				Ports: []view.PortRange{{Protocol: inventory.TCP, First: 22, Last: 22}}}}},
			Egress: view.Rules{Isolated: true},
		}},
	}
}

func TestResolveEnforce(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"", EnforceAuto, nil},
		{EnforceAuto, EnforceAuto, nil},
		{EnforceUserspace, EnforceUserspace, nil},
		{EnforceOff, EnforceOff, nil},
		{EnforceEBPF, EnforceEBPF, nil},
	} {
		got, err := resolveEnforce(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("resolveEnforce(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := resolveEnforce("bpf"); err == nil {
		t.Error("resolveEnforce(bpf) accepted an unknown mode")
	}
}

func TestEnforce(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Enforce = EnforceUserspace
	a := startAgent(t, cfg)
	a.device(t)
	s := fc.nextStream(t)
	wcfg := <-a.cfgs
	if wcfg.Filter == nil {
		t.Fatal("--enforce userspace gave the device no filter")
	}
	remote := netip.MustParseAddr("100.64.0.9")
	allowed, denied := synPacket(remote, nodeIP, 22), synPacket(remote, nodeIP, 23)
	if wcfg.Filter.Inbound(allowed) {
		t.Error("the filter passed a packet before any view")
	}

	s.push(t, wire.StreamMessage{Full: sshView(1)})
	eventually(t, "the view in the filter", func() bool { return wcfg.Filter.Inbound(allowed) })
	if wcfg.Filter.Inbound(denied) {
		t.Error("the filter passed a port the view does not allow")
	}
	if wcfg.Filter.Outbound(synPacket(nodeIP, remote, 22)) {
		t.Error("the filter passed the reverse direction")
	}
	ctx := context.Background()
	eventually(t, "the counters in the status", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.Enforce == EnforceUserspace && st.Enforcement != nil &&
			st.Enforcement.ViewVersion == 1 && st.Enforcement.Passed >= 1 && st.Enforcement.Dropped >= 3 &&
			st.Enforcement.Packets["policy"] >= 2 && st.Enforcement.Events >= 4
	})
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	// Restarted with the coordinator away, the saved view is in the filter
	// before the device exists.
	fc.down.Store(true)
	var inFilterAtOpen bool
	r := &running{clock: newFakeClock(time.Now()), dev: make(chan *wg.Fake, 1), cfgs: make(chan wg.Config, 1), done: make(chan error, 1)}
	d := testDeps(r)
	open := d.open
	d.open = func(c wg.Config, l *slog.Logger) (wg.Device, wg.Impl, error) {
		inFilterAtOpen = c.Filter != nil && c.Filter.Inbound(allowed)
		return open(c, l)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- run(runCtx, cfg, nil, d) }()
	r.device(t)
	cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	if !inFilterAtOpen {
		t.Error("the saved view was not in the filter when the device opened")
	}
}

func TestEnforceOff(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Enforce = EnforceOff
	a := startAgent(t, cfg)
	a.device(t)
	fc.nextStream(t)
	if wcfg := <-a.cfgs; wcfg.Filter != nil {
		t.Error("--enforce off gave the device a filter")
	}
	eventually(t, "enforce off in the status", func() bool {
		st, err := QueryStatus(context.Background(), dir)
		return err == nil && st.Enforce == EnforceOff && st.Enforcement == nil
	})
}

// bigView is sshView with n port ranges more in its ingress rules.
func bigView(version uint64, n int) *view.View {
	v := sshView(version)
	for i := range n {
		p := uint16(1000 + 2*i)
		v.Workloads[0].Ingress.Any = append(v.Workloads[0].Ingress.Any, view.PortRange{Protocol: inventory.TCP, First: p, Last: p})
	}
	return v
}

// TestViewTooLargeFailsClosed: when the enforcer cannot load a view (here
// the userspace filter with a small MaxEntries), the agent keeps the old
// rules and adds none of the new view's peers to WireGuard; it says so in
// status, metrics and the log, and applies the next view that loads.
func TestViewTooLargeFailsClosed(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Enforce = EnforceUserspace
	cfg.MetricsListen = freePort(t)
	a := startAgentWith(t, cfg, func(d *deps) { d.filter.MaxEntries = 20 })
	dev := a.device(t)
	s := fc.nextStream(t)
	ctx := context.Background()

	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	v1 := sshView(1)
	v1.Peers = []view.Peer{
		peer("n2", k1, "198.18.0.2:51820", "100.64.0.9/32"),
		peer("n4", k3, "198.18.0.4:51820", "100.64.0.30/32", "100.64.0.31/32"),
	}
	s.push(t, wire.StreamMessage{Full: v1})
	want1 := []wg.Peer{
		wgPeer(k1, "198.18.0.2:51820", "100.64.0.9/32"),
		wgPeer(k3, "198.18.0.4:51820", "100.64.0.30/32", "100.64.0.31/32"),
	}
	eventuallyPeers(t, dev, "view 1's peers", want1)

	// View 2 adds peer n3 and more rules than the filter holds; it also
	// narrows n4 and moves n2's endpoint.
	v2 := bigView(2, 30)
	v2.Peers = []view.Peer{
		peer("n2", k1, "198.18.0.12:51820", "100.64.0.9/32"),
		peer("n3", k2, "198.18.0.3:51820", "100.64.0.20/32"),
		peer("n4", k3, "198.18.0.4:51820", "100.64.0.30/32"),
	}
	s.push(t, wire.StreamMessage{Full: v2})
	var st Status
	eventually(t, "view 2 received", func() bool {
		var err error
		st, err = QueryStatus(ctx, dir)
		return err == nil && st.ViewVersion == 2
	})
	// No new peer; n4 narrowed as view 2 says (narrowing is safe), n2 at
	// its new endpoint.
	want2 := []wg.Peer{
		wgPeer(k1, "198.18.0.12:51820", "100.64.0.9/32"),
		wgPeer(k3, "198.18.0.4:51820", "100.64.0.30/32"),
	}
	eventuallyPeers(t, dev, "view 2's peers, failed closed", want2)
	for _, applied := range dev.Applied() {
		for _, p := range applied {
			if p.PublicKey == k2 {
				t.Fatalf("peer n3 of the view whose rules did not load was configured: %+v", applied)
			}
		}
	}
	if v := savedVersion(dir); v != 1 {
		t.Errorf("view.json holds version %d, want 1 (the view in force)", v)
	}
	if st.EnforcedVersion != 1 || !strings.Contains(st.ViewError, "does not fit") || st.Enforcement == nil || st.Enforcement.ViewVersion != 1 {
		t.Errorf("status after the refused view: enforced %d, error %q, enforcement %+v; want 1, a too-large error, filter at 1",
			st.EnforcedVersion, st.ViewError, st.Enforcement)
	}
	body := scrape(t, cfg.MetricsListen)
	for _, want := range []string{
		"latch_node_view_version 1",
		"latch_node_view_version_received 2",
		`latch_node_view_apply_failures_total{stage="rules"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("node metrics lack %q:\n%s", want, body)
		}
	}

	// A keepalive retries the view, which fails closed again.
	s.push(t, wire.StreamMessage{})
	eventually(t, "the retry at the keepalive", func() bool {
		return strings.Contains(scrape(t, cfg.MetricsListen), `latch_node_view_apply_failures_total{stage="rules"} 2`)
	})
	if !peersEqual(dev.Current(), want2) {
		t.Errorf("peers after the retry: %+v, want %+v", dev.Current(), want2)
	}

	// The next view that loads is applied whole.
	v3 := sshView(3)
	v3.Peers = v2.Peers
	s.push(t, wire.StreamMessage{Full: v3})
	want3 := []wg.Peer{want2[0], wgPeer(k2, "198.18.0.3:51820", "100.64.0.20/32"), want2[1]}
	eventuallyPeers(t, dev, "view 3's peers", want3)
	eventually(t, "status of view 3", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.ViewVersion == 3 && st.EnforcedVersion == 3 && st.ViewError == "" && st.LastError == ""
	})
	eventually(t, "view.json at version 3", func() bool { return savedVersion(dir) == 3 })
}

// eventuallyPeers waits until dev holds exactly want.
func eventuallyPeers(t *testing.T, dev *wg.Fake, what string, want []wg.Peer) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !peersEqual(dev.Current(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: the device holds %+v, want %+v", what, dev.Current(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestIntersectPrefixes(t *testing.T) {
	p := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct{ a, b, want []netip.Prefix }{
		{p("100.64.0.0/24"), p("100.64.0.5/32"), p("100.64.0.5/32")},
		{p("100.64.0.5/32"), p("100.64.0.0/24"), p("100.64.0.5/32")},
		{p("100.64.0.5/32", "100.64.1.0/24"), p("100.64.1.7/32", "100.64.0.5/32"), p("100.64.0.5/32", "100.64.1.7/32")},
		{p("100.64.0.5/32"), p("100.64.0.6/32"), nil},
		{p("198.19.0.0/16"), nil, nil},
	} {
		if got := intersectPrefixes(tc.a, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("intersectPrefixes(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
