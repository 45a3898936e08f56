package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
)

// TestAgentRegistersItsReflexiveEndpoint: the agent asks the STUN server
// at the coordinator's host and the port the registration told, and
// registers the answer after its local endpoints whenever it changes.
func TestAgentRegistersItsReflexiveEndpoint(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	fc.stunPort.Store(3478)
	dir := filepath.Join(t.TempDir(), "state")
	a := startAgent(t, testConfig(fc, dir, fc.token))
	dev := a.device(t)
	fc.nextStream(t)

	refl := netip.MustParseAddrPort("198.18.0.22:40000")
	dev.SetReflexive(refl, nil)
	registered := func(want ...netip.AddrPort) func() bool {
		return func() bool {
			a.clock.Advance(time.Second)
			return slices.Equal(fc.lastRegister().Endpoints, want)
		}
	}
	eventually(t, "a registration with the reflexive endpoint after the local one", registered(underlay1, refl))
	if asked := dev.Asked(); len(asked) == 0 || asked[0] != netip.MustParseAddrPort("127.0.0.1:3478") {
		t.Errorf("asked STUN servers %v, want the coordinator's host at port 3478", asked)
	}

	// The same answer: no new registration.
	_, before, _ := fc.counts()
	asked := len(dev.Asked())
	eventually(t, "two more STUN requests", func() bool {
		a.clock.Advance(time.Second)
		return len(dev.Asked()) >= asked+2
	})
	if _, after, _ := fc.counts(); after != before {
		t.Errorf("%d registrations for an unchanged reflexive endpoint", after-before)
	}

	// A new mapping (the NAT rebooted): registered in its place.
	moved := netip.MustParseAddrPort("198.18.0.22:40001")
	dev.SetReflexive(moved, nil)
	eventually(t, "a registration with the new reflexive endpoint", registered(underlay1, moved))

	// Same as a local endpoint: not repeated.
	dev.SetReflexive(underlay1, nil)
	eventually(t, "a registration with the local endpoint once", registered(underlay1))
}

// TestAgentAsksNoSTUNWithoutAPort: a coordinator without STUN (port 0)
// is not asked.
func TestAgentAsksNoSTUNWithoutAPort(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	a := startAgent(t, testConfig(fc, dir, fc.token))
	dev := a.device(t)
	fc.nextStream(t)
	dev.SetReflexive(netip.MustParseAddrPort("198.18.0.22:40000"), nil)
	for range 60 {
		a.clock.Advance(time.Second)
	}
	if asked := dev.Asked(); len(asked) != 0 {
		t.Errorf("asked %v with no STUN port", asked)
	}
}

// TestAgentTriesThePeersCandidatesInTurn: a peer with two candidates is
// given the first, then, without a handshake, re-added with the second;
// after a handshake it is left to WireGuard. The peers' answer and
// /metrics show the path: none with the reason before the handshake,
// direct-public after it.
func TestAgentTriesThePeersCandidatesInTurn(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.MetricsListen = freePort(t)
	a := startAgent(t, cfg)
	dev := a.device(t)
	s := fc.nextStream(t)
	key := newKey(t)
	lan, refl := "198.18.129.2:51820", "198.18.0.22:51820"
	p := peer("n2", key, lan, "100.64.0.2/32")
	p.Endpoints = append(p.Endpoints, netip.MustParseAddrPort(refl))
	v := view.View{Version: 1, Node: "n1", Peers: []view.Peer{p}}
	s.push(t, wire.StreamMessage{Full: &v})
	eventuallyPeers(t, dev, "the peer at its first candidate", []wg.Peer{wgPeer(key, lan, "100.64.0.2/32")})

	n := len(dev.Applied())
	eventually(t, "the peer at its second candidate", func() bool {
		a.clock.Advance(time.Second)
		cur := dev.Current()
		return len(cur) == 1 && cur[0].Endpoint != nil && cur[0].Endpoint.String() == refl
	})
	applied := dev.Applied()[n:]
	if len(applied) < 2 || len(applied[0]) != 0 {
		t.Errorf("applies %v; want the peer removed, then added back at the next candidate", applied)
	}

	checkPath(t, dir, cfg.MetricsListen, PeerInfo{Node: "n2", Endpoint: refl, Path: PathNone,
		Candidates: []Candidate{{Endpoint: lan, Tried: true}, {Endpoint: refl, InUse: true, Tried: true}},
		Reason:     "no handshake yet on any of 2 candidates; tried " + lan + ", " + refl + "; a relay is not built yet"})

	// A handshake: it stays.
	dev.SetHandshake(key, a.clock.Now())
	a.clock.Advance(time.Second) // a step sees it
	eventually(t, "a step after the handshake", func() bool { return a.clock.Waiters() > 0 })
	n = len(dev.Applied())
	for range 10 {
		a.clock.Advance(time.Second)
	}
	if got := dev.Applied()[n:]; len(got) > 0 {
		t.Errorf("applies %v after a handshake; want none", got)
	}
	checkPath(t, dir, cfg.MetricsListen, PeerInfo{Node: "n2", Endpoint: refl, Path: PathDirectPublic,
		Candidates: []Candidate{{Endpoint: lan, Tried: true}, {Endpoint: refl, InUse: true, Tried: true}}})
}

