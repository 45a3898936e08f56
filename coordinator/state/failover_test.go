package state

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
)

// failoverEnv is app (hosting web, which may reach site db) and two
// gateways, gw-a and gw-b, both with 198.19.1.0/24 approved.
func failoverEnv(t *testing.T, grace time.Duration) *env {
	ctx := context.Background()
	e := &env{t: t, path: t.TempDir() + "/latch.db", now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), grace: grace}
	e.open()
	e.webToDB("gw-a", "gw-b")
	for _, gw := range []string{"gw-a", "gw-b"} {
		if err := e.advertise(gw, wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.ApproveRoute(ctx, "alice", gw, "198.19.1.0/24"); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// wantPrimary checks that app reaches the site through gw alone, that
// gw's published view carries the site and marks its route primary, and
// that the other gateway's does neither.
func (e *env) wantPrimary(when, gw string) {
	e.t.Helper()
	want := []string{"198.19.1.0/25", "198.19.1.192/26"}
	other := map[string]string{"gw-a": "gw-b", "gw-b": "gw-a"}[gw]
	if got := e.siteIPs("app", gw); !slices.Equal(got, want) {
		e.t.Fatalf("%s: app holds %s with site AllowedIPs %v, want %v", when, gw, got, want)
	}
	// The other gateway may be a standby peer, without site addresses.
	if got := e.siteIPs("app", other); len(got) != 0 {
		e.t.Fatalf("%s: app still holds %s with %v", when, other, got)
	}
	for _, c := range []struct {
		gw      string
		primary bool
	}{{gw, true}, {other, false}} {
		v := e.s.View(c.gw)
		if len(v.Routes) != 1 || v.Routes[0].Primary != c.primary || (len(v.Sites) == 1) != c.primary {
			e.t.Fatalf("%s: %s's view has routes %+v and sites %+v, want primary=%v", when, c.gw, v.Routes, v.Sites, c.primary)
		}
	}
	for _, c := range []struct {
		gw      string
		primary bool
	}{{gw, true}, {other, false}} {
		primary, _ := e.s.RouteState(c.gw, view.MustPrefix("198.19.1.0/24").Netip())
		if primary != c.primary {
			e.t.Fatalf("%s: RouteState(%s) says primary=%v", when, c.gw, primary)
		}
	}
}

// TestFailoverFollowsStreams: a gateway goes offline when its last view
// stream closes and online when one opens, and the views follow at once.
func TestFailoverFollowsStreams(t *testing.T) {
	e := failoverEnv(t, 10*time.Second)
	e.wantPrimary("at start", "gw-a")
	e.s.StreamOpened("gw-a")
	e.s.StreamOpened("gw-a") // a second stream, say a reconnect overlapping the old one
	e.s.StreamOpened("gw-b")
	e.wantPrimary("both connected", "gw-a")
	if _, online := e.s.RouteState("gw-a", view.MustPrefix("198.19.1.0/24").Netip()); !online {
		t.Fatal("RouteState says gw-a is offline while it has a stream")
	}
	before := e.s.View("app").Version
	e.s.StreamClosed("gw-a")
	e.wantPrimary("one of gw-a's streams closed", "gw-a")
	e.s.StreamClosed("gw-a")
	e.wantPrimary("gw-a's last stream closed", "gw-b")
	if v := e.s.View("app").Version; v <= before {
		t.Fatalf("app's published view stayed at version %d", v)
	}
	if _, online := e.s.RouteState("gw-a", view.MustPrefix("198.19.1.0/24").Netip()); online {
		t.Fatal("RouteState says gw-a is online without a stream")
	}
	e.s.StreamOpened("gw-a")
	e.wantPrimary("gw-a back", "gw-a")
	// A change while gw-b is offline keeps it so.
	e.s.StreamClosed("gw-b")
	e.register("app", inventory.Workload{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}})
	e.s.StreamClosed("gw-a")
	e.wantPrimary("both offline: the lowest-named stays", "gw-a")
	e.s.StreamOpened("gw-b")
	e.wantPrimary("gw-b back alone", "gw-b")
}

// TestFailoverGracePeriod: after Open, gateways without a stream count as
// online until the grace period passes; then those still without one
// are offline. A restart starts a new grace period.
func TestFailoverGracePeriod(t *testing.T) {
	e := failoverEnv(t, 7*time.Second)
	if len(e.timers) != 1 || e.timers[0].d != 7*time.Second {
		t.Fatalf("Open started timers %+v, want one of 7s", e.timers)
	}
	e.s.StreamOpened("gw-b")
	e.wantPrimary("in the grace period, gw-a never connected", "gw-a")
	e.timers[0].f()
	e.wantPrimary("after the grace period", "gw-b")
	// A node enrolled after the grace period is offline until it connects.
	e.enroll("t", "gw-0")
	if err := e.advertise("gw-0", wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.ApproveRoute(context.Background(), "alice", "gw-0", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	e.wantPrimary("gw-0 approved but never connected", "gw-b")

	// Restart: a new grace period; gw-a counts as online again.
	e.s.Close()
	if !e.timers[0].stopped {
		t.Fatal("Close did not stop the grace timer")
	}
	e.open()
	if len(e.timers) != 2 {
		t.Fatalf("the restart started %d timers, want one more", len(e.timers)-1)
	}
	if got := e.siteIPs("app", "gw-0"); len(got) == 0 {
		t.Fatalf("after a restart, in the grace period, app does not reach the site through gw-0 (the lowest name)")
	}
	// In the grace period a gateway whose stream closes is offline at once.
	e.s.StreamOpened("gw-0")
	e.s.StreamClosed("gw-0")
	e.wantPrimary("gw-0's stream closed in the grace period; gw-a never connected", "gw-a")
	// A zero grace (the default of Options) never expires.
	e.grace = 0
	e.open()
	if len(e.timers) != 2 {
		t.Fatalf("Open with no grace period started a timer")
	}
}
