package agent

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/node/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestPathsTryEachCandidateUntilAHandshake(t *testing.T) {
	k := wgtypes.Key{1}
	lan := netip.MustParseAddrPort("198.18.129.2:51820")
	refl := netip.MustParseAddrPort("198.18.0.22:51820")
	t0 := time.Unix(1000, 0)
	p := newPaths()
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {lan, refl, lan, {}}}, t0)
	if got := p.byKey[k].eps; len(got) != 2 {
		t.Fatalf("candidates %v, want [lan refl] without repeats or invalid ones", got)
	}
	ep := func() string {
		if e := p.endpoint(k); e != nil {
			return e.String()
		}
		return "none"
	}
	if ep() != lan.String() {
		t.Fatalf("first endpoint %s, want the first candidate %s", ep(), lan)
	}
	none := []wg.PeerStatus{{PublicKey: k}}
	if moved := p.step(none, t0.Add(pathDwell-time.Millisecond)); len(moved) != 0 || ep() != lan.String() {
		t.Fatalf("moved %v to %s before the dwell", moved, ep())
	}
	if moved := p.step(none, t0.Add(pathDwell)); len(moved) != 1 || moved[0] != k || ep() != refl.String() {
		t.Fatalf("after the dwell: moved %v, endpoint %s; want the peer moved to %s", moved, ep(), refl)
	}
	t1 := t0.Add(2 * pathDwell)
	if p.step(none, t1); ep() != lan.String() {
		t.Fatalf("after the last candidate: %s, want the first again", ep())
	}
	// A handshake: the peer stays, and WireGuard keeps its own endpoint.
	hs := []wg.PeerStatus{{PublicKey: k, LastHandshake: t1.Add(time.Second)}}
	for i := range 5 {
		if moved := p.step(hs, t1.Add(time.Duration(i+1)*pathDwell)); len(moved) != 0 {
			t.Fatalf("moved %v with a fresh handshake", moved)
		}
	}
	if ep() != "none" {
		t.Fatalf("endpoint %s with a fresh session, want none (WireGuard's own)", ep())
	}
	// The session expires: trying again at once (a step had passed
	// long before), then after each dwell.
	t2 := t1.Add(time.Second + sessionFresh)
	if moved := p.step(hs, t2); len(moved) != 1 || ep() != refl.String() {
		t.Fatalf("when the session expires: moved %v, endpoint %s; want the peer moved on", moved, ep())
	}
	if moved := p.step(hs, t2.Add(pathDwell/2)); len(moved) != 0 {
		t.Fatalf("half a dwell later: moved %v", moved)
	}
	if moved := p.step(hs, t2.Add(pathDwell)); len(moved) != 1 {
		t.Fatalf("a dwell after the session expired: moved %v, want the peer", moved)
	}
}

func TestPathsSlowDownForAnOfflinePeer(t *testing.T) {
	k := wgtypes.Key{1}
	a, b := netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:1")
	now := time.Unix(1000, 0)
	p := newPaths()
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {a, b}}, now)
	st := []wg.PeerStatus{{PublicKey: k}}
	moves := 0
	for range 1000 {
		now = now.Add(pathTick)
		moves += len(p.step(st, now))
	}
	// 1000 s: pathRounds rounds fast, then one move per pathSlowDwell.
	if max := pathRounds*2 + 1000/int(pathSlowDwell/time.Second) + 1; moves > max {
		t.Errorf("%d moves in 1000 s, want at most %d", moves, max)
	}
}

func TestPathsKeepTheCandidateInUseWhenTheListChanges(t *testing.T) {
	k, gone := wgtypes.Key{1}, wgtypes.Key{2}
	a := netip.MustParseAddrPort("198.18.0.1:1")
	b := netip.MustParseAddrPort("198.18.0.2:1")
	c := netip.MustParseAddrPort("198.18.0.3:1")
	now := time.Unix(1000, 0)
	p := newPaths()
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {a, b}, gone: {a}}, now)
	p.step([]wg.PeerStatus{{PublicKey: k}}, now.Add(pathDwell)) // on b
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {c, b}}, now)
	if got := p.endpoint(k).String(); got != b.String() {
		t.Errorf("endpoint %s after the list changed, want %s (still listed)", got, b)
	}
	if _, ok := p.byKey[gone]; ok {
		t.Error("a peer no longer in the view is still held")
	}
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {a}}, now)
	if got := p.endpoint(k).String(); got != a.String() {
		t.Errorf("endpoint %s after its candidate went, want the first, %s", got, a)
	}
}

func TestPeerPath(t *testing.T) {
	k := wgtypes.Key{2}
	lan := netip.MustParseAddrPort("192.168.1.5:51820")
	refl := netip.MustParseAddrPort("198.18.0.9:40211")
	t0 := time.Unix(1000, 0)
	p := newPaths()
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {lan, refl}}, t0)
	none := []wg.PeerStatus{{PublicKey: k}}
	p.step(none, t0.Add(pathDwell)) // on to refl

	// No handshake: path none, both candidates tried, a reason in words.
	got := p.describe(wg.PeerStatus{PublicKey: k, Endpoint: refl.String()})
	if got.Path != PathNone {
		t.Errorf("path %q without a handshake, want %q", got.Path, PathNone)
	}
	want := []Candidate{{Endpoint: lan.String(), Tried: true}, {Endpoint: refl.String(), InUse: true, Tried: true}}
	if !slices.Equal(got.Candidates, want) {
		t.Errorf("candidates %+v, want %+v", got.Candidates, want)
	}
	if w := "no handshake yet on any of 2 candidates; tried 192.168.1.5:51820, 198.18.0.9:40211; a relay is not built yet"; got.Reason != w {
		t.Errorf("reason %q, want %q", got.Reason, w)
	}

	// A handshake at the private candidate: direct-lan, no reason.
	hs := t0.Add(3 * pathDwell)
	got = p.describe(wg.PeerStatus{PublicKey: k, Endpoint: lan.String(), LastHandshake: hs})
	if got.Path != PathDirectLAN || got.Reason != "" || !got.Candidates[0].InUse || got.Candidates[1].InUse {
		t.Errorf("at the LAN candidate: %+v, want direct-lan with it in use", got)
	}
	// At the public one (or wherever WireGuard roamed to): direct-public.
	got = p.describe(wg.PeerStatus{PublicKey: k, Endpoint: "198.18.0.77:1234", LastHandshake: hs})
	if got.Path != PathDirectPublic || got.Candidates[0].InUse || got.Candidates[1].InUse {
		t.Errorf("at a roamed public endpoint: %+v, want direct-public with no candidate in use", got)
	}

	// A peer without candidates and without handshake.
	k2 := wgtypes.Key{3}
	p.sync(map[wgtypes.Key][]netip.AddrPort{k: {lan, refl}, k2: nil}, t0)
	if got := p.describe(wg.PeerStatus{PublicKey: k2}); got.Path != PathNone || got.Reason != "no handshake yet; the peer registered no endpoint" {
		t.Errorf("peer without candidates: %+v", got)
	}
}
