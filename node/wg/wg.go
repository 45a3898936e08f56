// Package wg brings up the node's WireGuard interface and applies peer sets
// to it. It uses kernel WireGuard when the module is available and the
// embedded wireguard-go on a TUN device otherwise; both are driven through
// wgctrl. Plan, which computes the change from the current peer set to the
// desired one, is pure and has no OS effects. The wireguard-go device's
// socket can also ask a STUN server for the node's reflexive endpoint
// (Reflector).
//
// Only package node/agent imports it; its tests use Fake.
package wg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// DefaultMTU is the MTU used when Config.MTU is zero.
const DefaultMTU = 1420

// maxNameLen is the longest Linux interface name (IFNAMSIZ - 1).
const maxNameLen = 15

// Config describes the interface Open brings up.
type Config struct {
	Name       string // interface name, at most 15 bytes
	PrivateKey wgtypes.Key
	ListenPort int          // 0 picks a random port
	Address    netip.Prefix // the node's overlay address, e.g. 100.64.0.5/32
	Route      netip.Prefix // route sent through the device, e.g. 100.64.0.0/10; zero for none
	MTU        int          // 0 means DefaultMTU
	// Filter, if set, judges every packet between the TUN device and
	// wireguard-go. Only wireguard-go can hold one: with kernel WireGuard
	// Open fails with ErrFilterNeedsUserspace.
	Filter PacketFilter
}

// Peer is one desired WireGuard peer.
type Peer struct {
	PublicKey           wgtypes.Key
	Endpoint            *net.UDPAddr // may be nil: the peer is reached only once it contacts us
	AllowedIPs          []netip.Prefix
	PersistentKeepalive time.Duration // 0 disables keepalives
}

// PeerStatus is a peer as the device reports it.
type PeerStatus struct {
	PublicKey     wgtypes.Key
	Endpoint      string // "ip:port", or "" when unknown
	AllowedIPs    []netip.Prefix
	LastHandshake time.Time // zero when there has been none
	RxBytes       int64
	TxBytes       int64
}

// Device is the node's WireGuard interface.
type Device interface {
	// Apply makes the device's peer set exactly peers. New peers are added,
	// changed ones (endpoint, allowed IPs, keepalive) are updated in place so
	// their sessions survive, peers not listed are removed, and unchanged
	// peers are not touched. The whole change is one configuration call.
	// Apply is idempotent.
	Apply(peers []Peer) error
	// Peers reports the device's current peers.
	Peers() ([]PeerStatus, error)
	// Name is the interface name.
	Name() string
	// PublicKey is the device's public key.
	PublicKey() wgtypes.Key
	// ListenPort is the UDP port the device listens on.
	ListenPort() int
	// SetAddresses makes the interface's addresses exactly its own
	// Config.Address plus extra (for example the /32 of each workload on
	// the node, so that their processes can bind them): missing ones are
	// added, stale ones removed, and IPv6 link-local addresses the kernel
	// manages are left alone. It is idempotent.
	SetAddresses(extra []netip.Prefix) error
	// Close removes the interface (and, for wireguard-go, its UAPI socket).
	Close() error
}

// Impl names the WireGuard implementation behind a Device.
type Impl string

const (
	Kernel    Impl = "kernel"       // the Linux kernel module, via netlink
	Userspace Impl = "wireguard-go" // embedded wireguard-go on a TUN device
)

// ErrUnsupported is returned by Open on platforms where the package cannot
// create a device.
var ErrUnsupported = errors.New("wg: WireGuard devices are only supported on Linux")

// ErrExists is wrapped by the error Open returns when an interface with the
// configured name already exists.
var ErrExists = errors.New("interface already exists")

// ErrInvalidConfig is wrapped by the errors Open returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid WireGuard config")

// ErrClosed is returned by a Device's methods after Close.
var ErrClosed = errors.New("wg: device is closed")

// ErrInvalidAddress is wrapped by the error SetAddresses returns for an
// address it refuses; the interface is left unchanged.
var ErrInvalidAddress = errors.New("invalid interface address")

// ErrInvalidPeer is wrapped by the error Apply returns for a peer it
// refuses; the device is left unchanged.
var ErrInvalidPeer = errors.New("invalid WireGuard peer")

