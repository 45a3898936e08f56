package wg

import (
	"bytes"
	"math/rand/v2"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// When the coordinator opens a flow, both ends get the new peer at about
// the same moment, and a peer with a persistent keepalive starts a
// handshake the moment it is added. Two initiations that cross each
// overwrite the other end's handshake state, so both responses are
// refused, and WireGuard tries again only after REKEY_TIMEOUT (5 s) while
// every packet to the peer waits (measured: BenchmarkFirstConnect).
//
// So only one end of a new pair starts at once: the end whose public key is
// the smaller. The other end adds the peer with its keepalive held at zero
// (it still answers, and its own traffic still starts a handshake) and sets
// the keepalive a moment later; if the first initiation was lost because
// it arrived before this end held the peer, that starts the handshake
// again, when both ends hold each other.

// holdDelay and holdJitter set when held keepalives are released: holdDelay
// plus up to holdJitter after the Apply that added the peers.
const (
	holdDelay  = 500 * time.Millisecond
	holdJitter = 500 * time.Millisecond
)

func releaseAfter() time.Duration { return holdDelay + rand.N(holdJitter) }

// holdKeepalives changes cfg so that the peers it adds (not in current)
// whose key is greater than own start with no keepalive, and returns the
// keepalives held back.
func holdKeepalives(current []wgtypes.Peer, cfg *wgtypes.Config, own wgtypes.Key) map[wgtypes.Key]time.Duration {
	have := make(map[wgtypes.Key]bool, len(current))
	for _, p := range current {
		have[p.PublicKey] = true
	}
	var held map[wgtypes.Key]time.Duration
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		if p.Remove || have[p.PublicKey] || p.PersistentKeepaliveInterval == nil || *p.PersistentKeepaliveInterval == 0 {
			continue
		}
		if bytes.Compare(own[:], p.PublicKey[:]) < 0 {
			continue // this end starts
		}
		if held == nil {
			held = map[wgtypes.Key]time.Duration{}
		}
		held[p.PublicKey] = *p.PersistentKeepaliveInterval
		zero := time.Duration(0)
		p.PersistentKeepaliveInterval = &zero
	}
	return held
}

// releaseKeepalives returns the configuration that sets the held
// keepalives of the peers the device still holds with no keepalive (an
// Apply in between may have set or removed them).
func releaseKeepalives(current []wgtypes.Peer, held map[wgtypes.Key]time.Duration) (wgtypes.Config, bool) {
	var cfg wgtypes.Config
	for _, p := range current {
		ka, ok := held[p.PublicKey]
		if !ok || p.PersistentKeepaliveInterval != 0 {
			continue
		}
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: p.PublicKey, UpdateOnly: true, PersistentKeepaliveInterval: &ka})
	}
	return cfg, len(cfg.Peers) > 0
}
