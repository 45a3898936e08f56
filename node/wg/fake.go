package wg

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

var _ Device = (*Fake)(nil)

// Fake is an in-memory Device for the agent's tests. It keeps the peer set
// the last successful Apply gave it and records every Apply call.
type Fake struct {
	name string
	pub  wgtypes.Key
	port int

	mu      sync.Mutex
	peers   []Peer         // current peer set, in Apply order; guarded by mu
	applies [][]Peer       // every Apply call's argument; guarded by mu
	err     error          // returned by the next Apply calls; guarded by mu
	closed  bool           // guarded by mu
	addrs   []netip.Prefix // extra addresses the last SetAddresses gave; guarded by mu
	addrErr error          // returned by the next SetAddresses calls; guarded by mu
	// reflexive and reflexiveErr are what Reflexive returns; asked are
	// the servers it was asked of. Guarded by mu.
	reflexive    netip.AddrPort
	reflexiveErr error
	asked        []netip.AddrPort
	handshakes   map[wgtypes.Key]time.Time // guarded by mu
}

var _ Reflector = (*Fake)(nil)

// SetReflexive makes the following Reflexive calls return ap and err.
func (f *Fake) SetReflexive(ap netip.AddrPort, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reflexive, f.reflexiveErr = ap, err
}

// Reflexive implements Reflector with what SetReflexive set (at first
// ErrNoReflexive), and records server.
func (f *Fake) Reflexive(_ context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, server)
	if f.reflexiveErr == nil && !f.reflexive.IsValid() {
		return netip.AddrPort{}, ErrNoReflexive
	}
	return f.reflexive, f.reflexiveErr
}

// Asked returns the STUN servers Reflexive was asked of, oldest first.
func (f *Fake) Asked() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// SetHandshake makes Peers report t as the last handshake with key.
func (f *Fake) SetHandshake(key wgtypes.Key, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.handshakes == nil {
		f.handshakes = map[wgtypes.Key]time.Time{}
	}
	f.handshakes[key] = t
}

// NewFake returns a Fake with the given name, public key and listen port
// and no peers.
func NewFake(name string, pub wgtypes.Key, port int) *Fake {
	return &Fake{name: name, pub: pub, port: port}
}

// FailApply makes the following Apply calls return err (nil to stop)
// without changing the peer set; the calls are still recorded.
func (f *Fake) FailApply(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Apply records peers and, unless FailApply set an error or a peer is
// invalid (as the real device checks), makes them the peer set.
func (f *Fake) Apply(peers []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	f.applies = append(f.applies, clonePeers(peers))
	if f.err != nil {
		return f.err
	}
	if err := checkPeers(peers, f.pub); err != nil {
		return err
	}
	f.peers = clonePeers(peers)
	return nil
}

// SetAddresses records extra, sorted and without duplicates, as the
// interface's extra addresses unless FailSetAddresses set an error or an
// address is invalid (as the real device checks).
func (f *Fake) SetAddresses(extra []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if f.addrErr != nil {
		return f.addrErr
	}
	if err := checkAddrs(extra); err != nil {
		return err
	}
	out := slices.Clone(extra)
	sortPrefixes(out)
	f.addrs = slices.Compact(out)
	return nil
}

// FailSetAddresses makes the following SetAddresses calls return err (nil
// to stop) without changing the addresses.
func (f *Fake) FailSetAddresses(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrErr = err
}

// Addresses returns a copy of the extra addresses the interface holds.
func (f *Fake) Addresses() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.addrs)
}

// Applied returns a copy of every Apply call's argument, oldest first.
func (f *Fake) Applied() [][]Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]Peer, len(f.applies))
	for i, ps := range f.applies {
		out[i] = clonePeers(ps)
	}
	return out
}

// Current returns a copy of the current peer set.
func (f *Fake) Current() []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clonePeers(f.peers)
}

// Peers reports the current peer set with the handshakes SetHandshake
// set and no traffic.
func (f *Fake) Peers() ([]PeerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	out := make([]PeerStatus, 0, len(f.peers))
	for _, p := range f.peers {
		s := PeerStatus{PublicKey: p.PublicKey, AllowedIPs: normalize(p.AllowedIPs), LastHandshake: f.handshakes[p.PublicKey]}
		if ap, ok := addrPort(p.Endpoint); ok {
			s.Endpoint = ap.String()
		}
		out = append(out, s)
	}
	return out, nil
}

func (f *Fake) Name() string           { return f.name }
func (f *Fake) PublicKey() wgtypes.Key { return f.pub }
func (f *Fake) ListenPort() int        { return f.port }

// Close marks the Fake closed; later calls to Apply and Peers fail.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func clonePeers(ps []Peer) []Peer {
	out := make([]Peer, len(ps))
	for i, p := range ps {
		p.Endpoint = cloneUDPAddr(p.Endpoint)
		p.AllowedIPs = slices.Clone(p.AllowedIPs)
		out[i] = p
	}
	return out
}
