package agent

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/node/enforce/userspace"
	"github.com/latchnet/latch/node/flowlog"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func (fc *fakeCoord) postFlows(w http.ResponseWriter, r *http.Request) {
	if _, ok := fc.node(w, r); !ok {
		return
	}
	if fc.flowsDown.Load() {
		fail(w, http.StatusServiceUnavailable, "down", "down")
		return
	}
	var b wire.FlowBatch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		fail(w, http.StatusBadRequest, err.Error(), "bad_request")
		return
	}
	fc.mu.Lock()
	fc.flows = append(fc.flows, b)
	fc.mu.Unlock()
	json.NewEncoder(w).Encode(wire.FlowBatchResponse{Accepted: len(b.Records)})
}

func (fc *fakeCoord) flowRecords() []wire.FlowRecord {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []wire.FlowRecord
	for _, b := range fc.flows {
		out = append(out, b.Records...)
	}
	return out
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMonitorFlowsAndMetrics runs the agent with the userspace enforcer on
// a monitor-mode view: a denied connection passes, and its would-deny flow
// record reaches the coordinator; while the coordinator refuses uploads
// the records wait and arrive later; the node's /metrics carries the
// names the issue lists.
func TestMonitorFlowsAndMetrics(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Enforce = EnforceUserspace
	cfg.FlowInterval = 100 * time.Millisecond
	cfg.MetricsListen = freePort(t)
	a := startAgent(t, cfg)
	a.device(t)
	s := fc.nextStream(t)
	wcfg := <-a.cfgs
	v := sshView(1)
	v.Workloads[0].Monitor = true
	v.Peers = []view.Peer{peer("n2", newKey(t), "198.18.0.2:51820", "100.64.0.9/32")}
	s.push(t, wire.StreamMessage{Full: v})
	remote := netip.MustParseAddr("100.64.0.9")
	eventually(t, "the monitor-mode view in the filter", func() bool { return wcfg.Filter.Inbound(synPacket(remote, nodeIP, 23)) })
	eventually(t, "a would-deny flow record at the coordinator", func() bool {
		for _, r := range fc.flowRecords() {
			if r.Verdict == wire.VerdictWouldDeny && r.Port == 23 && r.Src == remote && r.Dst == nodeIP &&
				r.Direction == wire.DirIngress && r.Workload == "default/n1" && r.Protocol == "TCP" && r.Packets >= 1 && r.Bytes == 40*r.Packets {
				return true
			}
		}
		return false
	})

	// The coordinator is away: records wait, then arrive.
	fc.flowsDown.Store(true)
	wcfg.Filter.Inbound(synPacket(remote, nodeIP, 24))
	time.Sleep(5 * cfg.FlowInterval)
	for _, r := range fc.flowRecords() {
		if r.Port == 24 {
			t.Fatal("a record arrived while the coordinator refused uploads")
		}
	}
	fc.flowsDown.Store(false)
	eventually(t, "the held record after the coordinator came back", func() bool {
		for _, r := range fc.flowRecords() {
			if r.Port == 24 && r.Verdict == wire.VerdictWouldDeny {
				return true
			}
		}
		return false
	})

	if st, err := QueryStatus(context.Background(), dir); err != nil || st.Flows == nil || st.Flows.Sent == 0 || st.Flows.Dropped != 0 {
		t.Fatalf("status flows: %+v, %v; want records sent, none dropped", st.Flows, err)
	}
	resp, err := http.Get("http://" + cfg.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"latch_node_connected 1",
		"latch_node_view_version 1",
		"latch_node_peers 1",
		`latch_node_peer_rx_bytes_total{peer="n2"} 0`,
		`latch_node_peer_tx_bytes_total{peer="n2"} 0`,
		"latch_node_peers_with_handshake 0",
		`latch_node_enforcer_mode{mode="userspace"} 1`,
		`latch_node_enforcer_mode{mode="ebpf"} 0`,
		`latch_node_enforcer_packets_total{reason="monitor",verdict="allowed"}`,
		`latch_node_enforcer_map_entries{map="workloads"} 1`,
		`latch_node_enforcer_map_entries{map="conntrack"}`,
		"latch_node_enforcer_events_lost_total 0",
		"latch_node_flow_records_queued",
		"latch_node_flow_records_dropped_total 0",
		"latch_node_flow_records_sent_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("node metrics lack %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "latch_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	if t.Failed() {
		t.Log(string(body))
	}
}

// TestFlowRecordsPassTheCoordinatorsCheck: every record the agent can
// make (any reason either enforcer names, any verdict, direction or IP
// protocol) passes wire.FlowRecord.Check, which the coordinator applies to
// every record.
func TestFlowRecordsPassTheCoordinatorsCheck(t *testing.T) {
	now := time.Now()
	for i := range 256 {
		l := flowlog.New(flowlog.Options{})
		for _, reason := range []string{ebpf.Reason(i).String(), userspace.Reason(i).String()} {
			for _, dir := range []enforce.Direction{enforce.Ingress, enforce.Egress} {
				for _, v := range []enforce.Verdict{enforce.Allowed, enforce.Dropped, enforce.WouldDeny} {
					l.Add(enforce.Event{Time: now, Workload: "prod/web", Protocol: uint8(i), Reason: reason, Direction: dir, Verdict: v})
				}
			}
		}
		l.Flush()
		recs, _ := l.Take(100)
		if len(recs) != 12 {
			t.Fatalf("events %d: %d records, want 12", i, len(recs))
		}
		for _, r := range recs {
			if err := r.Check(); err != nil {
				t.Errorf("record %+v: %v", r, err)
			}
		}
	}
}
