//go:build linux

package route

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root (network namespaces, routes,
// nftables), and fails it under CI=true, where the suite runs as root and
// must not skip.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, routes, nftables) and CI must run it: run the suite as root")
	}
	t.Skip("needs root to create network namespaces and change their routes and nftables: run with sudo")
}

// noLeaks checks, when the test ends and its namespaces are gone, that
// none of the links it created, no Latch route and no SNAT table of dev is
// in the namespace the test started in. Call it before enterNewNS.
func noLeaks(t *testing.T, dev string, links ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, name := range append([]string{dev}, links...) {
			if _, err := netlink.LinkByName(name); err == nil {
				t.Errorf("link %s left in the test's namespace", name)
			}
		}
		rs, err := Kernel{}.Routes()
		if err != nil {
			t.Error(err)
		}
		for _, r := range rs {
			if r.Latch(dev) {
				t.Errorf("route %s dev %s left in the test's namespace", r.Prefix, dev)
			}
		}
		if slices.Contains(tables(t), SNATTable(dev)) {
			t.Errorf("nftables table %s left in the test's namespace", SNATTable(dev))
		}
	})
}

// enterNewNS moves the test's goroutine, locked to its thread, into a new
// network namespace until the test ends, and returns it.
func enterNewNS(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // also enters it
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("back to the test's namespace: %v", err) // the thread stays locked and dies with the goroutine
			return
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	return ns
}

// newNS creates a network namespace without entering it.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(cur); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// within runs f on a thread of its own in ns; the thread is discarded
// afterwards.
func within(t *testing.T, ns netns.NsHandle, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// mustTun adds a TUN device (L3, like WireGuard's), up, with addr if
// given.
func mustTun(t *testing.T, h *netlink.Handle, name string, addr string) {
	t.Helper()
	l := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_DEFAULTS}
	if err := h.LinkAdd(l); err != nil {
		t.Fatalf("TUN device %s: %v", name, err)
	}
	if addr != "" {
		a, _ := netlink.ParseAddr(addr)
		if err := h.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s: %v", addr, name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// routesOf lists the main table's IPv4 routes on dev, straight from
// netlink.
func routesOf(t *testing.T, dev string) map[netip.Prefix]int {
	t.Helper()
	l, err := netlink.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]int{}
	for _, r := range rs {
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		out[netip.PrefixFrom(a.Unmap(), ones)] = int(r.Protocol)
	}
	return out
}

// TestKernelRoutes: in a namespace of its own, the Manager routes exactly
// the site prefixes through the device with protocol 76, leaves the
// site's connected route and another owner's route alone (reporting the
// first as a conflict), follows a change, and removes only its own on
// Close.
func TestKernelRoutes(t *testing.T) {
	requireRoot(t)
	noLeaks(t, "lwg0", "site0")
	enterNewNS(t)
	h := netlink.Handle{}
	mustTun(t, &h, "lwg0", "100.64.0.1/32")
	mustTun(t, &h, "site0", "198.19.1.1/24") // the site's connected route, proto kernel
	static := &netlink.Route{LinkIndex: mustIndex(t, "lwg0"), Dst: ipNet(netip.MustParsePrefix("198.19.3.0/24")), Protocol: unix.RTPROT_STATIC, Table: unix.RT_TABLE_MAIN}
	if err := netlink.RouteAdd(static); err != nil {
		t.Fatal(err)
	}

	m := New(Kernel{}, Config{Dev: "lwg0", Overlay: netip.MustParsePrefix("100.64.0.0/10")}, nil)
	if err := m.Sync(pfx("100.64.0.2/32", "198.19.1.0/24", "198.19.2.0/24"), nil); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want := map[netip.Prefix]int{netip.MustParsePrefix("198.19.2.0/24"): Protocol, netip.MustParsePrefix("198.19.3.0/24"): unix.RTPROT_STATIC}
	if got := routesOf(t, "lwg0"); !maps(got, want) {
		t.Errorf("routes on lwg0 = %v, want %v", got, want)
	}
	if got := routesOf(t, "site0"); got[netip.MustParsePrefix("198.19.1.0/24")] != unix.RTPROT_KERNEL {
		t.Errorf("the site's connected route was touched: routes on site0 = %v", got)
	}
	wantSt := []State{
		{Prefix: netip.MustParsePrefix("198.19.1.0/24"), Conflict: "proto kernel dev site0"},
		{Prefix: netip.MustParsePrefix("198.19.2.0/24"), Installed: true},
	}
	if got := m.Status().Routes; !slices.Equal(got, wantSt) {
		t.Errorf("status = %+v, want %+v", got, wantSt)
	}

	if err := m.Sync(pfx("198.19.4.0/24"), nil); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want = map[netip.Prefix]int{netip.MustParsePrefix("198.19.4.0/24"): Protocol, netip.MustParsePrefix("198.19.3.0/24"): unix.RTPROT_STATIC}
	if got := routesOf(t, "lwg0"); !maps(got, want) {
		t.Errorf("after the change, routes on lwg0 = %v, want %v", got, want)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want = map[netip.Prefix]int{netip.MustParsePrefix("198.19.3.0/24"): unix.RTPROT_STATIC}
	if got := routesOf(t, "lwg0"); !maps(got, want) {
		t.Errorf("after Close, routes on lwg0 = %v, want only the static one %v", got, want)
	}
	// Removing the routes of a device that is gone is not an error.
	if err := (Kernel{}).DelRoute("nosuchdev", netip.MustParsePrefix("198.19.4.0/24")); err != nil {
		t.Errorf("DelRoute on a missing device: %v", err)
	}
}

func mustIndex(t *testing.T, dev string) int {
	t.Helper()
	l, err := netlink.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func maps(a, b map[netip.Prefix]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestKernelForwarding: a new namespace starts without forwarding;
// EnsureForwarding turns it on there (saying so) and a second call
// changes nothing; the test's own namespace is not touched.
func TestKernelForwarding(t *testing.T) {
	requireRoot(t)
	before, err := Kernel{}.Forwarding()
	if err != nil {
		t.Fatal(err)
	}
	outer, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	enterNewNS(t)
	if on, err := (Kernel{}).Forwarding(); err != nil || on {
		t.Fatalf("a new namespace: forwarding %v, %v; want off", on, err)
	}
	changed, err := EnsureForwarding(Kernel{})
	if err != nil || !changed {
		t.Fatalf("EnsureForwarding = %v, %v; want changed", changed, err)
	}
	if on, err := (Kernel{}).Forwarding(); err != nil || !on {
		t.Fatalf("after EnsureForwarding: forwarding %v, %v; want on", on, err)
	}
	if changed, err := EnsureForwarding(Kernel{}); err != nil || changed {
		t.Fatalf("second EnsureForwarding = %v, %v; want unchanged", changed, err)
	}
	within(t, outer, func() error {
		after, err := Kernel{}.Forwarding()
		if err == nil && after != before {
			t.Errorf("the test's own namespace: forwarding went from %v to %v", before, after)
		}
		return err
	})
}

// TestKernelSNAT sends UDP from an overlay address in a client namespace
// through a gateway namespace into a site namespace, and reads the source
// the site host sees: the overlay address without SNAT, the gateway's
// site address with SNAT for the site's prefix, the overlay address again
// with SNAT for another prefix only and once the table is removed.
func TestKernelSNAT(t *testing.T) {
	requireRoot(t)
	noLeaks(t, "lwg0", "gs", "gc", "sg", "cg")
	enterNewNS(t)
	site, client := newNS(t), newNS(t)
	h := &netlink.Handle{}
	sh, err := netlink.NewHandleAt(site)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	ch, err := netlink.NewHandleAt(client)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()

	mustTun(t, h, "lwg0", "100.64.0.1/32") // the WireGuard device's stand-in
	veth(t, h, "gs", "198.19.1.1/24", sh, site, "sg", "198.19.1.2/24")
	veth(t, h, "gc", "198.18.0.1/24", ch, client, "cg", "198.18.0.2/24")
	if err := ch.AddrAdd(mustLink(t, ch, "cg"), mustAddr("100.64.0.9/32")); err != nil {
		t.Fatal(err)
	}
	if err := ch.RouteAdd(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("198.19.1.0/24")), Gw: net.ParseIP("198.18.0.1"), Src: net.ParseIP("100.64.0.9")}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{Dst: ipNet(netip.MustParsePrefix("100.64.0.9/32")), Gw: net.ParseIP("198.18.0.2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureForwarding(Kernel{}); err != nil {
		t.Fatal(err)
	}

	var ln *net.UDPConn
	within(t, site, func() (err error) {
		ln, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("198.19.1.2"), Port: 4000})
		return err
	})
	defer ln.Close()
	seen := func() string {
		t.Helper()
		within(t, client, func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("100.64.0.9")}, &net.UDPAddr{IP: net.ParseIP("198.19.1.2"), Port: 4000})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("hello"))
			return err
		})
		ln.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on a lost packet, not a timing assertion
		buf := make([]byte, 16)
		_, from, err := ln.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("the site host received nothing: %v", err)
		}
		return from.IP.String()
	}
	overlay := netip.MustParsePrefix("100.64.0.0/10")
	k := Kernel{}

	if got := seen(); got != "100.64.0.9" {
		t.Errorf("without SNAT the site host sees %s, want the overlay address 100.64.0.9", got)
	}
	if err := k.SetSNAT("lwg0", overlay, pfx("198.19.1.0/24")); err != nil {
		t.Fatalf("SetSNAT: %v", err)
	}
	if err := k.SetSNAT("lwg0", overlay, pfx("198.19.1.0/24")); err != nil {
		t.Fatalf("SetSNAT again: %v", err)
	}
	if got := tables(t); !slices.Equal(got, []string{"latch-lwg0"}) {
		t.Errorf("nftables tables = %v, want [latch-lwg0]", got)
	}
	if got := seen(); got != "198.19.1.1" {
		t.Errorf("with SNAT the site host sees %s, want the gateway's 198.19.1.1", got)
	}
	if err := k.SetSNAT("lwg0", overlay, pfx("198.19.7.0/24")); err != nil {
		t.Fatalf("SetSNAT: %v", err)
	}
	if got := seen(); got != "100.64.0.9" {
		t.Errorf("with SNAT for another prefix the site host sees %s, want 100.64.0.9", got)
	}
	if err := Remove(k, "lwg0"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := tables(t); len(got) != 0 {
		t.Errorf("after Remove, nftables tables = %v, want none", got)
	}
	if err := Remove(k, "lwg0"); err != nil {
		t.Errorf("Remove with nothing to remove: %v", err)
	}
}

func tables(t *testing.T) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range ts {
		out = append(out, x.Name)
	}
	return out
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// veth joins the current namespace (name, addr) to ns (peer, peerAddr).
func veth(t *testing.T, h *netlink.Handle, name, addr string, ph *netlink.Handle, ns netns.NsHandle, peer, peerAddr string) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetNsFd(mustLink(t, h, peer), int(ns)); err != nil {
		t.Fatal(err)
	}
	l, pl := mustLink(t, h, name), mustLink(t, ph, peer)
	if err := h.AddrAdd(l, mustAddr(addr)); err != nil {
		t.Fatal(err)
	}
	if err := ph.AddrAdd(pl, mustAddr(peerAddr)); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetUp(pl); err != nil {
		t.Fatal(err)
	}
}
