// Package agent is the node agent: it enrolls the machine with a join
// token and keeps its SPIFFE X.509-SVID renewed (or, with --spiffe-socket,
// takes the SVID from the local SPIRE agent's Workload API, which rotates
// it), registers the node's
// WireGuard key, endpoints and workloads with the coordinator, streams the
// node's view and applies it to the WireGuard device and to the enforcer
// (--enforce: the eBPF programs of package node/enforce/ebpf, the
// userspace packet filter of package node/enforce/userspace, auto for the
// first of the two that works here, or off; the agent holds either as one
// enforce.Enforcer), turns the enforcer's events into flow records for the
// coordinator, routes the site prefixes its peers carry through the
// device and, on a gateway (--advertise-routes), turns IPv4 forwarding on
// and masquerades the traffic into routes advertised with :snat (package
// node/route), keeps enforcing the last view while the coordinator is away
// (fail-static), learns its reflexive endpoint behind NAT from the
// coordinator's STUN server and tries each peer's candidate endpoints in
// turn (docs/nat.md), and answers local status queries on a unix socket in its
// state directory and, if asked, Prometheus scrapes.
//
// Only package cli imports it. It talks to the coordinator through the
// wire types and imports no coordinator package.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/node/enforce"
	"github.com/latchnet/latch/node/enforce/ebpf"
	"github.com/latchnet/latch/node/enforce/userspace"
	"github.com/latchnet/latch/node/flowlog"
	"github.com/latchnet/latch/node/route"
	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Log field names.
const (
	logErr       = "err"
	logNode      = "node"
	logID        = "spiffe_id"
	logVersion   = "version"
	logPeers     = "peers"
	logExpiry    = "expires"
	logRetry     = "retry_in"
	logCode      = "code"
	logHave      = "have"
	logEnforce   = "enforce"
	logWorkloads = "workloads"
	logEnforced  = "enforced_version"
)

// Stages of a view's application, the label of
// latch_node_view_apply_failures_total.
const (
	stageRules     = iota // the enforcer loads the rules
	stageWireGuard        // WireGuard takes the peers
	numStages
)

var stageNames = [numStages]string{"rules", "wireguard"}

// deps are the agent's effects on the host and on time; tests replace
// them.
type deps struct {
	open       func(wg.Config, *slog.Logger) (wg.Device, wg.Impl, error)
	loadEBPF   func(pinDir string) (kernelEnforcer, error)
	filter     userspace.Options // of the userspace enforcer
	clock      Clock
	hostAddrs  func() ([]netip.Addr, error)
	isCgroup   func(path string) error // nil if path is a cgroup v2 directory
	hostname   func() (string, error)
	backoffMin time.Duration
	backoffMax time.Duration
	// silence is how long the stream may stay quiet (the coordinator sends
	// a keepalive every 10 s) before the agent reconnects.
	silence time.Duration
	// spire opens the SPIRE agent's Workload API (--spiffe-socket).
	spire func(ctx context.Context, addr string, workloadIDs []string) (SpireSource, error)
	// spireIDs lists the SPIFFE IDs the SPIRE agent issues this process.
	spireIDs func(ctx context.Context, addr string) ([]string, error)
	// routes is the host's routing table, forwarding switch and SNAT.
	routes route.Host
}

func defaultDeps() deps {
	return deps{
		open:       wg.Open,
		loadEBPF:   loadEBPF,
		clock:      systemClock{},
		hostAddrs:  interfaceAddrs,
		isCgroup:   isCgroup2Dir,
		hostname:   defaultName,
		backoffMin: 500 * time.Millisecond,
		backoffMax: 15 * time.Second,
		silence:    35 * time.Second,
		spire:      openWorkloadAPI,
		spireIDs:   fetchSpireIDs,
		routes:     route.Kernel{},
	}
}

// ErrNotEnrolled is returned by Run when the state directory holds no SVID
// and no join token was given.
var ErrNotEnrolled = errors.New("this node is not enrolled: pass --join-token")

// Run runs the node agent until ctx is cancelled; then it closes the
// stream, removes the WireGuard interface and the status socket, and
// returns nil. It returns an error at once if the configuration is invalid,
// if enrollment fails (the coordinator's message), or if the WireGuard
// device cannot be brought up. Once running, coordinator outages are
// retried with backoff while the last view stays applied.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	return run(ctx, cfg, log, defaultDeps())
}

