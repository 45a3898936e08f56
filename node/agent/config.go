package agent

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults for Config fields left zero.
const (
	DefaultListenPort  = 51820
	DefaultIface       = "latch0"
	DefaultRenewBefore = 0.5
	// DefaultFlowInterval is how long flow events are aggregated before
	// the records are uploaded.
	DefaultFlowInterval = 5 * time.Second
)

// Config is what Run needs to make this machine a node.
type Config struct {
	// Coordinator is the base URL of the coordinator's node API,
	// https://HOST:PORT.
	Coordinator string
	// JoinToken ("latch1.<id>.<secret>.<ca-hash>") is used once, when the
	// state directory holds no SVID yet.
	JoinToken string
	// StateDir holds the node's keys, SVID, trust bundle, last view and the
	// status socket. Created 0700.
	StateDir string
	// Iface is the WireGuard interface name; DefaultIface if empty.
	Iface string
	// Name is the node name asked for at enrollment; the host name if
	// empty. Once enrolled, the name in the SVID is authoritative.
	Name string
	// Labels, if set, are the labels the node expects its join token to
	// give it; the coordinator refuses the enrollment if the token's
	// differ (a node's labels come from its token, never from the node).
	Labels map[string]string
	// ListenPort is WireGuard's UDP port; DefaultListenPort if zero.
	ListenPort int
	// Endpoints are the underlay addresses peers reach this node at. If
	// empty: every global unicast IPv4 address of the host's interfaces
	// with ListenPort.
	Endpoints []netip.AddrPort
	// Ports are the node's own served ports (the node is a workload too).
	Ports []inventory.Port
	// Workloads are sent in every registration; the coordinator assigns
	// each an overlay address, which the agent adds to the WireGuard
	// interface so that the workload's processes can bind it.
	Workloads []wire.WorkloadDecl
	// WorkloadCgroups maps a workload ("namespace/name") to its cgroup v2
	// directory, checked at start and shown in status. The eBPF enforcer
	// attaches its cgroup hooks when there is one and, once the workload
	// is in the view, gives the sockets of that cgroup the workload's
	// overlay address as source, refuses at once (EPERM) their connects
	// and sends that its egress rules deny, and keeps other processes off
	// that address. The userspace filter knows no cgroups: it enforces by
	// address only, and with enforcement off nothing is enforced.
	WorkloadCgroups map[string]string
	// RenewBefore is the fraction of the SVID's lifetime after which it is
	// renewed; DefaultRenewBefore (half-life) if zero.
	RenewBefore float64
	// Enforce is the enforcement mode: EnforceAuto (if empty),
	// EnforceEBPF, EnforceUserspace or EnforceOff.
	Enforce string
	// SpiffeSocket, if set, is the Workload API address of the local SPIRE
	// agent (unix:///PATH/api.sock): the node's SVID comes from it
	// (rotated by SPIRE) instead of from enrolling with a join token. The
	// node name is the last path segment of the SPIFFE ID.
	SpiffeSocket string
	// CoordinatorID is the SPIFFE ID the coordinator must present to a
	// SPIRE node; default spiffe://<the node's SPIRE trust
	// domain>/latch/coordinator.
	CoordinatorID string
	// CoordinatorCA, for a SPIRE node, is a PEM file with the coordinator's
	// own CA certificate (its data dir's ca.crt): the node then trusts the
	// coordinator's embedded-CA SVID, for a coordinator that has no SPIRE
	// SVID of its own (--trust-bundle).
	CoordinatorCA string
	// PinDir is where the eBPF enforcer pins its maps and links (default
	// /sys/fs/bpf/latch/<iface>); they survive the agent, so enforcement
	// continues across restarts and a restarted agent adopts them.
	PinDir string
	// FlowInterval is how long enforcer events are aggregated into flow
	// records before upload; DefaultFlowInterval if zero.
	FlowInterval time.Duration
	// MetricsListen is a plain HTTP HOST:PORT serving Prometheus /metrics
	// without authentication; no metrics listener when empty.
	MetricsListen string
	// Routes are the subnets this node advertises as a gateway
	// (--advertise-routes), sent in every registration. Each takes effect
	// only once an admin approves it on the coordinator; then traffic
	// from the overlay forwarded into a route with SNAT is masqueraded
	// to the gateway's own address (package node/route).
	Routes []wire.Route
}

