package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/node/route"
	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

const wait = 10 * time.Second

var (
	nodeIP    = netip.MustParseAddr("100.64.0.2")
	overlay   = netip.MustParsePrefix("100.64.0.0/10")
	underlay1 = netip.MustParseAddrPort("198.18.0.1:51820")
)

// eventually polls cond every 5 ms until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeCoord implements the coordinator's node API over the real CA.
type fakeCoord struct {
	t     *testing.T
	ca    *ca.CA
	srv   *httptest.Server
	token string
	ttl   time.Duration

	down    atomic.Bool // answer 503 to register and stream
	refuse  atomic.Bool // answer 403 to stream
	streams chan *fakeStream
	closed  chan struct{}

	mu        sync.Mutex
	enrolls   int                    // guarded by mu
	tokenUsed bool                   // guarded by mu
	renewed   []string               // serials issued by renew; guarded by mu
	registers []wire.RegisterRequest // guarded by mu
	flows     []wire.FlowBatch       // guarded by mu
	flowsDown atomic.Bool            // answer 503 to flow uploads
	stunPort  atomic.Int32           // told in register responses
	regNames  []string               // node names of registers; guarded by mu

	spire *fakeSpire // trusted besides ca, if set (trustSpire)
}

type fakeStream struct {
	have   uint64
	serial string // of the client certificate
	send   chan wire.StreamMessage
	drop   chan struct{}
}

func newFakeCoord(t *testing.T, ttl time.Duration) *fakeCoord {
	t.Helper()
	return newFakeCoordWith(t, ttl, nil)
}

// newFakeCoordWith calls setup before the server starts.
func newFakeCoordWith(t *testing.T, ttl time.Duration, setup func(*fakeCoord)) *fakeCoord {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.test")
	c, err := ca.Open(t.TempDir(), td, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := ca.NewToken(c.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeCoord{t: t, ca: c, token: tok.String(), ttl: ttl,
		streams: make(chan *fakeStream, 16), closed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathEnroll, fc.enroll)
	mux.HandleFunc("POST "+wire.PathRenew, fc.renew)
	mux.HandleFunc("POST "+wire.PathRegister, fc.register)
	mux.HandleFunc("GET "+wire.PathStream, fc.stream)
	mux.HandleFunc("POST "+wire.PathFlows, fc.postFlows)
	fc.srv = httptest.NewUnstartedServer(mux)
	svid, err := c.ServerSVID([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fc.srv.TLS = c.ServerTLSConfig(svid)
	if setup != nil {
		setup(fc)
	}
	fc.srv.StartTLS()
	t.Cleanup(func() {
		close(fc.closed)
		fc.srv.Close()
	})
	return fc
}

func fail(w http.ResponseWriter, code int, msg, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wire.Error{Error: msg, Code: reason})
}

func (fc *fakeCoord) nodeInfo(name string) wire.NodeInfo {
	return wire.NodeInfo{Name: name, Namespace: "default", IP: nodeIP, Route: overlay}
}

func (fc *fakeCoord) sign(w http.ResponseWriter, csr []byte, name string) (string, bool) {
	svid, err := fc.ca.SignNode(csr, name, fc.ttl)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error(), "bad_csr")
		return "", false
	}
	json.NewEncoder(w).Encode(wire.SVIDResponse{
		Chain:     [][]byte{svid.Certificates[0].Raw},
		Bundle:    [][]byte{fc.ca.Root().Raw},
		ExpiresAt: svid.Certificates[0].NotAfter,
		Node:      fc.nodeInfo(name),
	})
	return svid.Certificates[0].SerialNumber.String(), true
}

func (fc *fakeCoord) enroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, err.Error(), "bad_request")
		return
	}
	fc.mu.Lock()
	fc.enrolls++
	switch {
	case req.Token != fc.token:
		fc.mu.Unlock()
		fail(w, http.StatusUnauthorized, "join token unknown: ask an admin for a new one", "token_unknown")
		return
	case fc.tokenUsed:
		fc.mu.Unlock()
		fail(w, http.StatusUnauthorized, "join token already used: ask an admin for a new one", "token_used")
		return
	}
	fc.tokenUsed = true
	fc.mu.Unlock()
	fc.sign(w, req.CSR, req.Name)
}

