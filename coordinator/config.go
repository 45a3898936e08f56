package coordinator

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/stun"
	"github.com/latchnet/latch/policy"
	"github.com/latchnet/latch/scripts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The defaults of a zero Config field (and of `latch coordinator`'s flags).
const (
	DefaultListen         = "127.0.0.1:7443"
	DefaultDataDir        = "/var/lib/latch"
	DefaultTrustDomain    = "example.test"
	DefaultSVIDTTL        = time.Hour
	DefaultKeepalive      = 10 * time.Second
	DefaultFlowRetention  = 24 * time.Hour
	DefaultAuditRetention = 90 * 24 * time.Hour
	// DefaultGatewayGrace is how long after a start gateways have to
	// connect before those without a view stream count as offline.
	DefaultGatewayGrace = 10 * time.Second
	// DefaultFlowMaxRows and DefaultAuditMaxRows are the flags' defaults;
	// a zero Config field means no bound.
	DefaultFlowMaxRows  = 1000000
	DefaultAuditMaxRows = 1000000
)

// DefaultMaxConnections is the most client connections served at once
// when Config.MaxConnections is zero.
var DefaultMaxConnections = api.DefaultLimits.MaxConnections

// DefaultMaxWorkloadsPerNode is the most workloads one node may register
// when Config.MaxWorkloadsPerNode is zero.
const DefaultMaxWorkloadsPerNode = state.DefaultMaxWorkloadsPerNode