// joinToken is a parsed join token. String never shows the secret.
type joinToken struct {
	id, text    string
	fingerprint string // "sha256:<64 lowercase hex>"
}

func (t joinToken) String() string { return "latch1." + t.id + ".<redacted>" }

// parseToken parses "latch1.<id>.<secret>.<ca-hash>". Errors never contain
// the secret.
func parseToken(s string) (joinToken, error) {
	s = strings.TrimSpace(s)
	const format = "latch1.<id>.<secret>.<ca-hash>"
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return joinToken{}, fmt.Errorf("join token: want 4 dot-separated parts %s, got %d", format, len(parts))
	}
	if parts[0] != "latch1" {
		return joinToken{}, fmt.Errorf("join token: does not start with latch1 (%s): is it a Latch join token?", format)
	}
	if parts[1] == "" || parts[2] == "" {
		return joinToken{}, fmt.Errorf("join token: empty id or secret (%s): was the token copied completely?", format)
	}
	fp := strings.ToLower(strings.TrimPrefix(parts[3], "sha256:"))
	if len(fp) != 64 {
		return joinToken{}, fmt.Errorf("join token: ca-hash must be 64 hex characters, got %d (%s): was the token copied completely?", len(fp), format)
	}
	if _, err := hex.DecodeString(fp); err != nil {
		return joinToken{}, fmt.Errorf("join token: ca-hash is not hexadecimal (%s)", format)
	}
	return joinToken{id: parts[1], text: s, fingerprint: "sha256:" + fp}, nil
}

// settings is a Config checked and completed with defaults.
type settings struct {
	// autoEndpoints: the endpoints are the host's addresses (no
	// --endpoint), so the agent follows them as they change.
	autoEndpoints bool
	Config
	base  *url.URL
	token *joinToken // nil when no token was given
	// coordinatorID is CoordinatorID parsed; zero if not given.
	coordinatorID spiffeid.ID
	enforce       string         // the mode asked for; decided when the device comes up (see Run)
	snat          []netip.Prefix // the prefixes of Routes with SNAT
}