// Enroll enrolls the node with the join token, saves its identity in the
// state directory and returns, touching no network configuration: the
// install script enrolls this way before it starts the service, so that a
// bad token fails the install at once instead of a service restarting. A
// node already enrolled (an SVID in the state directory) returns nil
// without using the token.
func Enroll(ctx context.Context, cfg Config, log *slog.Logger) error {
	return enrollOnly(ctx, cfg, log, defaultDeps())
}

func enrollOnly(ctx context.Context, cfg Config, log *slog.Logger, d deps) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := cfg.check(d.hostAddrs, d.isCgroup)
	if err != nil {
		return err
	}
	a := &agent{s: s, log: log, d: d, dir: stateDir(s.StateDir), src: &source{}, local: s.Endpoints}
	if s.token == nil {
		if _, err := os.Stat(a.dir.path(SVIDFile)); errors.Is(err, fs.ErrNotExist) {
			return ErrNotEnrolled
		}
	}
	if err := a.dir.create(); err != nil {
		return err
	}
	if _, err := a.dir.wgKey(); err != nil {
		return err
	}
	return a.loadOrEnroll(ctx)
}

// agent is one running node agent.
type agent struct {
	s   settings
	log *slog.Logger
	d   deps
	dir stateDir
	src *source // the embedded CA's SVID; unused with spire
	// spire is the SVID source of a node with --spiffe-socket, nil
	// otherwise; spireName is the node name from its SPIFFE ID and
	// coordID the ID the coordinator must present.
	spire     SpireSource
	bundles   x509bundle.Source // SPIRE's, and the coordinator's CA with --coordinator-ca
	spireName string
	coordID   spiffeid.ID
	api       *client
	dev       wg.Device
	impl      wg.Impl
	wgKey     string // public, base64
	// enf is the enforcer of the active mode (s.enforce), nil when
	// enforcement is off; set before the device opens.
	enf    enforce.Enforcer
	events atomic.Uint64 // flow events read from enf
	// flows aggregates the enforcer's events into flow records for the
	// coordinator; flowsSent counts the records it accepted.
	flows     *flowlog.Log
	flowsSent atomic.Uint64

	// viewFailures counts failed view applications by stage.
	viewFailures [numStages]atomic.Uint64

	// applyMu serialises the peer sets given to dev (setView, the path
	// loop); applied is the last one dev took and paths picks each
	// peer's endpoint among its candidates. Guarded by applyMu.
	applyMu sync.Mutex
	applied []wg.Peer
	paths   *paths

	mu   sync.Mutex
	node wire.NodeInfo // guarded by mu
	// stunPort is the coordinator's STUN port from the last registration
	// (0: none); reflexive is this node's reflexive endpoint as STUN last
	// told it, registered with its endpoints. Guarded by mu.
	stunPort  int
	reflexive netip.AddrPort
	// local are the endpoints on the host's own addresses (or
	// --endpoint); guarded by mu.
	local []netip.AddrPort
	view  *view.View // the view received last; guarded by mu
	// enforced is the view whose rules the enforcer holds (every view
	// when enforcement is off); guarded by mu.
	enforced *view.View
	// viewErr is why the enforcer could not load view viewErrVersion, ""
	// when it loaded the last one; guarded by mu.
	viewErr        string
	viewErrVersion uint64
	needFull       bool      // ask for have=0 next; guarded by mu
	applyFailed    bool      // the last Device.Apply failed; guarded by mu
	connected      bool      // guarded by mu
	lastErr        string    // guarded by mu
	issuedAt       time.Time // when the current SVID was received; guarded by mu
	// restream ends the open view stream, so that it is opened again with
	// the renewed SVID; nil while none is open. Guarded by mu.
	restream func()
	// workloads are the declared workloads with the addresses the
	// coordinator assigned; guarded by mu.
	workloads []inventory.Workload
	// routes are the advertised routes with their status as the
	// coordinator answered the last registration; nil before it; guarded
	// by mu.
	routes []wire.RouteStatus
	// rt keeps the kernel routes of the sites behind the peers, and the
	// SNAT of this gateway's routes; nil until the device is up.
	rt *route.Manager
	// forwarding is the IPv4 forwarding of a node that advertises
	// routes; nil for one that advertises none.
	forwarding *ForwardingStatus
	// routeErr is why the last view's routes or SNAT did not all apply,
	// "" when they did; guarded by mu.
	routeErr string
}

