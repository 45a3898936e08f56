package api

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the coordinator's Prometheus metrics, in a registry of the
// Server's own (so that tests can run several servers).
type metrics struct {
	reg         *prometheus.Registry
	viewsPushed *prometheus.CounterVec
	streamLag   prometheus.Histogram
	latency     *prometheus.HistogramVec
	enrollments *prometheus.CounterVec
	flows       *prometheus.CounterVec
	nodeDropped prometheus.Counter

	mu      sync.Mutex
	streams map[string]int // open view streams by node; guarded by mu
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		viewsPushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_coordinator_views_pushed_total",
			Help: "Views sent to nodes over their streams, in full or as deltas.",
		}, []string{"kind"}),
		streamLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "latch_coordinator_stream_lag_seconds",
			Help:    "Time from a view's publication to its sending on a node's stream.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latch_coordinator_api_request_duration_seconds",
			Help:    "Latency of node and admin API calls (view streams, relay connections and flow follows excluded), by route and status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "code"}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_coordinator_enrollments_total",
			Help: "Enrollment attempts with a join token, by result (ok or refused).",
		}, []string{"result"}),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_coordinator_flows_ingested_total",
			Help: "Flow records nodes uploaded, by result (accepted or rejected).",
		}, []string{"result"}),
		nodeDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "latch_coordinator_flows_dropped_by_nodes_total",
			Help: "Flow records nodes report they discarded because their buffer was full.",
		}),
		streams: map[string]int{},
	}
	m.reg.MustRegister(m.viewsPushed, m.streamLag, m.latency, m.enrollments, m.flows, m.nodeDropped,
		&nodeCollector{s: s, m: m})
	for _, r := range []string{"ok", "refused"} {
		m.enrollments.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "rejected"} {
		m.flows.WithLabelValues(r)
	}
	for _, k := range []string{"full", "delta"} {
		m.viewsPushed.WithLabelValues(k)
	}
	return m
}

func (m *metrics) flowsIngested(accepted, rejected int, dropped uint64) {
	m.flows.WithLabelValues("accepted").Add(float64(accepted))
	m.flows.WithLabelValues("rejected").Add(float64(rejected))
	m.nodeDropped.Add(float64(dropped))
}

func (m *metrics) streamOpen(node string, delta int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.streams[node] += delta
	if m.streams[node] <= 0 {
		delete(m.streams, node)
	}
}

func (m *metrics) pushed(full bool, published time.Time) {
	kind := "delta"
	if full {
		kind = "full"
	}
	m.viewsPushed.WithLabelValues(kind).Inc()
	if !published.IsZero() {
		m.streamLag.Observe(time.Since(published).Seconds())
	}
}

// instrument records the latency of every call but the long-lived
// streams.
func (m *metrics) instrument(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unknown"
		}
		if route == "/v1/node/stream" || route == relay.Path || c.QueryParam("follow") == "true" {
			return err
		}
		code := c.Response().Status
		if err != nil {
			code = classify(err).status
		}
		m.latency.WithLabelValues(route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
		return err
	}
}

// nodeCollector reports at each scrape the enrolled nodes by state,
// connected (a view stream is open) or disconnected, and the subnet routes
// gateways advertise by status.
type nodeCollector struct {
	s *Server
	m *metrics
}

var nodesDesc = prometheus.NewDesc("latch_coordinator_nodes",
	"Enrolled nodes by state: connected (a view stream is open) or disconnected.", []string{"state"}, nil)

var routesDesc = prometheus.NewDesc("latch_coordinator_routes",
	"Subnet routes gateways advertise, by status: advertised (waiting for an admin), approved or rejected.", []string{"status"}, nil)

var routeDesc = prometheus.NewDesc("latch_coordinator_route",
	"One series per subnet route a gateway advertises: 1 while the gateway is online (has a view stream open), else 0; primary is true when the route is approved and the gateway is the primary gateway for some site address in it.",
	[]string{"node", "prefix", "status", "primary"}, nil)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodesDesc
	ch <- routesDesc
	ch <- routeDesc
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var nodes []store.Node
	var routes []store.Route
	if err := c.s.cfg.State.Read(ctx, func(tx store.Tx) error {
		var err error
		if nodes, err = tx.ListNodes(); err != nil {
			return err
		}
		routes, err = tx.ListRoutes()
		return err
	}); err != nil {
		ch <- prometheus.NewInvalidMetric(nodesDesc, err)
		ch <- prometheus.NewInvalidMetric(routesDesc, err)
		ch <- prometheus.NewInvalidMetric(routeDesc, err)
		return
	}
	for _, r := range routes {
		sr := c.s.routeWithState(r)
		online := 0.0
		if sr.Online {
			online = 1
		}
		ch <- prometheus.MustNewConstMetric(routeDesc, prometheus.GaugeValue, online, r.Node, r.Prefix.String(), r.Status, strconv.FormatBool(sr.Primary))
	}
	byStatus := map[string]int{store.RouteAdvertised: 0, store.RouteApproved: 0, store.RouteRejected: 0}
	for _, r := range routes {
		byStatus[r.Status]++
	}
	for st, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(routesDesc, prometheus.GaugeValue, float64(n), st)
	}
	c.m.mu.Lock()
	connected := 0
	for _, n := range nodes {
		if c.m.streams[n.Name] > 0 {
			connected++
		}
	}
	c.m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(connected), "connected")
	ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(len(nodes)-connected), "disconnected")
}

// MetricsHandler serves the coordinator's metrics in the Prometheus text
// format, with Go runtime and process metrics. It has no authentication:
// serve it on a listener only the monitoring system reaches
// (--metrics-listen).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}