// check validates cfg and fills in defaults. It touches nothing on the
// host except reading the host name and interface addresses when those
// defaults are needed (hostAddrs), and checking that workload cgroups are
// cgroup v2 directories (isCgroup).
func (cfg Config) check(hostAddrs func() ([]netip.Addr, error), isCgroup func(path string) error) (settings, error) {
	s := settings{Config: cfg}
	if cfg.Coordinator == "" {
		return s, errors.New("no coordinator: pass --coordinator https://HOST:PORT")
	}
	u, err := url.Parse(cfg.Coordinator)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return s, fmt.Errorf("coordinator %q is not a URL of the form https://HOST:PORT", cfg.Coordinator)
	}
	u.Path = ""
	s.base = u
	if cfg.StateDir == "" {
		return s, errors.New("no state directory: pass --state-dir DIR")
	}
	if cfg.JoinToken != "" {
		t, err := parseToken(cfg.JoinToken)
		if err != nil {
			return s, err
		}
		s.token = &t
	}
	if cfg.SpiffeSocket != "" && cfg.JoinToken != "" {
		return s, errNoSpire
	}
	if cfg.SpiffeSocket != "" && !strings.HasPrefix(cfg.SpiffeSocket, "unix://") && !strings.HasPrefix(cfg.SpiffeSocket, "tcp://") {
		return s, fmt.Errorf("--spiffe-socket %q: want the SPIRE agent's Workload API address, unix:///PATH/api.sock", cfg.SpiffeSocket)
	}
	for _, w := range cfg.Workloads {
		if w.SpiffeID != "" && cfg.SpiffeSocket == "" {
			return s, fmt.Errorf("workload %s/%s: spiffe_id needs --spiffe-socket: the node's SPIRE agent must issue the ID to it", w.Namespace, w.Name)
		}
	}
	if cfg.SpiffeSocket != "" && len(cfg.Labels) > 0 {
		return s, errors.New("--labels: with --spiffe-socket the coordinator's --spiffe-map (or an admin approving the node) gives the node its labels")
	}
	if cfg.CoordinatorCA != "" && cfg.SpiffeSocket == "" {
		return s, errors.New("--coordinator-ca is for nodes with --spiffe-socket (a token-enrolled node pins the coordinator's CA through its token)")
	}
	if cfg.CoordinatorID != "" {
		if cfg.SpiffeSocket == "" {
			return s, errors.New("--coordinator-id is for nodes with --spiffe-socket (a token-enrolled node checks the coordinator's ID from its CA)")
		}
		id, err := spiffeid.FromString(cfg.CoordinatorID)
		if err != nil {
			return s, fmt.Errorf("--coordinator-id %q: %w (want spiffe://TD/PATH)", cfg.CoordinatorID, err)
		}
		s.coordinatorID = id
	}
	if s.Iface == "" {
		s.Iface = DefaultIface
	}
	if len(s.Iface) > 15 {
		return s, fmt.Errorf("interface name %q is longer than 15 bytes", s.Iface)
	}
	if s.Name != "" {
		if err := validateName(s.Name); err != nil {
			return s, err
		}
	}
	for k := range s.Labels {
		if k == "" {
			return s, errors.New("label with an empty key")
		}
	}
	if s.ListenPort == 0 {
		s.ListenPort = DefaultListenPort
	}
	if s.ListenPort < 1 || s.ListenPort > 65535 {
		return s, fmt.Errorf("listen port %d is out of range 1-65535", s.ListenPort)
	}
	if s.FlowInterval == 0 {
		s.FlowInterval = DefaultFlowInterval
	}
	if s.FlowInterval < 100*time.Millisecond || s.FlowInterval > time.Hour {
		return s, fmt.Errorf("flow interval %v: want between 100ms and 1h, e.g. 5s", s.FlowInterval)
	}
	if s.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			return s, fmt.Errorf("metrics listen address %q: want HOST:PORT, e.g. 127.0.0.1:9471: %v", s.MetricsListen, err)
		}
	}
	if s.RenewBefore == 0 {
		s.RenewBefore = DefaultRenewBefore
	}
	if s.RenewBefore <= 0 || s.RenewBefore >= 1 {
		return s, fmt.Errorf("renew-before %g must be a fraction of the SVID lifetime between 0 and 1, e.g. 0.5", s.RenewBefore)
	}
	for _, ep := range s.Endpoints {
		if !ep.IsValid() || ep.Port() == 0 || ep.Addr().IsUnspecified() {
			return s, fmt.Errorf("endpoint %s is not an address and port peers can reach", ep)
		}
	}
	if len(s.Endpoints) == 0 {
		s.autoEndpoints = true
		addrs, err := hostAddrs()
		if err != nil {
			return s, fmt.Errorf("finding this host's addresses for the default endpoints: %w; pass --endpoint IP:PORT", err)
		}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, netip.AddrPortFrom(a, uint16(s.ListenPort)))
		}
	}
	// The overlay is the coordinator's to know: it checks that part.
	prefixes, err := wire.CheckRoutes(s.Routes, netip.Prefix{})
	if err != nil {
		return s, fmt.Errorf("--advertise-routes: %w", err)
	}
	for i, r := range s.Routes {
		if r.SNAT {
			s.snat = append(s.snat, prefixes[i])
		}
	}
	if err := checkWorkloads(s.Workloads, s.WorkloadCgroups, isCgroup); err != nil {
		return s, err
	}
	if s.enforce, err = resolveEnforce(s.Enforce); err != nil {
		return s, err
	}
	if s.Enforce == "" {
		s.Enforce = EnforceAuto
	}
	return s, nil
}

// validateName checks a node name (see wire.CheckNodeName).
func validateName(name string) error {
	if err := wire.CheckNodeName(name); err != nil {
		return fmt.Errorf("%w (pass --name)", err)
	}
	return nil
}

// defaultName is the host name, lowercased and cut at the first dot.
func defaultName() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("reading the host name: %w; pass --name", err)
	}
	h, _, _ = strings.Cut(strings.ToLower(h), ".")
	if err := validateName(h); err != nil {
		return "", fmt.Errorf("the host name cannot be a node name: %w", err)
	}
	return h, nil
}

// interfaceAddrs returns every global unicast IPv4 address of the host.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && ip.IsGlobalUnicast() {
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no global unicast IPv4 address")
	}
	return out, nil
}