func run(ctx context.Context, cfg Config, log *slog.Logger, d deps) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Compute and validate everything before touching the host.
	s, err := cfg.check(d.hostAddrs, d.isCgroup)
	if err != nil {
		return err
	}
	a := &agent{s: s, log: log, d: d, dir: stateDir(s.StateDir), src: &source{}, flows: flowlog.New(flowlog.Options{}), paths: newPaths(),
		local: s.Endpoints}

	if s.token == nil && s.SpiffeSocket == "" {
		if _, err := os.Stat(a.dir.path(SVIDFile)); errors.Is(err, fs.ErrNotExist) {
			return ErrNotEnrolled
		}
	}
	if err := a.dir.create(); err != nil {
		return err
	}
	key, err := a.dir.wgKey()
	if err != nil {
		return err
	}
	a.wgKey = key.PublicKey().String()
	if s.SpiffeSocket != "" {
		if err := a.openSpire(ctx); err != nil {
			return err
		}
		defer a.spire.Close()
		var protos []string
		if s.CoordinatorCA == "" {
			protos = []string{wire.SpiffeALPN} // ask for the coordinator's SPIRE SVID
		}
		a.api = newClient(s.base, a.spire, a.bundles, tlsconfig.AuthorizeID(a.coordID), protos...)
	} else {
		if err := a.loadOrEnroll(ctx); err != nil {
			return err
		}
		a.api = newClient(s.base, a.src, a.src, tlsconfig.AuthorizeID(a.src.get().coordinatorID()))
	}
	defer a.api.closeIdle()
	name, spiffeID, expiry := a.who()
	a.log = log.With(logNode, name)

	v, err := a.dir.loadView()
	if err != nil {
		a.log.Warn("ignoring the saved view", logErr, err)
	}
	if v != nil && v.Node != name {
		a.log.Warn("ignoring the saved view: it is for another node", logNode, v.Node)
		v = nil
	}
	saved, err := a.dir.loadWorkloads()
	if err != nil {
		a.log.Warn("ignoring the saved workloads", logErr, err)
	}
	a.workloads = declared(saved, s.Workloads)
	if _, ok, err := a.dir.loadNode(); err != nil || !ok {
		// Enrolled, but node.json was lost: learn the address first.
		if err := a.registerUntilDone(ctx); err != nil {
			return err
		}
	}
	node, _, err := a.dir.loadNode()
	if err != nil {
		return err
	}
	if !node.IP.Is4() {
		return fmt.Errorf("the coordinator gave this node no IPv4 overlay address (%s in %s)", node.IP, a.dir.path(NodeFile))
	}
	a.node = node

	wgcfg := wg.Config{
		Name:       s.Iface,
		PrivateKey: key,
		ListenPort: s.ListenPort,
		Address:    netip.PrefixFrom(node.IP, 32),
		Route:      node.Route,
	}
	// The enforcer of the mode; auto takes eBPF where it loads.
	var kernel kernelEnforcer // the eBPF enforcer, hooked on once the device is up
	var ebpfErr error         // why auto did not take eBPF
	if s.enforce == EnforceAuto || s.enforce == EnforceEBPF {
		pin := s.PinDir
		if pin == "" {
			pin = ebpf.DefaultPinDir(s.Iface)
		}
		k, err := d.loadEBPF(pin)
		switch {
		case err == nil:
			kernel, a.enf = k, k
			s.enforce = EnforceEBPF
		case s.enforce == EnforceEBPF:
			return fmt.Errorf("loading the eBPF enforcer (--enforce ebpf): %w; use --enforce userspace where eBPF is not available", err)
		default:
			a.log.Info("eBPF enforcer unavailable; using the userspace filter", logErr, err)
			s.enforce, ebpfErr = EnforceUserspace, err
		}
	}
	if s.enforce == EnforceUserspace {
		f := userspace.New(d.filter)
		a.enf = f
		wgcfg.Filter = wgFilter{f}
	}
	a.s.enforce = s.enforce
	if a.enf != nil {
		// Closing keeps the eBPF enforcer's pins: enforcement outlives
		// the agent.
		defer a.enf.Close()
		if v != nil {
			// The rules are in place before the first packet can flow.
			if err := a.applyRules(v); err != nil {
				a.log.Error("loading the saved view into the enforcer; it keeps the rules it had (a new one has none and drops everything) until a view loads", logErr, err)
			}
		}
	}

	// Touch the host: the WireGuard device, the last view, the socket.
	dev, impl, err := d.open(wgcfg, log)
	if err != nil {
		if errors.Is(err, wg.ErrFilterNeedsUserspace) {
			if ebpfErr != nil {
				return fmt.Errorf("bringing up WireGuard with --enforce auto, which took the userspace filter because the eBPF enforcer did not load (%v): %w: make eBPF load (it works with kernel WireGuard), or pass --enforce off", ebpfErr, err)
			}
			return fmt.Errorf("bringing up WireGuard with --enforce %s: %w: pass --enforce ebpf, which works with kernel WireGuard, or --enforce off", s.Enforce, err)
		}
		return fmt.Errorf("bringing up WireGuard: %w", err)
	}
	defer func() {
		if err := dev.Close(); err != nil {
			a.log.Warn("closing the WireGuard device", logErr, err)
		}
	}()
	if len(s.Routes) > 0 {
		// A gateway forwards between the overlay and its sites.
		changed, err := route.EnsureForwarding(d.routes)
		if err != nil {
			return fmt.Errorf("--advertise-routes: a gateway must forward IPv4 packets between the overlay and its sites: %w: run the agent as root in the gateway's network namespace, or set net.ipv4.ip_forward=1 yourself", err)
		}
		if changed {
			a.log.Info("turned on IPv4 forwarding (net.ipv4.ip_forward=1) for the advertised routes; it stays on when the agent stops")
		}
		a.forwarding = &ForwardingStatus{Enabled: true, SetByAgent: changed}
	}
	rt := route.New(d.routes, route.Config{Dev: s.Iface, Overlay: overlayOf(node), SNAT: s.snat}, a.log)
	// Before the device closes (which would take the routes with it):
	// the SNAT table does not go with it.
	defer func() {
		if err := rt.Close(); err != nil {
			a.log.Warn("removing the site routes and SNAT rules", logErr, err)
		}
	}()
	a.mu.Lock()
	a.rt = rt
	a.dev, a.impl = dev, impl
	ws := a.workloads
	a.mu.Unlock()
	// The saved (or just registered) workload addresses, so that the
	// workloads can bind them before the coordinator answers.
	a.bindWorkloads(dev, ws)
	if kernel != nil {
		if err := kernel.Attach(s.Iface, len(s.WorkloadCgroups) > 0); err != nil {
			return err
		}
	}
	a.log.Info("enforcement", logEnforce, s.enforce)
	if v != nil {
		a.setView(v, false)
		a.log.Info("applied the saved view", logVersion, v.Version, logPeers, len(v.Peers))
	} else if err := rt.Sync(nil, nil); err != nil {
		// Removes the SNAT table a previous agent may have left.
		a.log.Warn("clearing the SNAT rules", logErr, err)
	}
	stopStatus, err := a.serveStatus()
	if err != nil {
		return err
	}
	defer stopStatus()
	stopMetrics, err := a.serveMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()

	a.log.Info("node agent running", logID, spiffeID.String(), logExpiry, expiry)
	refl, _ := dev.(wg.Reflector) // nil for kernel WireGuard
	var wg sync.WaitGroup
	if a.spire == nil {
		wg.Go(func() { a.renewLoop(ctx) }) // SPIRE renews its own SVIDs
	}
	wg.Go(func() { a.syncLoop(ctx) })
	wg.Go(func() { a.pathLoop(ctx) })
	wg.Go(func() { a.endpointLoop(ctx, refl) })
	if a.enf != nil {
		wg.Go(func() { a.eventLoop(ctx) })
		wg.Go(func() { a.flowLoop(ctx) })
	}
	wg.Wait()
	a.log.Info("node agent stopping")
	return nil
}

