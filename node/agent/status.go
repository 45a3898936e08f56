package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/latchnet/latch/node/flowlog"
	"github.com/latchnet/latch/node/route"
)

// Status is the answer of GET /status on the agent's socket.
type Status struct {
	Name        string    `json:"name"`
	SPIFFEID    string    `json:"spiffeID"`
	SVIDExpiry  time.Time `json:"svidExpiry"`
	Coordinator string    `json:"coordinator"`
	Connected   bool      `json:"connected"`
	LastError   string    `json:"lastError"`
	ViewVersion uint64    `json:"viewVersion"`
	// EnforcedVersion is the version of the view whose rules the enforcer
	// holds and whose peers WireGuard got; it lags ViewVersion while the
	// enforcer cannot load the received view (ViewError says why).
	EnforcedVersion uint64 `json:"enforcedVersion"`
	ViewError       string `json:"viewError,omitempty"`
	Iface           string `json:"iface"`
	Impl            string `json:"impl"`
	PublicKey       string `json:"publicKey"`
	IP              string `json:"ip"`
	// Enforce is the active enforcement mode: ebpf, userspace or off.
	Enforce string `json:"enforce"`
	// Enforcement holds the enforcer's counters; nil when Enforce is off
	// or the enforcer cannot read them.
	Enforcement *EnforceStatus `json:"enforcement,omitempty"`
	// Flows is the flow-record buffer; nil when Enforce is off.
	Flows *FlowStatus `json:"flows,omitempty"`
	// Workloads are the node's declared workloads with their overlay
	// addresses ("" until the coordinator assigned one).
	Workloads []WorkloadStatus `json:"workloads"`
	// Routes are the subnets the node advertises, with their status as
	// the coordinator answered the node's last registration ("" before
	// it): a decision an admin makes later shows at the next one.
	Routes []RouteStatus `json:"routes,omitempty"`
	// Forwarding is the IPv4 forwarding of a node that advertises
	// routes; nil for one that advertises none.
	Forwarding *ForwardingStatus `json:"forwarding,omitempty"`
	// SiteRoutes are the kernel routes through the device for the site
	// prefixes the peers carry (AllowedIPs outside the overlay).
	SiteRoutes []SiteRoute `json:"siteRoutes,omitempty"`
	// RouteError is why the last view's site routes or SNAT rules did
	// not all apply; "" when they did.
	RouteError string `json:"routeError,omitempty"`
}

// RouteStatus is an advertised route in Status.
type RouteStatus struct {
	Prefix string `json:"prefix"`
	// SNAT is true when the route is advertised with :snat.
	SNAT bool `json:"snat,omitempty"`
	// Status is wire.RouteAdvertised, RouteApproved or RouteRejected, ""
	// until the coordinator answered a registration.
	Status string `json:"status"`
	// Approved is true when the view received last names the route
	// (View.Routes): it is approved and in force.
	Approved bool `json:"approved"`
	// Primary is true when this node is the primary gateway for (part
	// of) the route.
	Primary bool `json:"primary,omitempty"`
	// SNATActive is true when the masquerade rule for the route is in
	// place.
	SNATActive bool `json:"snatActive,omitempty"`
}

// ForwardingStatus is the IPv4 forwarding of a gateway in Status.
type ForwardingStatus struct {
	// Enabled is true when net.ipv4.ip_forward is 1 now (the agent does
	// not start otherwise, but it may have been turned off since).
	Enabled bool `json:"enabled"`
	// SetByAgent is true when the agent set it at start.
	SetByAgent bool `json:"setByAgent,omitempty"`
	// Error is why it could not be read, "" when it was.
	Error string `json:"error,omitempty"`
}

// SiteRoute is a site prefix a peer carries, in PeerInfo.
type SiteRoute struct {
	Prefix string `json:"prefix"`
	// Installed is true when the kernel route through the device is in
	// place.
	Installed bool `json:"installed"`
	// Conflict names the owner of the kernel route that holds the prefix
	// instead, "" when none.
	Conflict string `json:"conflict,omitempty"`
	// Error is why the route could not be added or removed (Status
	// only), "" when it was.
	Error string `json:"error,omitempty"`
}

