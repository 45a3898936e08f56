package agent

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/view"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Node metric descriptions. Everything is read from the agent at scrape
// time (the device's peer counters, the enforcer's counters, the applied
// view), so nothing on the data path updates a metric.
var (
	descUp          = prometheus.NewDesc("latch_node_connected", "1 when the view stream to the coordinator is up.", nil, nil)
	descViewVersion = prometheus.NewDesc("latch_node_view_version", "Version of the view in force: the enforcer holds its rules and WireGuard got its peers.", nil, nil)
	descViewRecv    = prometheus.NewDesc("latch_node_view_version_received", "Version of the view received last; above latch_node_view_version while the enforcer cannot load it.", nil, nil)
	descViewFail    = prometheus.NewDesc("latch_node_view_apply_failures_total", "Failed view applications, by stage: rules (the enforcer could not load the view: its new peers wait) or wireguard.", []string{"stage"}, nil)
	descCtCapacity  = prometheus.NewDesc("latch_node_conntrack_capacity", "Entries the connection-tracking table holds (eBPF: two per flow); beyond it the least recently used are evicted.", nil, nil)
	descCtCreated   = prometheus.NewDesc("latch_node_conntrack_entries_created_total", "Connection-tracking entries created (eBPF: two per flow, one per re-created direction; userspace: one per flow).", nil, nil)
	descCtEvicted   = prometheus.NewDesc("latch_node_conntrack_evictions_total", "Tracked flows forgotten to make room for new ones (userspace enforcer).", nil, nil)
	descCtRecreated = prometheus.NewDesc("latch_node_conntrack_entries_recreated_total", "eBPF: entries re-created because one direction of a live flow had lost its entry (evicted or idle).", nil, nil)
	descCtMisses    = prometheus.NewDesc("latch_node_conntrack_misses_total", "eBPF: TCP packets without SYN and without a live entry (flow evicted, expired or never allowed); they are dropped.", nil, nil)
	descRefused     = prometheus.NewDesc("latch_node_enforcer_address_refused_total", "eBPF: binds and sends refused (EPERM) because the socket's cgroup does not own the overlay address, by operation (bind or send).", []string{"op"}, nil)
	descPeers       = prometheus.NewDesc("latch_node_peers", "WireGuard peers of the device.", nil, nil)
	descHandshakes  = prometheus.NewDesc("latch_node_peers_with_handshake", "Peers that completed a WireGuard handshake.", nil, nil)
	descHandshake   = prometheus.NewDesc("latch_node_peer_last_handshake_age_seconds", "Seconds since the latest handshake with a peer (peers with one only).", []string{"peer"}, nil)
	descPath        = prometheus.NewDesc("latch_node_peer_path", "Peers by the path they are reached on: direct-lan (endpoint in a private or link-local range), direct-public (any other endpoint) or none (never a handshake).", []string{"path"}, nil)
	descRx          = prometheus.NewDesc("latch_node_peer_rx_bytes_total", "Bytes received from a peer.", []string{"peer"}, nil)
	descTx          = prometheus.NewDesc("latch_node_peer_tx_bytes_total", "Bytes sent to a peer.", []string{"peer"}, nil)
	descMode        = prometheus.NewDesc("latch_node_enforcer_mode", "1 for the active enforcement mode (ebpf, userspace or off).", []string{"mode"}, nil)
	descPackets     = prometheus.NewDesc("latch_node_enforcer_packets_total", "Packets the enforcer decided, by verdict (allowed or dropped) and reason; verdict allowed, reason monitor counts would-be drops of monitor-mode namespaces.", []string{"verdict", "reason"}, nil)
	descEventsLost  = prometheus.NewDesc("latch_node_enforcer_events_lost_total", "Enforcer events lost because a buffer was full.", nil, nil)
	descMapEntries  = prometheus.NewDesc("latch_node_enforcer_map_entries", "Entries of the enforcer's rule tables for the applied view (workloads, identities, rules, cidrs), and tracked flows (conntrack, userspace enforcer).", []string{"map"}, nil)
	descFlowQueued  = prometheus.NewDesc("latch_node_flow_records_queued", "Flow records waiting for upload.", nil, nil)
	descFlowDropped = prometheus.NewDesc("latch_node_flow_records_dropped_total", "Flow records dropped because the buffer was full (the coordinator was away).", nil, nil)
	descRoute       = prometheus.NewDesc("latch_node_route", "1 for each state a route is in. The node's advertised routes: advertised, approved (in the view), primary (the node is the primary gateway for part of it), snat (masqueraded now). Site prefixes its peers carry: installed (kernel route through the device), conflict (another owner's route holds the prefix and is left alone), failed.", []string{"prefix", "state"}, nil)
	descForwarding  = prometheus.NewDesc("latch_node_ip_forward", "1 when net.ipv4.ip_forward is on; only on a node that advertises routes.", nil, nil)
	descFlowSent    = prometheus.NewDesc("latch_node_flow_records_sent_total", "Flow records the coordinator accepted.", nil, nil)
)

