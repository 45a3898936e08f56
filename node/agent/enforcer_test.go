package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
)

// fakeKernel stands in for the eBPF enforcer: an enforce.Fake that also
// records Attach and SetCgroups, and what happened in which order.
type fakeKernel struct {
	*enforce.Fake

	mu        sync.Mutex
	calls     []string            // "apply N", "attach IFACE cgroups=B", "cgroups PATH=WL ..."; guarded by mu
	cgroups   []map[string]string // every SetCgroups assignment; guarded by mu
	cgroupErr error               // what SetCgroups returns; guarded by mu
	attachErr error               // what Attach returns; guarded by mu
}

var _ kernelEnforcer = (*fakeKernel)(nil)

func newFakeKernel() *fakeKernel { return &fakeKernel{Fake: enforce.NewFake()} }

func (k *fakeKernel) note(s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, s)
}

func (k *fakeKernel) Apply(v *view.View) error {
	err := k.Fake.Apply(v)
	if err == nil {
		k.note(fmt.Sprintf("apply %d", v.Version))
	}
	return err
}

func (k *fakeKernel) Attach(iface string, cgroups bool) error {
	k.note(fmt.Sprintf("attach %s cgroups=%v", iface, cgroups))
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.attachErr
}

func (k *fakeKernel) SetCgroups(c map[string]string) error {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, p+"="+c[p])
	}
	k.note("cgroups " + strings.Join(parts, " "))
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cgroups = append(k.cgroups, maps.Clone(c))
	return k.cgroupErr
}

func (k *fakeKernel) log() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.calls)
}

func (k *fakeKernel) lastCgroups() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cgroups) == 0 {
		return nil
	}
	return k.cgroups[len(k.cgroups)-1]
}

// withKernel makes the agent load k as its eBPF enforcer, with a cgroup
// check that takes any path.
func withKernel(k *fakeKernel) func(*deps) {
	return func(d *deps) {
		d.loadEBPF = func(string) (kernelEnforcer, error) { return k, nil }
		d.isCgroup = func(string) error { return nil }
	}
}

// webCgroup is the cgroup the tests give workload default/web.
const webCgroup = "/sys/fs/cgroup/latch-test/web.service"

// webView is sshView with workload default/web (100.64.1.1) in it.
func webView(version uint64) *view.View {
	v := sshView(version)
	v.Workloads = append(v.Workloads, view.WorkloadRules{Workload: "default/web", IP: view.MustAddr("100.64.1.1"), Identity: 301,
		Ingress: view.Rules{Isolated: true}, Egress: view.Rules{Isolated: true}})
	return v
}