// overlayOf is the overlay range of node: the route its device carries,
// the default range when the coordinator gave none.
func overlayOf(node wire.NodeInfo) netip.Prefix {
	if node.Route.IsValid() && node.Route.Addr().Is4() {
		return node.Route.Masked()
	}
	return inventory.OverlayRange
}

// loadOrEnroll loads the saved SVID, or enrolls with the join token when
// there is none.
func (a *agent) loadOrEnroll(ctx context.Context) error {
	id, ok, err := a.dir.loadIdentity()
	if err != nil {
		return err
	}
	if ok {
		if a.s.Name != "" && a.s.Name != id.name {
			return fmt.Errorf("the state directory %s belongs to node %q, not %q: use another --state-dir or drop --name", a.s.StateDir, id.name, a.s.Name)
		}
		issued := time.Time{}
		if fi, err := os.Stat(a.dir.path(SVIDFile)); err == nil {
			issued = fi.ModTime()
		}
		a.src.swap(id)
		a.issuedAt = issued
		return nil
	}
	if a.s.token == nil {
		return ErrNotEnrolled
	}
	name := a.s.Name
	if name == "" {
		if name, err = a.d.hostname(); err != nil {
			return err
		}
	}
	a.log.Info("enrolling", logNode, name, "token", a.s.token.String())
	id, node, err := enroll(ctx, a.s.base, *a.s.token, name, a.s.Labels, a.s.Routes)
	if err != nil {
		return fmt.Errorf("enrolling with %s: %w", a.s.Coordinator, err)
	}
	// node.json first: an identity without it is recovered by registering.
	if err := a.dir.writeJSON(NodeFile, node); err != nil {
		return err
	}
	if err := a.dir.saveIdentity(id); err != nil {
		return err
	}
	a.src.swap(id)
	a.issuedAt = a.d.clock.Now()
	a.log.Info("enrolled", logID, id.spiffeID().String(), logExpiry, id.notAfter())
	return nil
}