type nodeCollector struct{ a *agent }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descViewVersion, descViewRecv, descViewFail, descCtCapacity, descCtCreated,
		descCtEvicted, descCtRecreated, descCtMisses, descRefused, descPeers, descHandshakes, descHandshake, descPath, descRx, descTx,
		descMode, descPackets, descEventsLost, descMapEntries, descFlowQueued, descFlowDropped, descFlowSent, descRoute, descForwarding} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.mu.Lock()
	connected, v, received := a.connected, a.enforced, a.view
	a.mu.Unlock()
	gauge(ch, descUp, b2f(connected))
	gauge(ch, descViewVersion, float64(versionOf(v)))
	gauge(ch, descViewRecv, float64(versionOf(received)))
	for i, name := range stageNames {
		counter(ch, descViewFail, float64(a.viewFailures[i].Load()), name)
	}

	if ps, err := a.peers(); err == nil {
		gauge(ch, descPeers, float64(len(ps)))
		hs := 0
		byPath := map[string]int{}
		for _, p := range ps {
			byPath[p.Path]++
			name := p.Node
			if name == "" {
				name = p.PublicKey
			}
			if !p.LastHandshake.IsZero() {
				hs++
				gauge(ch, descHandshake, time.Since(p.LastHandshake).Seconds(), name)
			}
			counter(ch, descRx, float64(p.RxBytes), name)
			counter(ch, descTx, float64(p.TxBytes), name)
		}
		gauge(ch, descHandshakes, float64(hs))
		for _, path := range []string{PathDirectLAN, PathDirectPublic, PathNone} {
			gauge(ch, descPath, float64(byPath[path]), path)
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descPeers, err)
	}

	for _, m := range []string{EnforceEBPF, EnforceUserspace, EnforceOff} {
		gauge(ch, descMode, b2f(a.s.enforce == m), m)
	}
	if a.enf != nil {
		a.collectEnforcer(ch, v)
	}
	a.collectRoutes(ch)
	fs := a.flows.Stats()
	gauge(ch, descFlowQueued, float64(fs.Queued))
	counter(ch, descFlowDropped, float64(fs.Dropped))
	counter(ch, descFlowSent, float64(a.flowsSent.Load()))
}

// collectEnforcer reports the enforcer's counters (those it keeps) and
// the rule-table entries of v, the view in force.
func (a *agent) collectEnforcer(ch chan<- prometheus.Metric, v *view.View) {
	if st, err := a.enf.Stats(); err == nil {
		for reason, n := range st.Packets {
			verdict := "allowed"
			if st.Verdict(reason) == enforce.Dropped {
				verdict = "dropped"
			}
			counter(ch, descPackets, float64(n), verdict, reason)
		}
		counter(ch, descEventsLost, float64(st.EventsLost))
		gauge(ch, descCtCapacity, float64(st.FlowCapacity))
		counter(ch, descCtCreated, float64(st.FlowsCreated))
		if st.Flows != nil {
			gauge(ch, descMapEntries, float64(*st.Flows), "conntrack")
		}
		if st.FlowsEvicted != nil {
			counter(ch, descCtEvicted, float64(*st.FlowsEvicted))
		}
		if st.FlowsRecreated != nil {
			counter(ch, descCtRecreated, float64(*st.FlowsRecreated))
		}
		if st.FlowMisses != nil {
			counter(ch, descCtMisses, float64(*st.FlowMisses))
		}
		if st.BindsRefused != nil {
			counter(ch, descRefused, float64(*st.BindsRefused), "bind")
		}
		if st.SendsRefused != nil {
			counter(ch, descRefused, float64(*st.SendsRefused), "send")
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descPackets, err)
	}
	if v == nil {
		return
	}
	if t, err := ebpf.Compile(v); err == nil {
		gauge(ch, descMapEntries, float64(len(t.Workloads)), "workloads")
		gauge(ch, descMapEntries, float64(len(t.Identities)), "identities")
		gauge(ch, descMapEntries, float64(len(t.Rules)), "rules")
		gauge(ch, descMapEntries, float64(len(t.CIDRs)), "cidrs")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves the node's metrics with Go runtime and process
// metrics.
func (a *agent) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(nodeCollector{a}, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// serveMetrics listens on s.MetricsListen (plain HTTP, no authentication:
// bind it to loopback or a monitoring network) and serves /metrics. The
// returned function stops it.
func (a *agent) serveMetrics() (stop func(), err error) {
	if a.s.MetricsListen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", a.s.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener (--metrics-listen %s): %w", a.s.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	a.log.Info("metrics listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// collectRoutes reports the states of the node's advertised routes and of
// the site routes through its device.
func (a *agent) collectRoutes(ch chan<- prometheus.Metric) {
	st := a.status()
	for _, r := range st.Routes {
		gauge(ch, descRoute, 1, r.Prefix, "advertised")
		if r.Approved {
			gauge(ch, descRoute, 1, r.Prefix, "approved")
		}
		if r.Primary {
			gauge(ch, descRoute, 1, r.Prefix, "primary")
		}
		if r.SNATActive {
			gauge(ch, descRoute, 1, r.Prefix, "snat")
		}
	}
	for _, r := range st.SiteRoutes {
		switch {
		case r.Installed:
			gauge(ch, descRoute, 1, r.Prefix, "installed")
		case r.Conflict != "":
			gauge(ch, descRoute, 1, r.Prefix, "conflict")
		case r.Error != "":
			gauge(ch, descRoute, 1, r.Prefix, "failed")
		}
	}
	if st.Forwarding != nil {
		gauge(ch, descForwarding, b2f(st.Forwarding.Enabled))
	}
}