// TestEBPFEnforcer drives the agent's eBPF path with a fake enforcer: it
// attaches to the interface (with the cgroup hooks, as a workload has a
// cgroup), applies every view and binds the cgroups of the workloads in
// it, fails closed when the enforcer refuses a view, turns its events into
// flow records, reports its counters in status and metrics, and closes
// it when it stops.
func TestEBPFEnforcer(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Enforce = EnforceEBPF
	cfg.WorkloadCgroups = map[string]string{"default/web": webCgroup}
	cfg.FlowInterval = 100 * time.Millisecond
	cfg.MetricsListen = freePort(t)
	k := newFakeKernel()
	a := startAgentWith(t, cfg, withKernel(k))
	dev := a.device(t)
	s := fc.nextStream(t)
	ctx := context.Background()
	if wcfg := <-a.cfgs; wcfg.Filter != nil {
		t.Error("the eBPF enforcer put a packet filter in wireguard-go's path")
	}
	eventually(t, "ebpf in the status", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.Enforce == EnforceEBPF
	})
	if got, want := k.log(), []string{"attach latch-test cgroups=true"}; !slices.Equal(got, want) {
		t.Fatalf("enforcer calls before the first view: %q, want %q", got, want)
	}

	// Each view is applied, and then the cgroups of its workloads bound:
	// default/web's once it is in the view.
	k1, k2 := newKey(t), newKey(t)
	v1 := sshView(1)
	v1.Peers = []view.Peer{peer("n2", k1, "198.18.0.2:51820", "100.64.0.9/32")}
	s.push(t, wire.StreamMessage{Full: v1})
	eventuallyPeers(t, dev, "view 1's peers", []wg.Peer{wgPeer(k1, "198.18.0.2:51820", "100.64.0.9/32")})
	v2 := webView(2)
	v2.Peers = v1.Peers
	s.push(t, wire.StreamMessage{Full: v2})
	eventually(t, "view 2 in force", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.EnforcedVersion == 2
	})
	if got, want := k.log()[1:], []string{"apply 1", "cgroups ", "apply 2", "cgroups " + webCgroup + "=default/web"}; !slices.Equal(got, want) {
		t.Fatalf("enforcer calls for views 1 and 2: %q, want %q", got, want)
	}

	// The enforcer refuses view 3, which adds peer n3: its rules and its
	// new peer wait, the previous rules stay in force; the next keepalive
	// tries again and, the enforcer willing, applies it whole.
	k.FailApply(errors.New("view does not fit the eBPF maps"))
	v3 := webView(3)
	v3.Peers = append(v1.Peers, peer("n3", k2, "198.18.0.3:51820", "100.64.0.20/32"))
	s.push(t, wire.StreamMessage{Full: v3})
	var st Status
	eventually(t, "view 3 received", func() bool {
		var err error
		st, err = QueryStatus(ctx, dir)
		return err == nil && st.ViewVersion == 3
	})
	if st.EnforcedVersion != 2 || st.ViewError != "eBPF enforcer: view does not fit the eBPF maps" {
		t.Errorf("status after the refused view: enforced %d, error %q; want 2 and the enforcer's error", st.EnforcedVersion, st.ViewError)
	}
	for _, applied := range dev.Applied() {
		for _, p := range applied {
			if p.PublicKey == k2 {
				t.Fatalf("peer n3 of the view the enforcer refused was configured: %+v", applied)
			}
		}
	}
	if v := savedVersion(dir); v != 2 {
		t.Errorf("view.json holds version %d, want 2 (the view in force)", v)
	}
	if body := scrape(t, cfg.MetricsListen); !strings.Contains(body, `latch_node_view_apply_failures_total{stage="rules"} 1`) {
		t.Errorf("metrics lack the failed application:\n%s", body)
	}
	k.FailApply(nil)
	s.push(t, wire.StreamMessage{})
	eventuallyPeers(t, dev, "view 3's peers after the retry", []wg.Peer{
		wgPeer(k1, "198.18.0.2:51820", "100.64.0.9/32"), wgPeer(k2, "198.18.0.3:51820", "100.64.0.20/32")})
	eventually(t, "view 3 in force", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.EnforcedVersion == 3 && st.ViewError == ""
	})

	// Events become flow records; one of no local workload does not.
	remote, self := view.MustAddr("100.64.0.9"), view.MustAddr(nodeIP.String())
	k.Send(enforce.Event{Time: time.Now(), Direction: enforce.Ingress, Verdict: enforce.Dropped, Reason: "revoked", Protocol: 6,
		Src: remote, Dst: self, SrcPort: 40000, DstPort: 22, Workload: "default/n1", RemoteIdentity: 400, Bytes: 60})
	k.Send(enforce.Event{Time: time.Now(), Direction: enforce.Egress, Verdict: enforce.WouldDeny, Reason: "connect-denied", Protocol: 17,
		Src: self, Dst: remote, SrcPort: 5000, DstPort: 53, Workload: "default/n1", RemoteIdentity: 400})
	k.Send(enforce.Event{Time: time.Now(), Direction: enforce.Ingress, Verdict: enforce.Dropped, Reason: "no-local-workload", Protocol: 6,
		Src: remote, Dst: view.MustAddr("100.64.0.77"), DstPort: 22, Bytes: 60})
	eventually(t, "the events' flow records at the coordinator", func() bool {
		var in, out bool
		for _, r := range fc.flowRecords() {
			in = in || r.Direction == wire.DirIngress && r.Verdict == wire.VerdictDenied && r.Reason == "revoked" && r.Port == 22 &&
				r.Src == remote.Netip() && r.Dst == nodeIP && r.Protocol == "TCP" && r.Workload == "default/n1" && r.Packets == 1 && r.Bytes == 60
			out = out || r.Direction == wire.DirEgress && r.Verdict == wire.VerdictWouldDeny && r.Reason == "connect-denied" && r.Port == 53 && r.Protocol == "UDP"
		}
		return in && out
	})
	for _, r := range fc.flowRecords() {
		if r.Workload == "" || r.Reason == "no-local-workload" {
			t.Errorf("a record of an event of no local workload: %+v", r)
		}
	}

	// The enforcer's counters, in status and in metrics.
	es := enforce.Stats{FlowCapacity: 131072, FlowsCreated: 40, FlowMisses: new(uint64(7)), BindsRefused: new(uint64(2)),
		SendsRefused: new(uint64(1)), FlowsRecreated: new(uint64(3)), EventsLost: 4}
	es.Add("identity", enforce.Allowed, 5)
	es.Add("revoked", enforce.Dropped, 3)
	k.SetStats(es, nil)
	eventually(t, "the counters in the status", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.Enforcement != nil && st.Enforcement.ViewVersion == 3 && st.Enforcement.Passed == 5 &&
			st.Enforcement.Dropped == 3 && st.Enforcement.Packets["revoked"] == 3 && st.Enforcement.Events == 3 &&
			st.Enforcement.FlowMisses != nil && *st.Enforcement.FlowMisses == 7 && st.Enforcement.Flows == nil
	})
	body := scrape(t, cfg.MetricsListen)
	for _, want := range []string{
		`latch_node_enforcer_mode{mode="ebpf"} 1`,
		`latch_node_enforcer_mode{mode="userspace"} 0`,
		`latch_node_enforcer_packets_total{reason="identity",verdict="allowed"} 5`,
		`latch_node_enforcer_packets_total{reason="revoked",verdict="dropped"} 3`,
		"latch_node_enforcer_events_lost_total 4",
		"latch_node_conntrack_capacity 131072",
		"latch_node_conntrack_entries_created_total 40",
		"latch_node_conntrack_entries_recreated_total 3",
		"latch_node_conntrack_misses_total 7",
		`latch_node_enforcer_address_refused_total{op="bind"} 2`,
		`latch_node_enforcer_address_refused_total{op="send"} 1`,
		`latch_node_enforcer_map_entries{map="workloads"} 2`,
		"latch_node_view_version 3",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("node metrics lack %q", want)
		}
	}
	for _, unkept := range []string{"latch_node_conntrack_evictions_total", `latch_node_enforcer_map_entries{map="conntrack"}`} {
		if strings.Contains(body, unkept) {
			t.Errorf("node metrics have %s, which this enforcer does not keep", unkept)
		}
	}
	k.SetStats(enforce.Stats{}, errors.New("reading the counters map: bad"))
	eventually(t, "no counters in the status while the enforcer cannot read them", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && st.Enforcement == nil && st.Flows != nil
	})

	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	if !k.Closed() {
		t.Error("the agent did not close the enforcer when it stopped")
	}
}

