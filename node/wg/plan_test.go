package wg

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(b byte) wgtypes.Key {
	var k wgtypes.Key
	k[0] = b
	return k
}

func udp(s string) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func nets(ss ...string) []net.IPNet {
	out := make([]net.IPNet, len(ss))
	for i, s := range ss {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			panic(err)
		}
		out[i] = *n
	}
	return out
}

func dur(d time.Duration) *time.Duration { return &d }

// cur is a peer as wgctrl reports it.
func cur(k byte, ep string, ka time.Duration, ips ...string) wgtypes.Peer {
	p := wgtypes.Peer{PublicKey: key(k), PersistentKeepaliveInterval: ka, AllowedIPs: nets(ips...)}
	if ep != "" {
		p.Endpoint = udp(ep)
	}
	return p
}

func want(k byte, ep string, ka time.Duration, ips ...string) Peer {
	p := Peer{PublicKey: key(k), PersistentKeepalive: ka, AllowedIPs: pfx(ips...)}
	if ep != "" {
		p.Endpoint = udp(ep)
	}
	return p
}

func TestPlan(t *testing.T) {
	const ka = 25 * time.Second
	tests := []struct {
		name    string
		current []wgtypes.Peer
		desired []Peer
		want    []wgtypes.PeerConfig
	}{
		{
			name: "empty to empty",
		},
		{
			name:    "add",
			desired: []Peer{want(1, "198.18.0.2:51820", ka, "100.64.0.2/32")},
			want: []wgtypes.PeerConfig{{
				PublicKey:                   key(1),
				Endpoint:                    udp("198.18.0.2:51820"),
				PersistentKeepaliveInterval: dur(ka),
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  nets("100.64.0.2/32"),
			}},
		},
		{
			name:    "add without endpoint",
			desired: []Peer{want(1, "", 0, "100.64.0.2/32", "198.19.1.0/24")},
			want: []wgtypes.PeerConfig{{
				PublicKey:                   key(1),
				PersistentKeepaliveInterval: dur(0),
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  nets("100.64.0.2/32", "198.19.1.0/24"),
			}},
		},
		{
			name:    "remove",
			current: []wgtypes.Peer{cur(1, "198.18.0.2:51820", 0, "100.64.0.2/32")},
			want:    []wgtypes.PeerConfig{{PublicKey: key(1), Remove: true}},
		},
		{
			name:    "unchanged gets no entry",
			current: []wgtypes.Peer{cur(1, "198.18.0.2:51820", ka, "100.64.0.2/32", "100.64.0.3/32")},
			desired: []Peer{want(1, "198.18.0.2:51820", ka, "100.64.0.3/32", "100.64.0.2/32")},
		},
		{
			name:    "nil endpoint keeps the learned one",
			current: []wgtypes.Peer{cur(1, "198.18.0.9:4000", 0, "100.64.0.2/32")},
			desired: []Peer{want(1, "", 0, "100.64.0.2/32")},
		},
		{
			name:    "endpoint change is an update, allowed IPs untouched",
			current: []wgtypes.Peer{cur(1, "198.18.0.2:51820", 0, "100.64.0.2/32")},
			desired: []Peer{want(1, "198.18.0.3:51820", 0, "100.64.0.2/32")},
			want: []wgtypes.PeerConfig{{
				PublicKey:  key(1),
				UpdateOnly: true,
				Endpoint:   udp("198.18.0.3:51820"),
			}},
		},
		{
			name:    "endpoint and allowed IPs change",
			current: []wgtypes.Peer{cur(1, "198.18.0.2:51820", 0, "100.64.0.2/32")},
			desired: []Peer{want(1, "198.18.0.2:51821", 0, "100.64.0.2/32", "100.64.0.7/32")},
			want: []wgtypes.PeerConfig{{
				PublicKey:         key(1),
				UpdateOnly:        true,
				Endpoint:          udp("198.18.0.2:51821"),
				ReplaceAllowedIPs: true,
				AllowedIPs:        nets("100.64.0.2/32", "100.64.0.7/32"),
			}},
		},
		{
			name:    "allowed IPs narrowed",
			current: []wgtypes.Peer{cur(1, "198.18.0.2:51820", 0, "100.64.0.2/32", "100.64.0.7/32")},
			desired: []Peer{want(1, "198.18.0.2:51820", 0, "100.64.0.7/32")},
			want: []wgtypes.PeerConfig{{
				PublicKey:         key(1),
				UpdateOnly:        true,
				ReplaceAllowedIPs: true,
				AllowedIPs:        nets("100.64.0.7/32"),
			}},
		},
		{
			name:    "allowed IPs emptied",
			current: []wgtypes.Peer{cur(1, "", 0, "100.64.0.2/32")},
			desired: []Peer{want(1, "", 0)},
			want: []wgtypes.PeerConfig{{
				PublicKey:         key(1),
				UpdateOnly:        true,
				ReplaceAllowedIPs: true,
				AllowedIPs:        []net.IPNet{},
			}},
		},
		{
			name:    "unmasked and duplicate desired prefixes compare equal",
			current: []wgtypes.Peer{cur(1, "", 0, "198.19.1.0/24")},
			desired: []Peer{want(1, "", 0, "198.19.1.7/24", "198.19.1.0/24")},
		},
		{
			name:    "keepalive change",
			current: []wgtypes.Peer{cur(1, "198.18.0.2:51820", 0, "100.64.0.2/32")},
			desired: []Peer{want(1, "198.18.0.2:51820", ka, "100.64.0.2/32")},
			want: []wgtypes.PeerConfig{{
				PublicKey:                   key(1),
				UpdateOnly:                  true,
				PersistentKeepaliveInterval: dur(ka),
			}},
		},
		{
			name: "mixed: removals first, then by key",
			current: []wgtypes.Peer{
				cur(4, "198.18.0.4:1", 0, "100.64.0.4/32"),
				cur(2, "198.18.0.2:1", 0, "100.64.0.2/32"),
				cur(3, "198.18.0.3:1", 0, "100.64.0.3/32"),
			},
			desired: []Peer{
				want(5, "198.18.0.5:1", 0, "100.64.0.5/32"),
				want(3, "198.18.0.3:1", 0, "100.64.0.3/32"),
				want(2, "198.18.0.2:2", 0, "100.64.0.2/32"),
			},
			want: []wgtypes.PeerConfig{
				{PublicKey: key(4), Remove: true},
				{PublicKey: key(2), UpdateOnly: true, Endpoint: udp("198.18.0.2:2")},
				{
					PublicKey:                   key(5),
					Endpoint:                    udp("198.18.0.5:1"),
					PersistentKeepaliveInterval: dur(0),
					ReplaceAllowedIPs:           true,
					AllowedIPs:                  nets("100.64.0.5/32"),
				},
			},
		},
		{
			name:    "duplicate desired key: last wins",
			desired: []Peer{want(1, "198.18.0.2:1", 0, "100.64.0.2/32"), want(1, "198.18.0.3:1", 0, "100.64.0.3/32")},
			want: []wgtypes.PeerConfig{{
				PublicKey:                   key(1),
				Endpoint:                    udp("198.18.0.3:1"),
				PersistentKeepaliveInterval: dur(0),
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  nets("100.64.0.3/32"),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, changed := Plan(tt.current, tt.desired)
			if diff := cmp.Diff(wgtypes.Config{Peers: tt.want}, cfg); diff != "" {
				t.Errorf("Plan config (-want +got):\n%s", diff)
			}
			if want := len(tt.want) > 0; changed != want {
				t.Errorf("Plan changed = %v, want %v", changed, want)
			}
		})
	}
}

// TestPlanOrderIndependent checks that shuffling the current and desired
// peers, and the allowed IPs inside them, never changes the plan.
func TestPlanOrderIndependent(t *testing.T) {
	current := []wgtypes.Peer{
		cur(1, "198.18.0.1:1", 0, "100.64.0.1/32", "100.64.1.1/32"),
		cur(2, "198.18.0.2:1", 0, "100.64.0.2/32"),
		cur(3, "198.18.0.3:1", 0, "100.64.0.3/32", "198.19.3.0/24"),
		cur(4, "", 0, "100.64.0.4/32"),
	}
	desired := []Peer{
		want(1, "198.18.0.1:1", 0, "100.64.1.1/32", "100.64.0.1/32"), // unchanged
		want(3, "198.18.0.3:9", 0, "198.19.3.0/24", "100.64.0.3/32"), // endpoint
		want(4, "", time.Second, "100.64.0.4/32", "100.64.9.4/32"),   // keepalive, IPs
		want(6, "198.18.0.6:1", 0, "100.64.0.6/32", "100.64.6.0/24"), // new
	}
	base, _ := Plan(current, desired)
	if len(base.Peers) != 4 {
		t.Fatalf("base plan has %d entries, want 4: %+v", len(base.Peers), base.Peers)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		c := slices.Clone(current)
		d := clonePeers(desired)
		r.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
		for _, p := range c {
			r.Shuffle(len(p.AllowedIPs), func(i, j int) { p.AllowedIPs[i], p.AllowedIPs[j] = p.AllowedIPs[j], p.AllowedIPs[i] })
		}
		for _, p := range d {
			r.Shuffle(len(p.AllowedIPs), func(i, j int) { p.AllowedIPs[i], p.AllowedIPs[j] = p.AllowedIPs[j], p.AllowedIPs[i] })
		}
		got, _ := Plan(c, d)
		if diff := cmp.Diff(base, got); diff != "" {
			t.Fatalf("shuffle %d: plan differs (-base +got):\n%s", i, diff)
		}
	}
}

// TestPlanConverges checks that applying a plan to the current set yields
// a set for which the next plan is empty.
func TestPlanConverges(t *testing.T) {
	current := []wgtypes.Peer{
		cur(1, "198.18.0.1:1", 0, "100.64.0.1/32"),
		cur(2, "198.18.0.2:1", 0, "100.64.0.2/32"),
	}
	desired := []Peer{
		want(2, "198.18.0.2:7", 5*time.Second, "100.64.0.2/32", "100.64.2.0/24"),
		want(3, "", 0, "100.64.0.3/32"),
	}
	cfg, _ := Plan(current, desired)
	next := simulate(current, cfg)
	if cfg, changed := Plan(next, desired); changed {
		t.Fatalf("second plan not empty: %+v", cfg.Peers)
	}
}

// simulate applies cfg to peers the way WireGuard does.
func simulate(peers []wgtypes.Peer, cfg wgtypes.Config) []wgtypes.Peer {
	byKey := map[wgtypes.Key]*wgtypes.Peer{}
	var order []wgtypes.Key
	for _, p := range peers {
		byKey[p.PublicKey] = &p
		order = append(order, p.PublicKey)
	}
	for _, pc := range cfg.Peers {
		p, ok := byKey[pc.PublicKey]
		switch {
		case pc.Remove:
			delete(byKey, pc.PublicKey)
			continue
		case !ok && pc.UpdateOnly:
			continue
		case !ok:
			p = &wgtypes.Peer{PublicKey: pc.PublicKey}
			byKey[pc.PublicKey] = p
			order = append(order, pc.PublicKey)
		}
		if pc.Endpoint != nil {
			p.Endpoint = pc.Endpoint
		}
		if pc.PersistentKeepaliveInterval != nil {
			p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		p.AllowedIPs = append(p.AllowedIPs, pc.AllowedIPs...)
	}
	var out []wgtypes.Peer
	for _, k := range order {
		if p, ok := byKey[k]; ok {
			out = append(out, *p)
			delete(byKey, k)
		}
	}
	return out
}

func TestPrefixesFromWgctrl(t *testing.T) {
	v4in16 := net.IPNet{IP: net.ParseIP("100.64.0.2"), Mask: net.CIDRMask(32, 32)}
	v4mask128 := net.IPNet{IP: net.ParseIP("198.19.1.0"), Mask: net.CIDRMask(120, 128)}
	got := prefixes(append(nets("100.64.0.1/32", "fd00::/64"), v4in16, v4mask128, net.IPNet{}))
	if diff := cmp.Diff(pfx("100.64.0.1/32", "fd00::/64", "100.64.0.2/32", "198.19.1.0/24"), got,
		cmpPrefix); diff != "" {
		t.Errorf("prefixes (-want +got):\n%s", diff)
	}
}

func TestConfigCheck(t *testing.T) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Name: "latch0", PrivateKey: k, Address: netip.MustParsePrefix("100.64.0.5/32"),
		Route: netip.MustParsePrefix("100.64.0.0/10")}
	got, err := good.check()
	if err != nil {
		t.Fatalf("check(good): %v", err)
	}
	if got.MTU != DefaultMTU {
		t.Errorf("MTU = %d, want default %d", got.MTU, DefaultMTU)
	}
	bad := map[string]func(*Config){
		"no name":       func(c *Config) { c.Name = "" },
		"long name":     func(c *Config) { c.Name = "abcdefghijklmnop" },
		"slash in name": func(c *Config) { c.Name = "a/b" },
		"zero key":      func(c *Config) { c.PrivateKey = wgtypes.Key{} },
		"port":          func(c *Config) { c.ListenPort = 70000 },
		"no address":    func(c *Config) { c.Address = netip.Prefix{} },
		"mtu":           func(c *Config) { c.MTU = 100 },
		"mixed family":  func(c *Config) { c.Route = netip.MustParsePrefix("fd00::/8") },
	}
	for name, mut := range bad {
		c := good
		mut(&c)
		if _, err := c.check(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: check() = %v, want ErrInvalidConfig", name, err)
		}
	}
}

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestOpenInvalidConfig(t *testing.T) {
	// check runs before anything touches the host, so this needs no root.
	_, _, err := Open(Config{Name: "latch0"}, nil)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Open with no key or address = %v, want ErrInvalidConfig", err)
	}
}