// node verifies the client certificate as the real coordinator does.
func (fc *fakeCoord) node(w http.ResponseWriter, r *http.Request) (string, bool) {
	if len(r.TLS.PeerCertificates) > 0 && fc.spire != nil {
		if id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0]); err == nil && id.TrustDomain() == spireTD {
			if _, _, err := x509svid.Verify(r.TLS.PeerCertificates, fc.spire); err != nil {
				fail(w, http.StatusUnauthorized, err.Error(), "cert_refused")
				return "", false
			}
			return id.Path()[strings.LastIndex(id.Path(), "/")+1:], true
		}
	}
	name, _, err := fc.ca.VerifyNode(r.TLS.PeerCertificates)
	if err != nil {
		fail(w, http.StatusUnauthorized, err.Error(), "cert_refused")
		return "", false
	}
	return name, true
}

func (fc *fakeCoord) renew(w http.ResponseWriter, r *http.Request) {
	name, ok := fc.node(w, r)
	if !ok {
		return
	}
	var req wire.RenewRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, err.Error(), "bad_request")
		return
	}
	if serial, ok := fc.sign(w, req.CSR, name); ok {
		fc.mu.Lock()
		fc.renewed = append(fc.renewed, serial)
		fc.mu.Unlock()
	}
}

func (fc *fakeCoord) register(w http.ResponseWriter, r *http.Request) {
	name, ok := fc.node(w, r)
	if !ok {
		return
	}
	if fc.down.Load() {
		fail(w, http.StatusServiceUnavailable, "coordinator is starting", "unavailable")
		return
	}
	var req wire.RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, err.Error(), "bad_request")
		return
	}
	fc.mu.Lock()
	fc.registers = append(fc.registers, req)
	fc.regNames = append(fc.regNames, name)
	fc.mu.Unlock()
	resp := wire.RegisterResponse{Node: fc.nodeInfo(name), STUNPort: int(fc.stunPort.Load())}
	for i, d := range req.Workloads {
		// Addresses from 100.64.1.1 in declaration order.
		resp.Workloads = append(resp.Workloads, inventory.Workload{Name: d.Name, Namespace: d.Namespace,
			Labels: d.Labels, Ports: d.Ports, Node: name, IP: netip.AddrFrom4([4]byte{100, 64, 1, byte(i + 1)})})
	}
	for i, r := range req.Routes {
		// The first route approved, the others waiting.
		st := wire.RouteAdvertised
		if i == 0 {
			st = wire.RouteApproved
		}
		resp.Routes = append(resp.Routes, wire.RouteStatus{Prefix: r.Prefix, SNAT: r.SNAT, Status: st})
	}
	json.NewEncoder(w).Encode(resp)
}

func (fc *fakeCoord) stream(w http.ResponseWriter, r *http.Request) {
	if _, ok := fc.node(w, r); !ok {
		return
	}
	if fc.down.Load() {
		fail(w, http.StatusServiceUnavailable, "coordinator is starting", "unavailable")
		return
	}
	if fc.refuse.Load() {
		fail(w, http.StatusForbidden, "node n1 is revoked", "revoked")
		return
	}
	have, err := strconv.ParseUint(r.URL.Query().Get("have"), 10, 64)
	if err != nil {
		fail(w, http.StatusBadRequest, "bad have", "bad_request")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	s := &fakeStream{have: have, serial: r.TLS.PeerCertificates[0].SerialNumber.String(),
		send: make(chan wire.StreamMessage), drop: make(chan struct{})}
	fc.streams <- s
	enc := json.NewEncoder(w)
	for {
		select {
		case m := <-s.send:
			enc.Encode(m)
			w.(http.Flusher).Flush()
		case <-s.drop:
			return
		case <-r.Context().Done():
			return
		case <-fc.closed:
			return
		}
	}
}

func (fc *fakeCoord) nextStream(t *testing.T) *fakeStream {
	t.Helper()
	select {
	case s := <-fc.streams:
		return s
	case <-time.After(wait):
		t.Fatal("the agent did not open a view stream")
		return nil
	}
}

func (s *fakeStream) push(t *testing.T, m wire.StreamMessage) {
	t.Helper()
	select {
	case s.send <- m:
	case <-time.After(wait):
		t.Fatal("the stream did not take the message")
	}
}

func (fc *fakeCoord) counts() (enrolls, registers int, renewed []string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.enrolls, len(fc.registers), append([]string(nil), fc.renewed...)
}

func (fc *fakeCoord) lastRegisterName() string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.regNames[len(fc.regNames)-1]
}