// checkPeers refuses peers WireGuard cannot hold: a zero key, or the
// device's own key (WireGuard drops such a peer, so every Apply would try
// to add it again).
func checkPeers(peers []Peer, own wgtypes.Key) error {
	for i, p := range peers {
		switch p.PublicKey {
		case wgtypes.Key{}:
			return fmt.Errorf("%w: peer %d has a zero public key", ErrInvalidPeer, i)
		case own:
			return fmt.Errorf("%w: peer %d has the device's own public key %s", ErrInvalidPeer, i, own)
		}
	}
	return nil
}

// Log field names.
const (
	logIface   = "iface"
	logImpl    = "impl"
	logPort    = "listen_port"
	logErr     = "err"
	logPeers   = "peers"
	logAdded   = "added"
	logRemoved = "removed"
)

// check validates cfg and returns it with defaults filled in.
func (cfg Config) check() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case cfg.Name == "":
		return bad("interface name is empty")
	case len(cfg.Name) > maxNameLen:
		return bad("interface name %q is longer than %d bytes", cfg.Name, maxNameLen)
	case cfg.PrivateKey == wgtypes.Key{}:
		return bad("private key is zero: generate one with wgtypes.GeneratePrivateKey")
	case cfg.ListenPort < 0 || cfg.ListenPort > 65535:
		return bad("listen port %d is out of range 0-65535", cfg.ListenPort)
	case !cfg.Address.IsValid():
		return bad("overlay address is not set")
	case cfg.MTU < 0 || (cfg.MTU > 0 && cfg.MTU < 576) || cfg.MTU > 65535:
		return bad("MTU %d is out of range 576-65535", cfg.MTU)
	}
	for _, c := range cfg.Name {
		if c == '/' || c == ':' || c <= ' ' || c > '~' {
			return bad("interface name %q contains %q", cfg.Name, c)
		}
	}
	if cfg.Route.IsValid() && cfg.Route.Addr().Is4() != cfg.Address.Addr().Is4() {
		return bad("route %s and address %s are of different IP families", cfg.Route, cfg.Address)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	cfg.Route = cfg.Route.Masked()
	return cfg, nil
}

// status converts a wgctrl peer into a PeerStatus.
func status(p wgtypes.Peer) PeerStatus {
	s := PeerStatus{
		PublicKey:     p.PublicKey,
		AllowedIPs:    prefixes(p.AllowedIPs),
		LastHandshake: p.LastHandshakeTime,
		RxBytes:       p.ReceiveBytes,
		TxBytes:       p.TransmitBytes,
	}
	if s.LastHandshake.Unix() == 0 && s.LastHandshake.Nanosecond() == 0 {
		s.LastHandshake = time.Time{} // wgctrl reports "never" as the Unix epoch
	}
	if ap, ok := addrPort(p.Endpoint); ok {
		s.Endpoint = ap.String()
	}
	return s
}

// checkAddrs refuses addresses an interface should not hold: invalid ones,
// and IPv4 ones that are not a single host (/32), since a wider prefix
// would add a connected route that competes with Config.Route.
func checkAddrs(extra []netip.Prefix) error {
	for _, p := range extra {
		switch {
		case !p.IsValid():
			return fmt.Errorf("%w: %v is not a valid prefix", ErrInvalidAddress, p)
		case p.Addr().Is4() && p.Bits() != 32:
			return fmt.Errorf("%w: %s is not a /32 host address", ErrInvalidAddress, p)
		case p.Addr().Is6() && p.Bits() != 128:
			return fmt.Errorf("%w: %s is not a /128 host address", ErrInvalidAddress, p)
		}
	}
	return nil
}

// PlanAddrs computes what SetAddresses must change: the addresses of want
// (the primary address plus extra) missing from current, and those of
// current that are in neither and are not IPv6 link-local (the kernel's).
// Both results are sorted; duplicates in the input are ignored.
func PlanAddrs(current []netip.Prefix, primary netip.Prefix, extra []netip.Prefix) (add, del []netip.Prefix) {
	want := map[netip.Prefix]bool{primary: true}
	for _, p := range extra {
		want[p] = true
	}
	have := map[netip.Prefix]bool{}
	for _, p := range current {
		have[p] = true
	}
	for p := range want {
		if !have[p] {
			add = append(add, p)
		}
	}
	for p := range have {
		if !want[p] && !p.Addr().IsLinkLocalUnicast() {
			del = append(del, p)
		}
	}
	sortPrefixes(add)
	sortPrefixes(del)
	return add, del
}

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
}