// checkPath checks the path fields of the agent's one peer against want,
// and that /metrics counts that peer on want.Path and none on the others.
func checkPath(t *testing.T, dir, metrics string, want PeerInfo) {
	t.Helper()
	ps, err := QueryPeers(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("peers %+v, want one", ps)
	}
	got := ps[0]
	if got.Node != want.Node || got.Endpoint != want.Endpoint || got.Path != want.Path || got.Reason != want.Reason || !slices.Equal(got.Candidates, want.Candidates) {
		t.Errorf("peer %+v\nwant node %s, endpoint %s, path %s, candidates %+v, reason %q", got, want.Node, want.Endpoint, want.Path, want.Candidates, want.Reason)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, path := range []string{PathDirectLAN, PathDirectPublic, PathNone} {
		n := 0
		if path == want.Path {
			n = 1
		}
		if line := fmt.Sprintf("latch_node_peer_path{path=%q} %d\n", path, n); !strings.Contains(string(body), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
}

// TestAgentFollowsTheHostsAddresses: without --endpoint, a change of the
// host's addresses is registered, and the STUN server asked again, at
// once.
func TestAgentFollowsTheHostsAddresses(t *testing.T) {
	fc := newFakeCoord(t, 20*time.Minute)
	fc.stunPort.Store(3478)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := testConfig(fc, dir, fc.token)
	cfg.Endpoints = nil
	cfg.ListenPort = 51820
	var mu sync.Mutex
	addrs := []netip.Addr{netip.MustParseAddr("198.18.0.5")}
	a := startAgentWith(t, cfg, func(d *deps) {
		d.hostAddrs = func() ([]netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(addrs), nil
		}
	})
	dev := a.device(t)
	fc.nextStream(t)
	refl := netip.MustParseAddrPort("198.18.0.22:40000")
	dev.SetReflexive(refl, nil)
	eventually(t, "the first registration with the reflexive endpoint", func() bool {
		a.clock.Advance(time.Second)
		return slices.Equal(fc.lastRegister().Endpoints, []netip.AddrPort{netip.MustParseAddrPort("198.18.0.5:51820"), refl})
	})
	asked := len(dev.Asked())

	mu.Lock()
	addrs = []netip.Addr{netip.MustParseAddr("198.18.0.6")}
	mu.Unlock()
	eventually(t, "a registration with the new address", func() bool {
		a.clock.Advance(time.Second)
		return slices.Equal(fc.lastRegister().Endpoints, []netip.AddrPort{netip.MustParseAddrPort("198.18.0.6:51820"), refl})
	})
	if got := len(dev.Asked()); got <= asked {
		t.Error("the STUN server was not asked again when the addresses changed")
	}
}