func (fc *fakeCoord) lastRegister() wire.RegisterRequest {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.registers[len(fc.registers)-1]
}

// running is one agent started by startAgent.
type running struct {
	clock  *fakeClock
	routes *route.Fake // the host's routes, forwarding and SNAT
	dev    chan *wg.Fake
	cfgs   chan wg.Config
	cancel context.CancelFunc
	done   chan error
}

func testDeps(r *running) deps {
	d := defaultDeps()
	d.clock = r.clock
	if r.routes == nil {
		r.routes = route.NewFake()
	}
	d.routes = r.routes // never the host's
	d.backoffMin, d.backoffMax = 5*time.Millisecond, 50*time.Millisecond
	d.hostname = func() (string, error) { return "n1", nil }
	// The fake device has no kernel interface to attach eBPF to: auto
	// falls back to the userspace filter, as where eBPF is unavailable.
	d.loadEBPF = func(string) (kernelEnforcer, error) { return nil, errors.New("no eBPF in unit tests") }
	d.open = func(cfg wg.Config, _ *slog.Logger) (wg.Device, wg.Impl, error) {
		f := wg.NewFake(cfg.Name, cfg.PrivateKey.PublicKey(), cfg.ListenPort)
		r.cfgs <- cfg
		r.dev <- f
		return f, wg.Userspace, nil
	}
	return d
}

func testConfig(fc *fakeCoord, dir, token string) Config {
	return Config{
		Coordinator: fc.srv.URL,
		JoinToken:   token,
		StateDir:    dir,
		Iface:       "latch-test",
		Endpoints:   []netip.AddrPort{underlay1},
		Workloads:   []wire.WorkloadDecl{{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}}},
	}
}

func startAgent(t *testing.T, cfg Config) *running {
	t.Helper()
	return startAgentWith(t, cfg, nil)
}

// startAgentWith lets mod change the test deps.
func startAgentWith(t *testing.T, cfg Config, mod func(*deps)) *running {
	t.Helper()
	r := &running{clock: newFakeClock(time.Now()), routes: route.NewFake(), dev: make(chan *wg.Fake, 1), cfgs: make(chan wg.Config, 1), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := testDeps(r)
	if mod != nil {
		mod(&d)
	}
	go func() { r.done <- run(ctx, cfg, log, d) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) device(t *testing.T) *wg.Fake {
	t.Helper()
	select {
	case f := <-r.dev:
		r.dev <- f
		return f
	case err := <-r.done:
		r.done <- err
		t.Fatalf("agent exited: %v", err)
	case <-time.After(wait):
		t.Fatal("the agent did not open its device")
	}
	return nil
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(wait):
		t.Fatal("the agent did not stop")
		return nil
	}
}

func newKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func peer(name string, key wgtypes.Key, ep string, allowed ...string) view.Peer {
	p := view.Peer{Node: name, PublicKey: key.String(), Endpoints: []netip.AddrPort{netip.MustParseAddrPort(ep)}}
	for _, a := range allowed {
		p.AllowedIPs = append(p.AllowedIPs, view.MustPrefix(a))
	}
	return p
}

func wgPeer(key wgtypes.Key, ep string, allowed ...string) wg.Peer {
	p := wg.Peer{PublicKey: key, Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ep)), PersistentKeepalive: 25 * time.Second}
	for _, a := range allowed {
		p.AllowedIPs = append(p.AllowedIPs, netip.MustParsePrefix(a))
	}
	return p
}

func peersEqual(got, want []wg.Peer) bool {
	return cmp.Diff(want, got, cmp.Comparer(func(a, b *net.UDPAddr) bool { return a.String() == b.String() }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) == ""
}

func leafSerial(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, SVIDFile))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := decodeCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0].SerialNumber.String()
}

func savedVersion(dir string) uint64 {
	var v view.View
	data, err := os.ReadFile(filepath.Join(dir, ViewFile))
	if err != nil || json.Unmarshal(data, &v) != nil {
		return 0
	}
	return v.Version
}

