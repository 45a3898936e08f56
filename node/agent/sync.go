package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
		retry := a.applyFailed
		cur := a.view
		a.mu.Unlock()
		if retry && cur != nil {
			a.setView(cur, false)
		}
	}
	return nil
}

// setView makes v the node's view: it gives v to the enforcer, applies v's
// peers to the device and, if persist, saves v as view.json.
func (a *agent) setView(v *view.View, persist bool) {
	// The enforcer first: a narrower view takes effect before any new peer
	// can send.
	a.applyFilter(v)
	peers := a.peersOf(v)
	err := a.dev.Apply(peers)
	a.mu.Lock()
	a.view = v
	a.applyFailed = err != nil
	if err != nil {
		a.lastErr = "applying view: " + err.Error()
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("applying the view to WireGuard; will retry", logVersion, v.Version, logErr, err)
	} else {
		a.log.Info("view applied", logVersion, v.Version, logPeers, len(peers))
	}
	if persist {
		if err := a.dir.writeJSON(ViewFile, v); err != nil {
			a.log.Warn("saving the view", logErr, err)
		}
	}
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

// toWGPeer converts one view peer: the base64 key, the first endpoint, the
// allowed IPs and a 25 s keepalive.
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