// TestEBPFEnforcerRestart: a restarted agent loads the saved view into
// the eBPF enforcer, with its workloads' cgroups, before the device opens
// and before the programs attach.
func TestEBPFEnforcerRestart(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Enforce = EnforceEBPF
	cfg.WorkloadCgroups = map[string]string{"default/web": webCgroup}
	a := startAgentWith(t, cfg, withKernel(newFakeKernel()))
	a.device(t)
	fc.nextStream(t).push(t, wire.StreamMessage{Full: webView(4)})
	eventually(t, "view 4 saved", func() bool { return savedVersion(dir) == 4 })
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}

	fc.down.Store(true)
	k := newFakeKernel()
	a = startAgentWith(t, cfg, func(d *deps) {
		withKernel(k)(d)
		open := d.open
		d.open = func(c wg.Config, l *slog.Logger) (wg.Device, wg.Impl, error) {
			k.note("open")
			return open(c, l)
		}
	})
	a.device(t)
	want := []string{"apply 4", "cgroups " + webCgroup + "=default/web", "open", "attach latch-test cgroups=true"}
	eventually(t, "the saved view in the enforcer", func() bool { return len(k.log()) >= len(want) })
	if got := k.log()[:len(want)]; !slices.Equal(got, want) {
		t.Errorf("enforcer calls at a restart: %q, want %q", got, want)
	}
}

