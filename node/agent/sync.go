package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchnet/latch/node/wg"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// PersistentKeepalive is set on every peer so that NAT mappings stay open.
const PersistentKeepalive = 25 * time.Second

// errNeedFull ends a stream whose delta did not apply; the agent
// reconnects asking for a full view.
var errNeedFull = errors.New("the delta does not apply to the view held: asking for a full view")

// errSVIDRotated ends the stream of a SPIRE node before the SVID it was
// opened with expires; the agent reconnects with the current one.
var errSVIDRotated = errors.New("reconnecting with the SVID SPIRE rotated in")

// errSVIDRenewed ends the view stream after a renewal: the coordinator
// accepts the SVID it was opened with only for a short grace
// (state.RenewGrace), so the agent reconnects with the new one.
var errSVIDRenewed = errors.New("reconnecting with the renewed SVID")

// syncLoop registers and streams views until ctx ends, reconnecting with
// backoff. The last view stays applied meanwhile.
func (a *agent) syncLoop(ctx context.Context) {
	bo := newBackoff(a.d.backoffMin, a.d.backoffMax)
	for {
		err := a.syncOnce(ctx, bo)
		a.mu.Lock()
		a.connected = false
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		wait := bo.next()
		a.noteError(err, wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// syncOnce registers, then reads one stream until it fails. It resets bo
// once the stream is open.
func (a *agent) syncOnce(ctx context.Context, bo *backoff) error {
	var exp time.Time // of the SPIRE SVID the stream is opened with
	if a.spire != nil {
		// A new handshake, so that the coordinator sees the SVID SPIRE
		// holds now.
		_, _, exp = a.who()
		a.api.closeIdle()
	}
	if err := a.register(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	var have uint64
	if a.view != nil && !a.needFull {
		have = a.view.Version
	}
	a.mu.Unlock()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, err := a.api.stream(sctx, have)
	if err != nil {
		return fmt.Errorf("opening the view stream: %w", err)
	}
	defer body.Close()
	a.mu.Lock()
	a.connected = true
	a.lastErr = ""
	a.needFull = false
	a.mu.Unlock()
	bo.reset()
	a.log.Info("view stream open", logHave, have)

	var silent, rotated, renewed atomic.Bool
	watchdog := time.AfterFunc(a.d.silence, func() { silent.Store(true); cancel() })
	defer watchdog.Stop()
	a.mu.Lock()
	a.restream = func() { renewed.Store(true); cancel() }
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.restream = nil
		a.mu.Unlock()
	}()
	if a.spire != nil {
		// The stream was authorized with the SVID of its handshake; before
		// that one expires, reconnect with the one SPIRE rotated in.
		left := time.Until(exp)
		rot := time.AfterFunc(left-min(10*time.Second, left/10), func() { rotated.Store(true); cancel() })
		defer rot.Stop()
	}
	dec := json.NewDecoder(body)
	for {
		var m wire.StreamMessage
		if err := dec.Decode(&m); err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case rotated.Load():
				return errSVIDRotated
			case renewed.Load():
				return errSVIDRenewed
			case silent.Load():
				return fmt.Errorf("view stream: no message from the coordinator for %s", a.d.silence)
			case errors.Is(err, io.EOF):
				return errors.New("view stream: the coordinator closed it")
			}
			return fmt.Errorf("view stream: %w", err)
		}
		watchdog.Reset(a.d.silence)
		if err := a.handle(&m); err != nil {
			return err
		}
	}
}

// handle applies one stream message.
func (a *agent) handle(m *wire.StreamMessage) error {
	switch {
	case m.End != nil:
		return fmt.Errorf("view stream: the coordinator ended it: %w", &CoordinatorError{Code: m.End.Code, Message: m.End.Error})
	case m.Full != nil:
		a.setView(m.Full, true)
	case m.Delta != nil:
		a.mu.Lock()
		cur := a.view
		a.mu.Unlock()
		if cur == nil {
			a.mu.Lock()
			a.needFull = true
			a.mu.Unlock()
			return errNeedFull
		}
		nv, err := m.Delta.Apply(cur)
		if err != nil {
			a.mu.Lock()
			a.needFull = true
			a.mu.Unlock()
			a.log.Warn("view delta does not apply", logErr, err)
			return errNeedFull
		}
		a.setView(nv, true)
	default: // keepalive
		a.mu.Lock()
		retry := a.applyFailed || a.viewErr != "" || a.routeErr != ""
		cur := a.view
		a.mu.Unlock()
		if retry && cur != nil {
			a.setView(cur, false)
		}
	}
	return nil
}

// setView makes v the node's view, rules and peers as one step: it loads
// v's rules into the enforcer, then gives WireGuard v's peers and, if
// persist and its rules loaded, saves v as view.json. Rules first, so that a narrower view
// takes effect before any new peer can send. When the enforcer cannot
// load v (too large for its maps, say) it keeps the rules of the last
// view it loaded, and WireGuard gets no peer that view lacked: only v's
// peers that it had, each with the AllowedIPs both views give (failing
// closed). The failure shows in status, metrics and the log; the next
// view, or the next keepalive, tries again.
func (a *agent) setView(v *view.View, persist bool) {
	// One Apply at a time, so that the path loop never applies the peers
	// of an older view.
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	ruleErr := a.applyRules(v)
	a.mu.Lock()
	if ruleErr == nil {
		a.enforced = v
	}
	enforced, lastFailed := a.enforced, a.viewErrVersion
	a.mu.Unlock()
	peers := a.peersOf(v)
	if ruleErr != nil {
		a.viewFailures[stageRules].Add(1)
		var held []wg.Peer
		if enforced != nil {
			held = a.peersOf(enforced)
		}
		peers = failClosed(peers, held)
		level := slog.LevelError
		if lastFailed == v.Version {
			level = slog.LevelDebug // a retry of the same view: said already
		}
		a.log.Log(context.Background(), level, "the enforcer cannot load the view: its rules and new peers wait, the previous rules stay in force",
			logVersion, v.Version, logEnforced, versionOf(enforced), logErr, ruleErr)
	}
	a.pickEndpoints(v, peers)
	err := a.dev.Apply(peers)
	if err != nil {
		a.viewFailures[stageWireGuard].Add(1)
	} else {
		a.applied = peers
	}
	routeErr := ""
	if err == nil && a.rt != nil {
		// The routes of the peers WireGuard now holds; after them, so
		// that no route points at a device without the peer.
		if rerr := a.syncRoutes(v, peers); rerr != nil {
			routeErr = rerr.Error()
		}
	}
	a.mu.Lock()
	a.view = v
	a.applyFailed = err != nil
	if err == nil {
		if routeErr != "" && a.routeErr != routeErr {
			a.log.Error("applying the view's site routes; will retry", logVersion, v.Version, logErr, routeErr)
		}
		a.routeErr = routeErr
	}
	if a.viewErr != "" && strings.HasPrefix(a.lastErr, "loading view ") {
		a.lastErr = ""
	}
	a.viewErr, a.viewErrVersion = "", 0
	if ruleErr != nil {
		a.viewErr, a.viewErrVersion = ruleErr.Error(), v.Version
		a.lastErr = "loading view " + strconv.FormatUint(v.Version, 10) + ": " + ruleErr.Error()
	}
	if err != nil {
		a.lastErr = "applying view: " + err.Error()
	}
	a.mu.Unlock()
	switch {
	case err != nil:
		a.log.Error("applying the view to WireGuard; will retry", logVersion, v.Version, logErr, err)
	case ruleErr == nil:
		a.log.Info("view applied", logVersion, v.Version, logPeers, len(peers))
	}
	// Only a view in force is saved: a restarted agent enforces what it
	// enforced, and a view its enforcer cannot load must not keep it from
	// starting.
	if persist && ruleErr == nil {
		if err := a.dir.writeJSON(ViewFile, v); err != nil {
			a.log.Warn("saving the view", logErr, err)
		}
	}
}

// versionOf is v's version, 0 for nil.
func versionOf(v *view.View) uint64 {
	if v == nil {
		return 0
	}
	return v.Version
}

// failClosed returns the peers of next that held (the peers of the view
// whose rules are in force) also has, each with only the AllowedIPs both
// give; a peer left with none is dropped. Endpoints are next's.
func failClosed(next, held []wg.Peer) []wg.Peer {
	byKey := make(map[wgtypes.Key]wg.Peer, len(held))
	for _, p := range held {
		byKey[p.PublicKey] = p
	}
	var out []wg.Peer
	for _, p := range next {
		h, ok := byKey[p.PublicKey]
		if !ok {
			continue
		}
		p.AllowedIPs = intersectPrefixes(p.AllowedIPs, h.AllowedIPs)
		if len(p.AllowedIPs) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// intersectPrefixes returns the addresses in both a and b, as prefixes:
// two prefixes either nest (the intersection is the longer) or are
// disjoint.
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range a {
		x = x.Masked()
		for _, y := range b {
			y = y.Masked()
			var in netip.Prefix
			switch {
			case x.Bits() >= y.Bits() && y.Contains(x.Addr()):
				in = x
			case y.Bits() > x.Bits() && x.Contains(y.Addr()):
				in = y
			default:
				continue
			}
			if !slices.Contains(out, in) {
				out = append(out, in)
			}
		}
	}
	return out
}

// peersOf converts the view's peers to WireGuard peers, skipping (and
// logging) those WireGuard cannot hold.
func (a *agent) peersOf(v *view.View) []wg.Peer {
	own := a.dev.PublicKey()
	out := make([]wg.Peer, 0, len(v.Peers))
	for _, p := range v.Peers {
		if p.PublicKey == "" {
			// Not registered yet: nothing WireGuard can use.
			a.log.Debug("peer has no WireGuard key yet", logNode, p.Node)
			continue
		}
		wp, err := toWGPeer(p)
		if err == nil && wp.PublicKey == own {
			err = errors.New("it has this node's own public key")
		}
		if err != nil {
			a.log.Warn("skipping peer", logNode, p.Node, logErr, err)
			continue
		}
		out = append(out, wp)
	}
	return out
}

// toWGPeer converts one view peer: the base64 key, the first endpoint (the
// agent then picks among them: pickEndpoints), the allowed IPs and a 25 s
// keepalive.
func toWGPeer(p view.Peer) (wg.Peer, error) {
	key, err := wgtypes.ParseKey(p.PublicKey)
	if err != nil {
		return wg.Peer{}, fmt.Errorf("public key: %w", err)
	}
	if key == (wgtypes.Key{}) {
		return wg.Peer{}, errors.New("zero public key")
	}
	wp := wg.Peer{PublicKey: key, PersistentKeepalive: PersistentKeepalive}
	if len(p.Endpoints) > 0 && p.Endpoints[0].IsValid() {
		wp.Endpoint = net.UDPAddrFromAddrPort(p.Endpoints[0])
	}
	for _, ip := range p.AllowedIPs {
		wp.AllowedIPs = append(wp.AllowedIPs, ip.Netip())
	}
	return wp, nil
}

// syncRoutes makes the kernel routes through the device those of the
// site prefixes of peers (the peers WireGuard holds), and the SNAT rules
// those of v's approved routes advertised with SNAT.
func (a *agent) syncRoutes(v *view.View, peers []wg.Peer) error {
	var allowed []netip.Prefix
	for _, p := range peers {
		allowed = append(allowed, p.AllowedIPs...)
	}
	approved := make([]netip.Prefix, 0, len(v.Routes))
	for _, r := range v.Routes {
		approved = append(approved, r.Prefix.Netip())
	}
	return a.rt.Sync(allowed, approved)
}
