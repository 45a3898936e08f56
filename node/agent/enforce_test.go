package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
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
