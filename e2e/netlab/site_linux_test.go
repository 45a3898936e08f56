package netlab

import (
	"net/netip"
	"testing"
	"time"
)

// A router attached to two sites forwards between their hosts; the hosts
// have no underlay and cannot reach it.
func TestSitesRouteThroughAttachedHost(t *testing.T) {
	lab := New(t)
	a := lab.Site("a", netip.MustParsePrefix("198.19.1.0/24"))
	b := lab.Site("b", netip.MustParsePrefix("198.19.2.0/24"))
	gw := lab.Host("gw")
	a.Attach(gw, netip.MustParseAddr("198.19.1.1"))
	b.Attach(gw, netip.MustParseAddr("198.19.2.1"))
	if _, err := gw.Run(t.Context(), "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	ha := a.Host("ha", netip.MustParseAddr("198.19.1.10"), netip.MustParseAddr("198.19.1.1"))
	hb := b.Host("hb", netip.MustParseAddr("198.19.2.10"), netip.Addr{})
	b.Route(hb, a.Prefix, netip.MustParseAddr("198.19.2.1"))
	if ha.Underlay.IsValid() || ha.Link != "s-a" {
		t.Errorf("site host: underlay %v, link %q; want none and s-a", ha.Underlay, ha.Link)
	}
	srv := hb.ServeTCP(t, netip.MustParseAddrPort("198.19.2.10:7000"))
	if err := ha.DialTCP(srv, 5*time.Second); err != nil {
		t.Errorf("site a host → site b host through gw: %v", err)
	}
	under := lab.Host("other")
	if err := ha.DialTCP(netip.AddrPortFrom(under.Underlay, 7000), 300*time.Millisecond); err == nil {
		t.Errorf("a site host reached the underlay")
	}
}

func TestSiteRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
	}{
		{"ok", "198.18.0.0/24"},             // the underlay, not a site network
		{"ok", "198.19.1.5/24"},             // not a network address
		{"Bad", "198.19.1.0/24"},            // name
		{"waytoolongname", "198.19.1.0/24"}, // name
	} {
		ft := &fatalT{TB: t}
		func() {
			defer func() { recover() }()
			lab := New(t)
			ft.lab = lab
			lab.t = ft
			lab.Site(tc.name, netip.MustParsePrefix(tc.prefix))
		}()
		if !ft.failed {
			t.Errorf("Site(%q, %s) was accepted", tc.name, tc.prefix)
		}
	}
}

// fatalT records Fatalf instead of ending the test.
type fatalT struct {
	testing.TB
	lab    *Lab
	failed bool
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, args ...any) {
	f.failed = true
	f.lab.t = f.TB // cleanup reports go to the real test
	panic("fatal")
}
