package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard holds one endpoint per peer, while a peer may register
// several candidates: its local addresses first, then its reflexive
// endpoint (the address its NAT gives it, docs/nat.md). The agent picks
// one at a time:
//
//   - A peer with a fresh handshake (within sessionFresh) keeps the
//     endpoint WireGuard has: the agent gives it none, so WireGuard's
//     roaming (it answers where the peer's packets come from) stays in
//     charge of a path that works.
//   - Otherwise WireGuard is given the current candidate; after
//     pathDwell without a handshake the agent moves to the next one (in
//     the peer's order, wrapping around) and re-adds the peer, so that
//     WireGuard starts a handshake at the new candidate at once (it
//     otherwise retries only every 5 s, at whatever endpoint it holds
//     then). Re-adding costs nothing: without a handshake there is no
//     session to lose. After pathRounds rounds through the candidates
//     without a handshake it moves on only every pathSlowDwell, so an
//     offline peer costs a handshake attempt per candidate at most every
//     25 s.
//
// Both ends of a pair do this, so both NATs see outgoing packets to the
// other's reflexive endpoint: that is the hole punching.
const (
	pathDwell     = 2 * time.Second
	pathSlowDwell = 25 * time.Second
	pathRounds    = 3
	pathTick      = time.Second
	// sessionFresh is how long after a handshake a session counts as
	// working: WireGuard's REJECT_AFTER_TIME, which a peer with a
	// keepalive renews every REKEY_AFTER_TIME (120 s).
	sessionFresh = 180 * time.Second
)

// candidates is one peer's endpoint state.
type candidates struct {
	eps   []netip.AddrPort
	idx   int       // the one WireGuard is given
	since time.Time // when idx was chosen
	moves int       // moves since the last handshake
	fresh bool      // a handshake within sessionFresh, as of the last step
	// tried are the candidates WireGuard was given since the list
	// last changed.
	tried map[netip.AddrPort]bool
}

// try makes idx the current candidate and marks it tried.
func (c *candidates) try(idx int, now time.Time) {
	c.idx, c.since = idx, now
	if len(c.eps) > 0 {
		c.tried[c.eps[idx]] = true
	}
}

// paths holds the candidates of every peer. It is pure: the agent feeds
// it views and device status and applies what it says.
type paths struct {
	byKey map[wgtypes.Key]*candidates
}

func newPaths() *paths { return &paths{byKey: map[wgtypes.Key]*candidates{}} }

// sync makes the candidates those of want (a peer's endpoints, in order,
// deduplicated). A peer whose list changed starts on its first candidate,
// unless the one it was on is still listed; peers not in want are
// forgotten.
func (p *paths) sync(want map[wgtypes.Key][]netip.AddrPort, now time.Time) {
	for k := range p.byKey {
		if _, ok := want[k]; !ok {
			delete(p.byKey, k)
		}
	}
	for k, eps := range want {
		eps = dedupe(eps)
		c, ok := p.byKey[k]
		if !ok {
			c = &candidates{eps: eps, tried: map[netip.AddrPort]bool{}}
			c.try(0, now)
			p.byKey[k] = c
			continue
		}
		if slices.Equal(c.eps, eps) {
			continue
		}
		var cur netip.AddrPort
		if c.idx < len(c.eps) {
			cur = c.eps[c.idx]
		}
		c.eps = eps
		c.tried = map[netip.AddrPort]bool{}
		if i := slices.Index(eps, cur); i >= 0 {
			c.idx = i
			c.tried[cur] = true
			continue
		}
		c.moves = 0
		c.try(0, now)
	}
}

// endpoint is what WireGuard is given for key: nil for a peer with a
// fresh session (WireGuard keeps its own) or without candidates, else
// the current candidate.
func (p *paths) endpoint(key wgtypes.Key) *net.UDPAddr {
	c, ok := p.byKey[key]
	if !ok || c.fresh || len(c.eps) == 0 {
		return nil
	}
	return net.UDPAddrFromAddrPort(c.eps[c.idx])
}

// step reads the device's peers at now and moves each peer without a
// fresh session and with more than one candidate to its next candidate
// once it has dwelt long enough. It returns the peers moved: the agent
// re-adds them with their new endpoint.
func (p *paths) step(status []wg.PeerStatus, now time.Time) []wgtypes.Key {
	hs := make(map[wgtypes.Key]time.Time, len(status))
	for _, s := range status {
		hs[s.PublicKey] = s.LastHandshake
	}
	var moved []wgtypes.Key
	for k, c := range p.byKey {
		last := hs[k]
		c.fresh = !last.IsZero() && now.Sub(last) < sessionFresh
		if c.fresh {
			c.moves = 0
			c.since = now
			continue
		}
		if len(c.eps) < 2 {
			continue
		}
		dwell := pathDwell
		if c.moves >= pathRounds*len(c.eps) {
			dwell = pathSlowDwell
		}
		if now.Sub(c.since) < dwell {
			continue
		}
		c.try((c.idx+1)%len(c.eps), now)
		c.moves++
		moved = append(moved, k)
	}
	slices.SortFunc(moved, func(a, b wgtypes.Key) int { return slices.Compare(a[:], b[:]) })
	return moved
}