// TestAgentLifecycle walks one node through enrollment, views, deltas,
// reconnects, status, renewal and a restart while the coordinator is down.
func TestAgentLifecycle(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	a := startAgent(t, testConfig(fc, dir, fc.token))
	dev := a.device(t)

	// Enrolled, registered, streaming from version 0.
	s1 := fc.nextStream(t)
	if s1.have != 0 {
		t.Errorf("first stream have=%d, want 0", s1.have)
	}
	cfg := <-a.cfgs
	if cfg.Address != netip.PrefixFrom(nodeIP, 32) || cfg.Route != overlay || cfg.Name != "latch-test" || cfg.ListenPort != DefaultListenPort {
		t.Errorf("device config %+v", cfg)
	}
	enrolls, registers, _ := fc.counts()
	if enrolls != 1 || registers != 1 {
		t.Errorf("enrolls=%d registers=%d, want 1 and 1", enrolls, registers)
	}
	reg := fc.lastRegister()
	wantReg := wire.RegisterRequest{
		PublicKey: dev.PublicKey().String(),
		Endpoints: []netip.AddrPort{underlay1},
		Workloads: []wire.WorkloadDecl{{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}}},
	}
	if d := cmp.Diff(wantReg, reg, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("register body (-want +got):\n%s", d)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	for _, f := range []string{KeyFile, SVIDFile, BundleFile, WGKeyFile, NodeFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}

	// A full view is applied.
	k2, k3 := newKey(t), newKey(t)
	v1 := view.View{Node: "n1", Version: 1, Peers: []view.Peer{peer("n2", k2, "198.18.0.2:51820", "100.64.0.3/32")}}
	s1.push(t, wire.StreamMessage{Full: &v1})
	want1 := []wg.Peer{wgPeer(k2, "198.18.0.2:51820", "100.64.0.3/32")}
	eventually(t, "the full view on the device", func() bool { return peersEqual(dev.Current(), want1) })
	eventually(t, "view.json at version 1", func() bool { return savedVersion(dir) == 1 })
	if fi, err := os.Stat(filepath.Join(dir, ViewFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("view.json: %v, want mode 0600", err)
	}

	// A keepalive changes nothing; a delta adds a peer.
	s1.push(t, wire.StreamMessage{Keepalive: true})
	v2 := v1
	v2.Version = 2
	v2.Peers = append(v2.Peers, peer("n3", k3, "198.18.0.3:51820", "100.64.0.4/32", "100.64.0.5/32"))
	d := view.Diff(&v1, &v2)
	s1.push(t, wire.StreamMessage{Delta: &d})
	want2 := append(want1, wgPeer(k3, "198.18.0.3:51820", "100.64.0.4/32", "100.64.0.5/32"))
	eventually(t, "the delta on the device", func() bool { return peersEqual(dev.Current(), want2) })
	eventually(t, "view.json at version 2", func() bool { return savedVersion(dir) == 2 })

	// A dropped stream reconnects, registers again, and resumes from 2.
	close(s1.drop)
	s2 := fc.nextStream(t)
	if s2.have != 2 {
		t.Errorf("reconnect have=%d, want 2", s2.have)
	}
	if _, registers, _ := fc.counts(); registers != 2 {
		t.Errorf("registers=%d after reconnect, want 2", registers)
	}
	if !peersEqual(dev.Current(), want2) {
		t.Error("peers changed across the reconnect")
	}

	// A delta from an unknown base makes the agent ask for a full view.
	s2.push(t, wire.StreamMessage{Delta: &view.Delta{Node: "n1", Base: 7, Version: 8}})
	s3 := fc.nextStream(t)
	if s3.have != 0 {
		t.Errorf("after a bad delta have=%d, want 0", s3.have)
	}
	if !peersEqual(dev.Current(), want2) {
		t.Error("peers changed after a bad delta")
	}
	v3 := v2
	v3.Version = 3
	s3.push(t, wire.StreamMessage{Full: &v3})
	eventually(t, "view.json at version 3", func() bool { return savedVersion(dir) == 3 })

	// The status socket answers.
	ctx := context.Background()
	var st Status
	eventually(t, "status at version 3", func() bool {
		var err error
		st, err = QueryStatus(ctx, dir)
		return err == nil && st.ViewVersion == 3 && st.Connected
	})
	wantSt := Status{
		Name: "n1", SPIFFEID: "spiffe://example.test/latch/node/n1", SVIDExpiry: st.SVIDExpiry,
		Coordinator: fc.srv.URL, Connected: true, ViewVersion: 3, EnforcedVersion: 3, Iface: "latch-test",
		Impl: "wireguard-go", PublicKey: dev.PublicKey().String(), IP: nodeIP.String(),
		Enforce: EnforceUserspace, Enforcement: st.Enforcement, // counters: see TestEnforce
		Flows:     &FlowStatus{}, // records: see TestMonitorFlowsAndMetrics
		Workloads: []WorkloadStatus{{Name: "web", Namespace: "default", IP: "100.64.1.1", Labels: map[string]string{"app": "web"}}},
	}
	if st.Enforcement == nil || st.Enforcement.ViewVersion != 3 {
		t.Errorf("status.enforcement = %+v, want the filter at view version 3", st.Enforcement)
	}
	if d := cmp.Diff(wantSt, st); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	if st.SVIDExpiry.IsZero() {
		t.Error("status has no SVID expiry")
	}
	if fi, err := os.Stat(filepath.Join(dir, SocketFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, want mode 0600", err)
	}
	ps, err := QueryPeers(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	wantPs := []PeerInfo{
		{Node: "n2", PublicKey: k2.String(), Endpoint: "198.18.0.2:51820", AllowedIPs: []string{"100.64.0.3/32"}, Path: PathNone,
			Candidates: []Candidate{{Endpoint: "198.18.0.2:51820", InUse: true, Tried: true}},
			Reason:     "no handshake yet on its one candidate; tried 198.18.0.2:51820; a relay is not built yet"},
		{Node: "n3", PublicKey: k3.String(), Endpoint: "198.18.0.3:51820", AllowedIPs: []string{"100.64.0.4/32", "100.64.0.5/32"}, Path: PathNone,
			Candidates: []Candidate{{Endpoint: "198.18.0.3:51820", InUse: true, Tried: true}},
			Reason:     "no handshake yet on its one candidate; tried 198.18.0.3:51820; a relay is not built yet"},
	}
	if d := cmp.Diff(wantPs, ps); d != "" {
		t.Errorf("peers (-want +got):\n%s", d)
	}

	// At half-life the SVID is renewed; later connections present the new one.
	oldSerial := leafSerial(t, dir)
	if s3.serial != oldSerial {
		t.Errorf("stream presented serial %s, saved SVID is %s", s3.serial, oldSerial)
	}
	eventually(t, "the renewal timer", func() bool { return a.clock.Waiters() > 0 })
	a.clock.Advance(11 * time.Minute)
	var renewed []string
	eventually(t, "a renewal", func() bool { _, _, renewed = fc.counts(); return len(renewed) == 1 })
	eventually(t, "the renewed SVID saved", func() bool { return leafSerial(t, dir) == renewed[0] })
	// The agent opens its stream again with the renewed SVID itself: the
	// coordinator accepts the old one only briefly after a renewal.
	s4 := fc.nextStream(t)
	close(s3.drop)
	if s4.serial != renewed[0] {
		t.Errorf("after renewal the stream presented serial %s, want the renewed %s", s4.serial, renewed[0])
	}
	if s4.have != 3 {
		t.Errorf("have=%d, want 3", s4.have)
	}

	// Stop: device closed, socket removed.
	if err := a.stop(t); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if !dev.Closed() {
		t.Error("device not closed")
	}
	if _, err := os.Stat(filepath.Join(dir, SocketFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there: %v", err)
	}

	// Restart while the coordinator is down: no enrollment, the saved view
	// is applied at once; once the coordinator is back it resumes from 3.
	fc.down.Store(true)
	b := startAgent(t, testConfig(fc, dir, fc.token))
	devB := b.device(t)
	eventually(t, "the saved view on the restarted device", func() bool { return peersEqual(devB.Current(), want2) })
	if devB.PublicKey() != dev.PublicKey() {
		t.Error("the WireGuard key changed across the restart")
	}
	var stB Status
	eventually(t, "status while the coordinator is down", func() bool {
		var err error
		stB, err = QueryStatus(ctx, dir)
		return err == nil && stB.LastError != ""
	})
	if stB.Connected || stB.ViewVersion != 3 || !strings.Contains(stB.LastError, "coordinator is starting") {
		t.Errorf("status while down: %+v", stB)
	}
	fc.down.Store(false)
	s5 := fc.nextStream(t)
	if s5.have != 3 {
		t.Errorf("after restart have=%d, want 3", s5.have)
	}
	if enrolls, _, _ := fc.counts(); enrolls != 1 {
		t.Errorf("enrolls=%d, want 1: the token must not be used again", enrolls)
	}

	// A refused certificate keeps the last view.
	fc.refuse.Store(true)
	close(s5.drop)
	eventually(t, "the refusal in the status", func() bool {
		st, err := QueryStatus(ctx, dir)
		return err == nil && strings.Contains(st.LastError, "node n1 is revoked")
	})
	if !peersEqual(devB.Current(), want2) {
		t.Error("peers changed after the coordinator refused the node")
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if !devB.Closed() {
		t.Error("restarted device not closed")
	}
}

func TestEnrollRefusals(t *testing.T) {
	fc := newFakeCoord(t, time.Hour)
	r := &running{clock: newFakeClock(time.Now()), dev: make(chan *wg.Fake, 1), cfgs: make(chan wg.Config, 1)}
	ctx := context.Background()

	err := run(ctx, testConfig(fc, t.TempDir(), ""), nil, testDeps(r))
	if !errors.Is(err, ErrNotEnrolled) || err.Error() != "this node is not enrolled: pass --join-token" {
		t.Errorf("no token: %v", err)
	}

	fc.mu.Lock()
	fc.tokenUsed = true
	fc.mu.Unlock()
	err = run(ctx, testConfig(fc, t.TempDir(), fc.token), nil, testDeps(r))
	var ce *CoordinatorError
	if !errors.As(err, &ce) || ce.Code != "token_used" || !strings.Contains(err.Error(), "join token already used: ask an admin for a new one") {
		t.Errorf("used token: %v", err)
	}

	// A token for another CA fails the pinned handshake.
	other, err := ca.Open(t.TempDir(), spiffeid.RequireTrustDomainFromString("example.test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := ca.NewToken(other.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	err = run(ctx, testConfig(fc, t.TempDir(), tok.String()), nil, testDeps(r))
	if err == nil || !strings.Contains(err.Error(), "fingerprint mismatch") {
		t.Errorf("token for another CA: %v", err)
	}
	if len(r.dev) != 0 {
		t.Error("a device was opened although enrollment failed")
	}
}

func TestParseToken(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	good := "latch1.abcdefgh.abcdefghijklmnopqrstuvwxyz234567." + fp
	tok, err := parseToken(" " + good + "\n")
	if err != nil || tok.fingerprint != "sha256:"+fp || tok.text != good || tok.id != "abcdefgh" {
		t.Fatalf("parseToken = %+v, %v", tok, err)
	}
	if strings.Contains(tok.String(), "abcdefghijklmnop") {
		t.Errorf("String shows the secret: %s", tok)
	}
	for _, bad := range []string{"", "latch1.a.b", "latch2.a.b." + fp, "latch1..b." + fp, "latch1.a.b.xyz", "latch1.a.b." + strings.Repeat("zz", 32)} {
		if _, err := parseToken(bad); err == nil {
			t.Errorf("parseToken(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "abcdefghijklmnop") {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	// The format is the one the CA makes.
	c, err := ca.Open(t.TempDir(), spiffeid.RequireTrustDomainFromString("example.test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ct, _, err := ca.NewToken(c.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := parseToken(ct.String()); err != nil || tok.fingerprint != c.Fingerprint() {
		t.Errorf("parseToken(CA token) = %+v, %v", tok, err)
	}
}

func TestConfigCheck(t *testing.T) {
	addrs := func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("198.18.0.9")}, nil
	}
	base := Config{Coordinator: "https://coord.example:8443", StateDir: "/x"}
	s, err := base.check(addrs, isCgroup2Dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.ListenPort != 51820 || s.Iface != "latch0" || s.RenewBefore != 0.5 ||
		len(s.Endpoints) != 1 || s.Endpoints[0] != netip.MustParseAddrPort("198.18.0.9:51820") {
		t.Errorf("defaults: %+v", s)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no coordinator", func(c *Config) { c.Coordinator = "" }, "no coordinator"},
		{"http", func(c *Config) { c.Coordinator = "http://x:1" }, "https://HOST:PORT"},
		{"no state dir", func(c *Config) { c.StateDir = "" }, "--state-dir"},
		{"bad token", func(c *Config) { c.JoinToken = "nope" }, "join token"},
		{"bad name", func(c *Config) { c.Name = "Bad_Name" }, "invalid node name"},
		{"bad port", func(c *Config) { c.ListenPort = 70000 }, "listen port"},
		{"bad renew", func(c *Config) { c.RenewBefore = 1.5 }, "renew-before"},
		{"bad endpoint", func(c *Config) { c.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:1")} }, "endpoint"},
		{"long iface", func(c *Config) { c.Iface = "abcdefghijklmnopq" }, "interface name"},
		{"bad workload", func(c *Config) { c.Workloads = []wire.WorkloadDecl{{Name: "x"}} }, "namespace"},
		{"route not a network", func(c *Config) { c.Routes = []wire.Route{{Prefix: "198.19.1.5/24"}} }, "--advertise-routes: invalid route: 198.19.1.5/24 is not a network address: did you mean 198.19.1.0/24?"},
		{"overlapping routes", func(c *Config) { c.Routes = []wire.Route{{Prefix: "198.19.0.0/16"}, {Prefix: "198.19.1.0/24"}} }, "overlaps 198.19.0.0/16"},
	} {
		c := base
		tc.mod(&c)
		if _, err := c.check(addrs, isCgroup2Dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestRenewAt(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}
	id := &identity{chain: []*x509.Certificate{leaf}}
	// The backdated minute does not count: half of the hour from receipt.
	if got := renewAt(id, now, 0.5); !got.Equal(now.Add(30 * time.Minute)) {
		t.Errorf("renewAt = %v", got)
	}
	// Without a receipt time, NotBefore is the start.
	if got := renewAt(id, time.Time{}, 0.5); !got.Equal(now.Add(29*time.Minute + 30*time.Second)) {
		t.Errorf("renewAt without receipt = %v", got)
	}
}

func TestToWGPeer(t *testing.T) {
	k := newKey(t)
	p, err := toWGPeer(peer("n2", k, "198.18.0.2:51820", "100.64.0.3/32"))
	if err != nil || !peersEqual([]wg.Peer{p}, []wg.Peer{wgPeer(k, "198.18.0.2:51820", "100.64.0.3/32")}) {
		t.Errorf("toWGPeer = %+v, %v", p, err)
	}
	p, err = toWGPeer(view.Peer{Node: "n", PublicKey: k.String()})
	if err != nil || p.Endpoint != nil {
		t.Errorf("no endpoint: %+v, %v", p, err)
	}
	if _, err := toWGPeer(view.Peer{Node: "n", PublicKey: "junk"}); err == nil {
		t.Error("bad key accepted")
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(500*time.Millisecond, 15*time.Second)
	prev := time.Duration(0)
	for i := range 10 {
		d := b.next()
		if d < 250*time.Millisecond || d > 15*time.Second {
			t.Fatalf("step %d: %v out of range", i, d)
		}
		prev = d
	}
	if prev < 7500*time.Millisecond {
		t.Errorf("backoff did not reach its cap: %v", prev)
	}
	b.reset()
	if d := b.next(); d > 500*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}

func TestEnrollOnly(t *testing.T) {
	fc := newFakeCoord(t, time.Hour)
	r := &running{clock: newFakeClock(time.Now()), dev: make(chan *wg.Fake, 1), cfgs: make(chan wg.Config, 1)}
	ctx := context.Background()
	dir := t.TempDir()

	if err := enrollOnly(ctx, testConfig(fc, dir, fc.token), nil, testDeps(r)); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	for _, f := range []string{SVIDFile, NodeFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after enrolling: %v", err)
		}
	}
	if len(r.dev) != 0 {
		t.Error("enrolling opened a WireGuard device")
	}
	// Enrolled already: the (now used) token is not sent again.
	if err := enrollOnly(ctx, testConfig(fc, dir, fc.token), nil, testDeps(r)); err != nil {
		t.Fatalf("enrolling again: %v", err)
	}
	if err := enrollOnly(ctx, testConfig(fc, dir, ""), nil, testDeps(r)); err != nil {
		t.Fatalf("enrolled, no token: %v", err)
	}
	if enrolls, _, _ := fc.counts(); enrolls != 1 {
		t.Errorf("%d enroll calls, want 1", enrolls)
	}
	// A used token on a fresh state directory is refused with the
	// coordinator's message.
	err := enrollOnly(ctx, testConfig(fc, t.TempDir(), fc.token), nil, testDeps(r))
	if err == nil || !strings.Contains(err.Error(), "join token already used") {
		t.Errorf("used token: %v", err)
	}
	if err := enrollOnly(ctx, testConfig(fc, t.TempDir(), ""), nil, testDeps(r)); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("no token: %v", err)
	}
}