// FlowStatus is the flow-record part of Status.
type FlowStatus struct {
	flowlog.Stats
	// Sent counts the records the coordinator accepted.
	Sent uint64 `json:"sent"`
}

// PeerInfo is one entry of GET /peers: a WireGuard peer as the device
// reports it, named from the view.
type PeerInfo struct {
	Node          string    `json:"node"` // "" if the peer is not in the view
	PublicKey     string    `json:"publicKey"`
	Endpoint      string    `json:"endpoint,omitempty"`
	AllowedIPs    []string  `json:"allowedIPs"`
	LastHandshake time.Time `json:"lastHandshake,omitzero"`
	RxBytes       int64     `json:"rxBytes"`
	TxBytes       int64     `json:"txBytes"`
	// SiteRoutes are the AllowedIPs outside the overlay: site addresses
	// behind the peer, a gateway.
	SiteRoutes []SiteRoute `json:"siteRoutes,omitempty"`
	// Path is how the peer is reached: PathDirectLAN or PathDirectPublic
	// (by the address of Endpoint, see pathOf) after a handshake,
	// PathNone before the first one.
	Path string `json:"path"`
	// Candidates are the peer's endpoints from the view, in its order.
	Candidates []Candidate `json:"candidates,omitempty"`
	// Reason says why the path is none, "" otherwise.
	Reason string `json:"reason,omitempty"`
}

// Candidate is one of a peer's endpoints, in PeerInfo.
type Candidate struct {
	Endpoint string `json:"endpoint"`
	// InUse is true when WireGuard holds this endpoint for the peer.
	InUse bool `json:"inUse,omitempty"`
	// Tried is true when the agent gave it to WireGuard since the peer's
	// candidates last changed.
	Tried bool `json:"tried,omitempty"`
}

func (a *agent) status() Status {
	name, id, expiry := a.who()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{
		Name:        name,
		SPIFFEID:    id.String(),
		SVIDExpiry:  expiry,
		Coordinator: a.s.base.String(),
		Connected:   a.connected,
		LastError:   a.lastErr,
		Iface:       a.dev.Name(),
		Impl:        string(a.impl),
		PublicKey:   a.dev.PublicKey().String(),
		IP:          a.node.IP.String(),
		Enforce:     a.s.enforce,
		Workloads:   a.workloadStatus(),
	}
	var rst route.Status
	if a.rt != nil {
		rst = a.rt.Status()
	}
	for _, r := range a.s.Routes {
		rs := RouteStatus{Prefix: r.Prefix, SNAT: r.SNAT}
		for _, got := range a.routes {
			if got.Prefix == r.Prefix {
				rs.Status = got.Status
			}
		}
		p, _ := netip.ParsePrefix(r.Prefix) // checked at start
		if a.view != nil {
			for _, vr := range a.view.Routes {
				if vr.Prefix.Netip() == p {
					rs.Approved, rs.Primary = true, vr.Primary
				}
			}
		}
		rs.SNATActive = slices.Contains(rst.SNAT, p)
		st.Routes = append(st.Routes, rs)
	}
	if a.forwarding != nil {
		// Read now: someone may have turned it off since the start.
		fs := *a.forwarding
		on, err := a.d.routes.Forwarding()
		fs.Enabled = on
		if err != nil {
			fs.Error = err.Error()
		}
		st.Forwarding = &fs
	}
	for _, r := range rst.Routes {
		st.SiteRoutes = append(st.SiteRoutes, SiteRoute{Prefix: r.Prefix.String(), Installed: r.Installed, Conflict: r.Conflict, Error: r.Error})
	}
	st.RouteError = a.routeErr
	st.ViewVersion = versionOf(a.view)
	st.EnforcedVersion = versionOf(a.enforced)
	st.ViewError = a.viewErr
	if a.enf != nil {
		if es, err := a.enf.Stats(); err == nil {
			st.Enforcement = &EnforceStatus{Stats: es, Events: a.events.Load()}
		}
		st.Flows = &FlowStatus{Stats: a.flows.Stats(), Sent: a.flowsSent.Load()}
	}
	return st
}