// Config is everything Run needs. A zero field takes its default (the
// Default* constants) unless its comment says otherwise. Validate checks
// it; its errors name the `latch coordinator` flag of each field.
type Config struct {
	// Listen is the HTTPS address of the node and admin APIs and the
	// console (--listen); port 0 picks a free port (see OnListen).
	Listen string
	// DataDir holds the CA, the database, the admin token and the first
	// admin's password (--data-dir); made private (0700).
	DataDir string
	// TrustDomain is the SPIFFE trust domain of the embedded CA
	// (--trust-domain).
	TrustDomain string
	// Baseline decides directions no policy isolates (--baseline);
	// default deny.
	Baseline policy.Baseline
	// SVIDTTL is the lifetime of node SVIDs, at least 10s (--svid-ttl).
	SVIDTTL time.Duration
	// Keepalive is the stream keepalive interval (--keepalive).
	Keepalive time.Duration
	// DistDir holds `make dist` output served at /dl/ (--dist-dir); none
	// if empty.
	DistDir string
	// PublicURL is https://HOST[:PORT] that nodes reach the coordinator
	// at (--public-url): baked into /install.sh, HOST added to the
	// serving certificate. Empty: the address the script is fetched from.
	PublicURL string
	// FlowRetention is how long flow records are kept, at least 1m
	// (--flow-retention).
	FlowRetention time.Duration
	// FlowMaxRows bounds the flow records kept (--flow-max-rows); 0: no
	// bound.
	FlowMaxRows int
	// AuditRetention is how long audit entries are kept, at least 1h
	// (--audit-retention).
	AuditRetention time.Duration
	// AuditMaxRows bounds the audit entries kept, at least 10
	// (--audit-max-rows); 0: no bound.
	AuditMaxRows int
	// MaxWorkloadsPerNode bounds the workloads one node may register
	// (--max-workloads-per-node); zero: DefaultMaxWorkloadsPerNode.
	MaxWorkloadsPerNode int
	// MaxConnections bounds the client connections served at once
	// (--max-connections); zero: DefaultMaxConnections.
	MaxConnections int
	// GatewayGrace is how long after the coordinator starts the gateways
	// have to open their view streams before those that have not count as
	// offline and lose their sites to other gateways (--gateway-grace).
	GatewayGrace time.Duration
	// STUNListen is the UDP address of the STUN server that tells nodes
	// their reflexive endpoints (--stun-listen): empty means Listen's host
	// on port 3478 (a free port when Listen's is 0), "off" turns it off. Nodes reach it at the
	// coordinator's host and this port (wire.RegisterResponse.STUNPort).
	STUNListen string
	// MetricsListen is a plain HTTP address serving Prometheus /metrics
	// without authentication (--metrics-listen); off when empty.
	MetricsListen string
	// NoRelay turns off the relay the node API serves (--relay=false;
	// package relay, docs/relay.md).
	NoRelay bool
	// Spire makes the coordinator trust a SPIRE deployment.
	Spire SpireConfig
	// Log receives the coordinator's logs; nil: text to stderr.
	Log *slog.Logger
	// OnListen, if set, is called once the APIs listen, with their
	// address and that of the metrics (nil when off).
	OnListen func(api, metrics net.Addr)
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.Baseline == "" {
		c.Baseline = policy.BaselineDeny
	}
	if c.SVIDTTL == 0 {
		c.SVIDTTL = DefaultSVIDTTL
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.FlowRetention == 0 {
		c.FlowRetention = DefaultFlowRetention
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = DefaultAuditRetention
	}
	if c.MaxWorkloadsPerNode == 0 {
		c.MaxWorkloadsPerNode = DefaultMaxWorkloadsPerNode
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.GatewayGrace == 0 {
		c.GatewayGrace = DefaultGatewayGrace
	}
	c.Spire = c.Spire.withDefaults()
	return c
}

// checked is a Config after Validate, with what it parsed.
type checked struct {
	Config
	td         spiffeid.TrustDomain
	listenHost string // the host of Listen
	stunListen string // the STUN server's UDP address, "" when off
	publicHost string // the host of PublicURL, if any
}

// Validate checks the configuration (with defaults for its zero fields)
// without touching the host.
func (c Config) Validate() error {
	_, err := c.check()
	return err
}

func (c Config) check() (checked, error) {
	c = c.withDefaults()
	out := checked{Config: c}
	var err error
	if out.td, err = spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		return out, fmt.Errorf("--trust-domain %q: %w", c.TrustDomain, err)
	}
	if _, err := policy.ParseBaseline(string(c.Baseline)); err != nil {
		return out, fmt.Errorf("--baseline: %w", err)
	}
	if c.SVIDTTL < 10*time.Second {
		return out, fmt.Errorf("--svid-ttl %v: must be at least 10s", c.SVIDTTL)
	}
	if c.Keepalive < 0 {
		return out, fmt.Errorf("--keepalive %v: must be positive, e.g. 10s", c.Keepalive)
	}
	if c.FlowRetention < time.Minute {
		return out, fmt.Errorf("--flow-retention %v: must be at least 1m", c.FlowRetention)
	}
	if c.MaxWorkloadsPerNode < 0 {
		return out, fmt.Errorf("--max-workloads-per-node %d: must be at least 1", c.MaxWorkloadsPerNode)
	}
	if c.FlowMaxRows < 0 {
		return out, fmt.Errorf("--flow-max-rows %d: must be 0 (no bound) or more", c.FlowMaxRows)
	}
	if c.MaxConnections < 0 {
		return out, fmt.Errorf("--max-connections %d: must be positive (0: the default, %d)", c.MaxConnections, DefaultMaxConnections)
	}
	if c.GatewayGrace < 0 {
		return out, fmt.Errorf("--gateway-grace %v: must be positive, e.g. 10s", c.GatewayGrace)
	}
	if c.AuditRetention < time.Hour {
		return out, fmt.Errorf("--audit-retention %v: must be at least 1h", c.AuditRetention)
	}
	if c.AuditMaxRows != 0 && c.AuditMaxRows < 10 {
		return out, fmt.Errorf("--audit-max-rows %d: must be 0 (no bound) or at least 10", c.AuditMaxRows)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return out, fmt.Errorf("--metrics-listen %q: want HOST:PORT: %w", c.MetricsListen, err)
		}
	}
	if out.listenHost, _, err = net.SplitHostPort(c.Listen); err != nil {
		return out, fmt.Errorf("--listen %q: want HOST:PORT: %w", c.Listen, err)
	}
	switch c.STUNListen {
	case "off":
	case "":
		port := strconv.Itoa(stun.DefaultPort)
		if strings.HasSuffix(c.Listen, ":0") {
			port = "0" // tests: a free port for both
		}
		out.stunListen = net.JoinHostPort(out.listenHost, port)
	default:
		_, port, err := net.SplitHostPort(c.STUNListen)
		if err != nil {
			return out, fmt.Errorf("--stun-listen %q: want HOST:PORT (e.g. :3478) or off: %w", c.STUNListen, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return out, fmt.Errorf("--stun-listen %q: port %q is not a number 0-65535", c.STUNListen, port)
		}
		out.stunListen = c.STUNListen
	}
	if c.PublicURL != "" {
		if !scripts.ValidURL(c.PublicURL) {
			return out, fmt.Errorf("--public-url %q: want https://HOST[:PORT], e.g. https://coord.example.com:7443", c.PublicURL)
		}
		u, err := url.Parse(c.PublicURL)
		if err != nil {
			return out, fmt.Errorf("--public-url %q: %w", c.PublicURL, err)
		}
		out.publicHost = u.Hostname()
	}
	if _, err := c.Spire.validate(out.td); err != nil {
		return out, err
	}
	return out, nil
}
