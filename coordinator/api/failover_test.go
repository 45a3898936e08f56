package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/wire"
)

// TestRouteStateFollowsStreams: two gateways with the same approved route
// over a site; the route list and /metrics say which is primary and
// which is online, and follow a gateway's view stream closing.
func TestRouteStateFollowsStreams(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.Admin()
	tok := h.Token(2)
	gw1, gw2 := h.MustEnroll(tok, "gw-1"), h.MustEnroll(tok, "gw-2")
	for _, gw := range []string{"gw-1", "gw-2"} {
		n := gw1
		if gw == "gw-2" {
			n = gw2
		}
		if code, body, _ := advertise(h, n, wire.Route{Prefix: "198.19.1.0/24"}); code != http.StatusOK {
			t.Fatalf("register %s: %d %s", gw, code, body)
		}
		if _, err := c.ApproveRoute(ctx, gw, "198.19.1.0/24"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PutSite(ctx, "site-eu", "db", adminapi.SiteRequest{CIDRs: []string{"198.19.1.0/24"}}); err != nil {
		t.Fatal(err)
	}
	// state returns "node:primary:online" for each route.
	state := func() string {
		t.Helper()
		rs, err := c.SubnetRoutes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s:%v:%v", r.Node, r.Primary, r.Online))
		}
		return strings.Join(out, " ")
	}
	// await polls state until it is want.
	await := func(want string) {
		t.Helper()
		got := ""
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = state(); got == want {
				return
			}
		}
		t.Fatalf("routes: %s, want %s", got, want)
	}
	metrics := func() string {
		rec := httptest.NewRecorder()
		h.API.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	// Neither connected: gw-1 counts as online for the failover (no
	// grace period ends in this harness) but is not connected.
	await("gw-1:true:false gw-2:false:false")
	s1, cancel1 := context.WithCancel(ctx)
	defer cancel1()
	if err := h.Connect(s1, gw1); err != nil {
		t.Fatal(err)
	}
	s2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	if err := h.Connect(s2, gw2); err != nil {
		t.Fatal(err)
	}
	await("gw-1:true:true gw-2:false:true")
	for _, want := range []string{
		`latch_coordinator_route{node="gw-1",prefix="198.19.1.0/24",primary="true",status="approved"} 1`,
		`latch_coordinator_route{node="gw-2",prefix="198.19.1.0/24",primary="false",status="approved"} 1`,
	} {
		if m := metrics(); !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	// gw-1's stream closes: gw-2 takes over.
	cancel1()
	await("gw-1:false:false gw-2:true:true")
	for _, want := range []string{
		`latch_coordinator_route{node="gw-1",prefix="198.19.1.0/24",primary="false",status="approved"} 0`,
		`latch_coordinator_route{node="gw-2",prefix="198.19.1.0/24",primary="true",status="approved"} 1`,
		`latch_coordinator_routes{status="approved"} 2`,
	} {
		if m := metrics(); !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The approval's answer says it too.
	if r, err := c.ApproveRoute(ctx, "gw-2", "198.19.1.0/24"); err != nil || !r.Primary || !r.Online {
		t.Errorf("approve again: %+v %v, want primary and online", r, err)
	}
}