// The paths a peer is reached on (PeerInfo.Path). The rule is by address:
// an endpoint in a private or link-local range (10/8, 172.16/12,
// 192.168/16, 169.254/16, fc00::/7, fe80::/10) is a LAN path, any other
// one a public path. It is the endpoint WireGuard holds, which after a
// handshake is where the peer's packets come from (its roaming), so the
// path is true even where the endpoint is none of the peer's candidates.
const (
	PathDirectLAN    = "direct-lan"
	PathDirectPublic = "direct-public"
	PathNone         = "none" // never a handshake
)

// pathOf names the path to a peer with status st: the address rule for
// one with a handshake, PathNone for one without.
func pathOf(st wg.PeerStatus) string {
	if st.LastHandshake.IsZero() {
		return PathNone
	}
	ap, err := netip.ParseAddrPort(st.Endpoint)
	if err != nil {
		return PathNone
	}
	if a := ap.Addr().Unmap(); a.IsPrivate() || a.IsLinkLocalUnicast() {
		return PathDirectLAN
	}
	return PathDirectPublic
}

// pathInfo is the path part of a PeerInfo.
type pathInfo struct {
	Path       string
	Candidates []Candidate
	Reason     string
}

// describe tells the path to the peer with status st, its candidates
// (which one WireGuard holds, which were tried) and, without a handshake,
// why in words.
func (p *paths) describe(st wg.PeerStatus) pathInfo {
	out := pathInfo{Path: pathOf(st)}
	c := p.byKey[st.PublicKey]
	var tried []string
	if c != nil {
		for _, ep := range c.eps {
			cd := Candidate{Endpoint: ep.String(), InUse: ep.String() == st.Endpoint, Tried: c.tried[ep]}
			if cd.Tried {
				tried = append(tried, cd.Endpoint)
			}
			out.Candidates = append(out.Candidates, cd)
		}
	}
	if out.Path != PathNone {
		return out
	}
	on := fmt.Sprintf("any of %d candidates", len(out.Candidates))
	if len(out.Candidates) == 1 {
		on = "its one candidate"
	}
	switch {
	case len(out.Candidates) == 0:
		out.Reason = "no handshake yet; the peer registered no endpoint"
	case len(tried) == 0:
		out.Reason = "no handshake yet on " + on + "; none tried yet"
	default:
		out.Reason = "no handshake yet on " + on + "; tried " + strings.Join(tried, ", ") + "; a relay is not built yet"
	}
	return out
}

// dedupe returns eps without invalid entries and repeats, in order.
func dedupe(eps []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(eps))
	for _, ep := range eps {
		if ep.IsValid() && !slices.Contains(out, ep) {
			out = append(out, ep)
		}
	}
	return out
}

// pickEndpoints gives each of peers (v's, about to be applied) the
// endpoint the path state picks among v's candidates. It must hold
// applyMu.
func (a *agent) pickEndpoints(v *view.View, peers []wg.Peer) {
	want := make(map[wgtypes.Key][]netip.AddrPort, len(v.Peers))
	for _, p := range v.Peers {
		if k, err := wgtypes.ParseKey(p.PublicKey); err == nil {
			want[k] = p.Endpoints
		}
	}
	a.paths.sync(want, a.d.clock.Now())
	for i := range peers {
		peers[i].Endpoint = a.paths.endpoint(peers[i].PublicKey)
	}
}

// pathLoop moves peers without a handshake to their next candidate
// endpoint (see paths) every pathTick until ctx ends.
func (a *agent) pathLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.d.clock.After(pathTick):
		}
		a.stepPaths()
	}
}

// stepPaths is one step of pathLoop: the peers it moves are removed and
// added again with their new endpoint, so that WireGuard starts a
// handshake there at once.
func (a *agent) stepPaths() {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	if a.applied == nil {
		return
	}
	st, err := a.dev.Peers()
	if err != nil {
		a.log.Debug("reading peers for their paths", logErr, err)
		return
	}
	moved := a.paths.step(st, a.d.clock.Now())
	if len(moved) == 0 {
		return
	}
	without := make([]wg.Peer, 0, len(a.applied))
	next := make([]wg.Peer, 0, len(a.applied))
	for _, p := range a.applied {
		if slices.Contains(moved, p.PublicKey) {
			p.Endpoint = a.paths.endpoint(p.PublicKey)
			a.log.Debug("trying the next endpoint of a peer", "peer", p.PublicKey.String(), "endpoint", p.Endpoint.String())
		} else {
			without = append(without, p)
		}
		next = append(next, p)
	}
	if err := a.dev.Apply(without); err != nil {
		a.log.Warn("removing peers to try their next endpoint", logErr, err)
		return
	}
	if err := a.dev.Apply(next); err != nil {
		a.log.Warn("adding peers back with their next endpoint", logErr, err)
		return
	}
	a.applied = next
}
