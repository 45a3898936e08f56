package wg

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestHoldKeepalives(t *testing.T) {
	own := key(5)
	ka := 25 * time.Second
	zero := time.Duration(0)
	cfg := wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: key(2), PersistentKeepaliveInterval: &ka},                   // new, smaller key: held
		{PublicKey: key(9), PersistentKeepaliveInterval: &ka},                   // new, greater key: this end starts
		{PublicKey: key(3), UpdateOnly: true, PersistentKeepaliveInterval: &ka}, // already held: untouched
		{PublicKey: key(4), Remove: true},
		{PublicKey: key(1), PersistentKeepaliveInterval: &zero}, // no keepalive wanted
	}}
	current := []wgtypes.Peer{{PublicKey: key(3)}, {PublicKey: key(4)}}
	held := holdKeepalives(current, &cfg, own)
	if len(held) != 1 || held[key(2)] != ka {
		t.Fatalf("held = %v, want only key 2 with %v", held, ka)
	}
	if got := *cfg.Peers[0].PersistentKeepaliveInterval; got != 0 {
		t.Errorf("held peer added with keepalive %v, want 0", got)
	}
	for _, i := range []int{1, 2} {
		if got := *cfg.Peers[i].PersistentKeepaliveInterval; got != ka {
			t.Errorf("peer %d keepalive %v, want %v", i, got, ka)
		}
	}
	if ka != 25*time.Second {
		t.Error("holdKeepalives wrote through the caller's keepalive pointer")
	}

	dev := []wgtypes.Peer{
		{PublicKey: key(2)}, // still held
		{PublicKey: key(7), PersistentKeepaliveInterval: 0},
	}
	rel, ok := releaseKeepalives(dev, map[wgtypes.Key]time.Duration{key(2): ka, key(8): ka})
	if !ok || len(rel.Peers) != 1 || rel.Peers[0].PublicKey != key(2) || !rel.Peers[0].UpdateOnly ||
		*rel.Peers[0].PersistentKeepaliveInterval != ka {
		t.Errorf("release = %+v, want key 2 updated to %v", rel, ka)
	}
	// Set meanwhile by an Apply, or gone: nothing to release.
	if _, ok := releaseKeepalives([]wgtypes.Peer{{PublicKey: key(2), PersistentKeepaliveInterval: ka}}, held); ok {
		t.Error("released a keepalive the device already has")
	}
}

func TestReleaseAfter(t *testing.T) {
	for range 100 {
		if d := releaseAfter(); d < holdDelay || d >= holdDelay+holdJitter {
			t.Fatalf("releaseAfter() = %v, want in [%v, %v)", d, holdDelay, holdDelay+holdJitter)
		}
	}
}