// TestEBPFEnforcerFailures: --enforce ebpf stops with an error that says
// what to do when the enforcer does not load or attach; auto falls back to
// the userspace filter; a cgroup the enforcer cannot bind shows in status
// and leaves the view's rules in force.
func TestEBPFEnforcerFailures(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	cfg := testConfig(fc, filepath.Join(t.TempDir(), "state"), fc.token)
	cfg.Enforce = EnforceEBPF
	r := &running{clock: newFakeClock(time.Now()), dev: make(chan *wg.Fake, 1), cfgs: make(chan wg.Config, 1), done: make(chan error, 1)}
	d := testDeps(r) // loading eBPF fails
	// A broken agent would run on: the context ends it.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := run(ctx, cfg, nil, d)
	if err == nil || !strings.Contains(err.Error(), "--enforce ebpf") || !strings.Contains(err.Error(), "--enforce userspace") {
		t.Errorf("--enforce ebpf where it does not load: %v, want an error that names --enforce userspace", err)
	}

	k := newFakeKernel()
	k.attachErr = errors.New("attaching the eBPF enforcer to latch-test: no TCX")
	withKernel(k)(&d)
	if err := run(ctx, cfg, nil, d); err == nil || !strings.Contains(err.Error(), "no TCX") {
		t.Errorf("an enforcer that does not attach: %v, want its error", err)
	}
	if !k.Closed() {
		t.Error("the enforcer that did not attach was not closed")
	}

	// auto, eBPF unavailable: the userspace filter.
	fc2 := newFakeCoord(t, 20*time.Minute)
	dir2 := filepath.Join(t.TempDir(), "state")
	a := startAgent(t, testConfig(fc2, dir2, fc2.token))
	a.device(t)
	fc2.nextStream(t)
	if wcfg := <-a.cfgs; wcfg.Filter == nil {
		t.Error("auto without eBPF gave the device no userspace filter")
	}
	eventually(t, "userspace in the status", func() bool {
		st, err := QueryStatus(context.Background(), dir2)
		return err == nil && st.Enforce == EnforceUserspace
	})

	// A cgroup the enforcer refuses: the rules load, the error shows.
	fc3 := newFakeCoord(t, 20*time.Minute)
	dir3 := filepath.Join(t.TempDir(), "state")
	cfg3 := testConfig(fc3, dir3, fc3.token)
	cfg3.Enforce = EnforceEBPF
	cfg3.WorkloadCgroups = map[string]string{"default/web": webCgroup}
	k3 := newFakeKernel()
	k3.cgroupErr = errors.New("setting cgroups: not a directory of the cgroup v2 hierarchy")
	a3 := startAgentWith(t, cfg3, withKernel(k3))
	a3.device(t)
	fc3.nextStream(t).push(t, wire.StreamMessage{Full: webView(1)})
	eventually(t, "the cgroup error in the status, view 1 in force", func() bool {
		st, err := QueryStatus(context.Background(), dir3)
		return err == nil && st.EnforcedVersion == 1 && st.ViewError == "" &&
			st.LastError == "eBPF enforcer: setting cgroups: not a directory of the cgroup v2 hierarchy"
	})
	if got := k3.lastCgroups(); got[webCgroup] != "default/web" {
		t.Errorf("cgroups given to the enforcer: %v", got)
	}
}