func (a *agent) peers() ([]PeerInfo, error) {
	ps, err := a.dev.Peers()
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	a.mu.Lock()
	if a.view != nil {
		for _, p := range a.view.Peers {
			names[p.PublicKey] = p.Node
		}
	}
	overlay := overlayOf(a.node)
	a.mu.Unlock()
	a.applyMu.Lock()
	paths := make([]pathInfo, len(ps))
	for i, p := range ps {
		paths[i] = a.paths.describe(p)
	}
	a.applyMu.Unlock()
	kernel := map[netip.Prefix]route.State{}
	if a.rt != nil {
		for _, r := range a.rt.Status().Routes {
			kernel[r.Prefix] = r
		}
	}
	out := make([]PeerInfo, 0, len(ps))
	for i, p := range ps {
		pi := PeerInfo{
			Path:          paths[i].Path,
			Candidates:    paths[i].Candidates,
			Reason:        paths[i].Reason,
			Node:          names[p.PublicKey.String()],
			PublicKey:     p.PublicKey.String(),
			Endpoint:      p.Endpoint,
			AllowedIPs:    make([]string, 0, len(p.AllowedIPs)),
			LastHandshake: p.LastHandshake,
			RxBytes:       p.RxBytes,
			TxBytes:       p.TxBytes,
		}
		for _, ip := range p.AllowedIPs {
			pi.AllowedIPs = append(pi.AllowedIPs, ip.String())
		}
		for _, sp := range route.SitePrefixes(overlay, p.AllowedIPs) {
			k := kernel[sp]
			pi.SiteRoutes = append(pi.SiteRoutes, SiteRoute{Prefix: sp.String(), Installed: k.Installed, Conflict: k.Conflict})
		}
		out = append(out, pi)
	}
	return out, nil
}

// serveStatus listens on DIR/latch.sock (0600) and serves GET /status and
// GET /peers. The returned function stops the server and removes the
// socket.
func (a *agent) serveStatus() (stop func(), err error) {
	path := a.dir.path(SocketFile)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is running with state directory %s (it answers on %s)", a.s.StateDir, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale status socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.status())
	})
	mux.HandleFunc("GET /peers", func(w http.ResponseWriter, r *http.Request) {
		ps, err := a.peers()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ps)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("status socket", logErr, err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		os.Remove(path)
	}, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// QueryStatus asks the agent running with stateDir for its status.
func QueryStatus(ctx context.Context, stateDir string) (Status, error) {
	var st Status
	err := query(ctx, stateDir, "/status", &st)
	return st, err
}

// QueryPeers asks the agent running with stateDir for its WireGuard peers.
func QueryPeers(ctx context.Context, stateDir string) ([]PeerInfo, error) {
	var ps []PeerInfo
	err := query(ctx, stateDir, "/peers", &ps)
	return ps, err
}

func query(ctx context.Context, stateDir, path string, v any) error {
	sock := filepath.Join(stateDir, SocketFile)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://latch"+path, nil)
	if err != nil {
		return err
	}
	res, err := hc.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, errConnRefused):
			return fmt.Errorf("no node agent is running with state directory %s (nothing answers on %s): start one with latch node, or pass --state-dir", stateDir, sock)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("cannot reach the node agent at %s: permission denied: run as the agent's user (usually root)", sock)
		}
		return fmt.Errorf("asking the node agent at %s: %w", sock, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the node agent's answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(data, &e)
		return fmt.Errorf("the node agent answered %s: %s", res.Status, e.Error)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("reading the node agent's answer: %w", err)
	}
	return nil
}