// registerRequest is what the node registers: its WireGuard key, its
// endpoints outside the overlay (the local ones, then the reflexive one,
// without repeats), its ports and workloads.
func (a *agent) registerRequest() wire.RegisterRequest {
	a.mu.Lock()
	route := a.node.Route
	reflexive := a.reflexive
	local := a.local
	a.mu.Unlock()
	req := wire.RegisterRequest{PublicKey: a.wgKey, Ports: a.s.Ports, Workloads: a.s.Workloads, Routes: a.s.Routes}
	for _, ep := range append(slices.Clone(local), reflexive) {
		if !ep.IsValid() || slices.Contains(req.Endpoints, ep) || (route.IsValid() && route.Contains(ep.Addr())) {
			continue
		}
		req.Endpoints = append(req.Endpoints, ep)
	}
	return req
}

// register registers the node and saves what the coordinator says of it.
func (a *agent) register(ctx context.Context) error {
	resp, err := a.api.register(ctx, a.registerRequest())
	if err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	a.mu.Lock()
	old := a.node
	a.node = resp.Node
	a.routes = resp.Routes
	a.stunPort = resp.STUNPort
	a.mu.Unlock()
	if old.IP.IsValid() && (old.IP != resp.Node.IP || old.Route != resp.Node.Route) {
		a.log.Error("the coordinator changed this node's overlay address; restart the agent to use it",
			"old_ip", old.IP, "new_ip", resp.Node.IP, "old_route", old.Route, "new_route", resp.Node.Route)
	}
	if err := a.dir.writeJSON(NodeFile, resp.Node); err != nil {
		a.log.Warn("saving node info", logErr, err)
	}
	a.setWorkloads(resp.Workloads, true)
	return nil
}

// registerUntilDone registers, retrying with backoff, until it succeeds or
// ctx ends.
func (a *agent) registerUntilDone(ctx context.Context) error {
	bo := newBackoff(a.d.backoffMin, a.d.backoffMax)
	for {
		err := a.register(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.next()
		a.noteError(err, wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// noteError records err for status and logs it; a refusal by the
// coordinator is logged with its message as an error.
func (a *agent) noteError(err error, retry time.Duration) {
	a.mu.Lock()
	a.lastErr = err.Error()
	a.mu.Unlock()
	if ce, ok := refused(err); ok && ce.Code == "pending" {
		a.log.Warn("this node waits for approval on the coordinator", logErr, ce.Message, logRetry, retry)
		return
	}
	if ce, ok := refused(err); ok {
		a.log.Error("the coordinator refused this node; keeping the last view", logErr, ce.Message, logCode, ce.Code, logRetry, retry)
		return
	}
	if errors.Is(err, errNeedFull) {
		a.log.Info("reconnecting for a full view", logRetry, retry)
		return
	}
	if errors.Is(err, errSVIDRenewed) {
		a.mu.Lock()
		a.lastErr = ""
		a.mu.Unlock()
		a.log.Info("SVID renewed: opening the view stream again with the new one", logRetry, retry)
		return
	}
	if errors.Is(err, errSVIDRotated) {
		a.mu.Lock()
		a.lastErr = ""
		a.mu.Unlock()
		a.log.Info("SVID rotated by SPIRE: reconnecting with the new one", logRetry, retry)
		return
	}
	a.log.Warn("lost the coordinator; keeping the last view and reconnecting", logErr, err, logRetry, retry)
}

// backoff is jittered exponential backoff.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

// next returns the next wait: a random duration in [d/2, d], where d starts
// at min and doubles up to max.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }
