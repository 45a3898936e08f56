package route

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var overlay = netip.MustParsePrefix("100.64.0.0/10")

func TestSitePrefixes(t *testing.T) {
	got := SitePrefixes(overlay, pfx("198.19.2.0/24", "100.64.0.2/32", "198.19.1.5/24", "198.19.2.0/24", "100.0.0.0/8", "10.0.0.0/8"))
	want := pfx("10.0.0.0/8", "198.19.1.0/24", "198.19.2.0/24") // 100.0.0.0/8 overlaps the overlay
	if !slices.Equal(got, want) {
		t.Errorf("SitePrefixes = %v, want %v", got, want)
	}
}

func TestPlan(t *testing.T) {
	have := []KernelRoute{
		{Prefix: netip.MustParsePrefix("198.19.1.0/24"), Dev: "eth1", Protocol: 2},       // connected
		{Prefix: netip.MustParsePrefix("198.19.2.0/24"), Dev: "wg0", Protocol: Protocol}, // ours, kept
		{Prefix: netip.MustParsePrefix("198.19.3.0/24"), Dev: "wg0", Protocol: Protocol}, // ours, stale
		{Prefix: netip.MustParsePrefix("198.19.4.0/24"), Dev: "wg1", Protocol: Protocol}, // another agent's
		{Prefix: netip.MustParsePrefix("198.19.5.0/24"), Dev: "wg0", Protocol: 4},        // static on our device
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth0", Protocol: 16},
	}
	add, del, conflicts := Plan("wg0", pfx("198.19.1.0/24", "198.19.2.0/24", "198.19.4.0/24", "198.19.6.0/24"), have)
	if want := pfx("198.19.6.0/24"); !slices.Equal(add, want) {
		t.Errorf("add = %v, want %v", add, want)
	}
	if want := pfx("198.19.3.0/24"); !slices.Equal(del, want) {
		t.Errorf("del = %v, want %v", del, want)
	}
	wantC := map[netip.Prefix]string{
		netip.MustParsePrefix("198.19.1.0/24"): "proto kernel dev eth1",
		netip.MustParsePrefix("198.19.4.0/24"): "proto latch dev wg1",
	}
	if diff := cmp.Diff(wantC, conflicts, prefixEq); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
}

// TestManagerSync: routes follow the peers' site prefixes, a route of
// another owner is reported and never replaced, SNAT follows approval of
// the routes advertised with it, and Close removes what the Manager
// added and nothing else.
func TestManagerSync(t *testing.T) {
	connected := KernelRoute{Prefix: netip.MustParsePrefix("198.19.9.0/24"), Dev: "eth1", Protocol: 2}
	f := NewFake(connected)
	var logs strings.Builder
	m := New(f, Config{Dev: "wg0", Overlay: overlay, SNAT: pfx("198.19.9.0/24", "198.19.8.0/24")}, testLogger(&logs))

	if err := m.Sync(pfx("100.64.0.2/32", "198.19.1.0/24", "198.19.9.0/24"), pfx("198.19.9.0/24")); err != nil {
		t.Fatal(err)
	}
	if got, want := f.LatchRoutes("wg0"), pfx("198.19.1.0/24"); !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	if !slices.Contains(f.Table(), connected) {
		t.Errorf("the connected route was removed: %v", f.Table())
	}
	if !strings.Contains(logs.String(), "owner=\"proto kernel dev eth1\"") {
		t.Errorf("the conflict is not logged:\n%s", logs.String())
	}
	want := Status{
		Routes: []State{
			{Prefix: netip.MustParsePrefix("198.19.1.0/24"), Installed: true},
			{Prefix: netip.MustParsePrefix("198.19.9.0/24"), Conflict: "proto kernel dev eth1"},
		},
		SNAT: pfx("198.19.9.0/24"), // 198.19.8.0/24 is not approved
	}
	if diff := cmp.Diff(want, m.Status(), prefixEq); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if got := f.SNAT("wg0"); !slices.Equal(got, pfx("198.19.9.0/24")) {
		t.Errorf("SNAT = %v", got)
	}

	// The same view again: SNAT is not rewritten.
	calls := f.SNATCalls
	if err := m.Sync(pfx("198.19.1.0/24"), pfx("198.19.9.0/24")); err != nil {
		t.Fatal(err)
	}
	if f.SNATCalls != calls {
		t.Errorf("SetSNAT called again for an unchanged set")
	}

	// A failing SNAT is reported, and retried by the next Sync.
	f.SNATErr = errors.New("no nf_tables")
	if err := m.Sync(pfx("198.19.2.0/24"), pfx("198.19.9.0/24", "198.19.8.0/24")); err == nil || !strings.Contains(err.Error(), "no nf_tables") {
		t.Errorf("Sync with a failing SNAT = %v", err)
	}
	if got, want := f.LatchRoutes("wg0"), pfx("198.19.2.0/24"); !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v (routes do not wait on SNAT)", got, want)
	}
	if st := m.Status(); st.SNATError == "" {
		t.Errorf("status does not show the SNAT error: %+v", st)
	}
	f.SNATErr = nil
	if err := m.Sync(pfx("198.19.2.0/24"), pfx("198.19.9.0/24", "198.19.8.0/24")); err != nil {
		t.Fatal(err)
	}
	if got := f.SNAT("wg0"); !slices.Equal(got, pfx("198.19.8.0/24", "198.19.9.0/24")) {
		t.Errorf("SNAT after the retry = %v", got)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.Table(); !slices.Equal(got, []KernelRoute{connected}) {
		t.Errorf("after Close the table is %v, want only the connected route", got)
	}
	if got := f.SNAT("wg0"); got != nil {
		t.Errorf("after Close SNAT = %v", got)
	}
}

func TestEnsureForwarding(t *testing.T) {
	f := NewFake()
	if changed, err := EnsureForwarding(f); err != nil || !changed {
		t.Errorf("EnsureForwarding off = %v, %v", changed, err)
	}
	if changed, err := EnsureForwarding(f); err != nil || changed {
		t.Errorf("EnsureForwarding on = %v, %v", changed, err)
	}
	f = NewFake()
	f.EnableErr = errors.New("read-only file system")
	if _, err := EnsureForwarding(f); err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward") {
		t.Errorf("EnsureForwarding failing = %v, want an error naming net.ipv4.ip_forward", err)
	}
}

var prefixEq = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

// TestManagerWithoutSNAT: a node without :snat routes removes a table an
// earlier agent left, once, and needs no nf_tables: a failure there is
// logged, not an error of its routes.
func TestManagerWithoutSNAT(t *testing.T) {
	f := NewFake()
	if err := f.SetSNAT("wg0", overlay, pfx("198.19.9.0/24")); err != nil { // left behind
		t.Fatal(err)
	}
	m := New(f, Config{Dev: "wg0", Overlay: overlay}, nil)
	for range 2 {
		if err := m.Sync(pfx("198.19.1.0/24"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.SNAT("wg0"); got != nil {
		t.Errorf("the stale SNAT table stays: %v", got)
	}
	if f.SNATCalls != 2 { // the stale table, and the removal
		t.Errorf("SetSNAT called %d times, want once after the setup", f.SNATCalls-1)
	}

	f = NewFake()
	f.SNATErr = errors.New("no nf_tables")
	var logs strings.Builder
	m = New(f, Config{Dev: "wg0", Overlay: overlay}, testLogger(&logs))
	if err := m.Sync(pfx("198.19.1.0/24"), nil); err != nil {
		t.Errorf("Sync without SNAT routes and without nf_tables = %v, want nil", err)
	}
	if !strings.Contains(logs.String(), "no nf_tables") {
		t.Errorf("the failure is not logged:\n%s", logs.String())
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close without SNAT routes and without nf_tables = %v, want nil", err)
	}
	if got := f.LatchRoutes("wg0"); got != nil {
		t.Errorf("after Close, routes %v", got)
	}
}

// TestManagerRouteFailure: a route the kernel refuses shows in the error
// and the status, and the next Sync adds it.
func TestManagerRouteFailure(t *testing.T) {
	f := NewFake()
	f.AddErr = errors.New("network is down")
	m := New(f, Config{Dev: "wg0", Overlay: overlay}, nil)
	if err := m.Sync(pfx("198.19.1.0/24"), nil); err == nil || !strings.Contains(err.Error(), "adding the route 198.19.1.0/24 dev wg0: network is down") {
		t.Errorf("Sync = %v", err)
	}
	want := []State{{Prefix: netip.MustParsePrefix("198.19.1.0/24"), Error: "network is down"}}
	if got := m.Status().Routes; !slices.Equal(got, want) {
		t.Errorf("status = %+v, want %+v", got, want)
	}
	f.AddErr = nil
	if err := m.Sync(pfx("198.19.1.0/24"), nil); err != nil {
		t.Fatal(err)
	}
	if got := f.LatchRoutes("wg0"); !slices.Equal(got, pfx("198.19.1.0/24")) {
		t.Errorf("after the retry, routes %v", got)
	}
}
