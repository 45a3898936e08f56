package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/wire"
)

// advertise registers n with routes and returns the status, the body and
// the decoded answer.
func advertise(h *harness, n *coordtest.Node, routes ...wire.Route) (int, string, wire.RegisterResponse) {
	var rr wire.RegisterResponse
	code, body := h.Post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: coordtest.PublicKey(n.Name),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")}, Routes: routes}, &rr)
	return code, body, rr
}

// TestSubnetRoutes: a node advertises routes in its registration and
// learns their status; an admin lists, approves and rejects them (a viewer
// may only list); every decision is audited; a registration with a bad
// route is refused with a message naming it and changes nothing.
func TestSubnetRoutes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.Admin()
	tok := h.Token(2)
	gw, other := h.MustEnroll(tok, "gw-1"), h.MustEnroll(tok, "gw-2")
	code, body, rr := advertise(h, gw, wire.Route{Prefix: "198.19.1.0/24"}, wire.Route{Prefix: "198.19.2.0/24", SNAT: true})
	if code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	if len(rr.Routes) != 2 || rr.Routes[0].Status != wire.RouteAdvertised || !rr.Routes[1].SNAT {
		t.Fatalf("the node learns %+v", rr.Routes)
	}

	rs, err := c.SubnetRoutes(ctx, "")
	if err != nil || len(rs) != 2 || rs[0].Node != "gw-1" || rs[0].Prefix.String() != "198.19.1.0/24" || rs[0].Status != adminapi.RouteAdvertised {
		t.Fatalf("list: %+v %v", rs, err)
	}

	viewer, err := c.CreateAPIToken(ctx, adminapi.APITokenRequest{Name: "ro", Role: "viewer", TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	v := h.Client(viewer.Token)
	if _, err := v.SubnetRoutes(ctx, "gw-1"); err != nil {
		t.Fatalf("a viewer lists: %v", err)
	}
	var ce *client.Error
	if _, err := v.ApproveRoute(ctx, "gw-1", "198.19.1.0/24"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Fatalf("a viewer approves: %v, want 403", err)
	}

	r, err := c.ApproveRoute(ctx, "gw-1", "198.19.1.0/24")
	if err != nil || r.Status != adminapi.RouteApproved || r.DecidedBy == "" || r.DecidedAt.IsZero() {
		t.Fatalf("approve: %+v %v", r, err)
	}
	if r, err := c.RejectRoute(ctx, "gw-1", "198.19.2.0/24"); err != nil || r.Status != adminapi.RouteRejected {
		t.Fatalf("reject: %+v %v", r, err)
	}
	if _, err := c.ApproveRoute(ctx, "gw-1", "198.19.9.0/24"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound || !strings.Contains(err.Error(), "latch admin route list") {
		t.Fatalf("approve a route not advertised: %v, want 404", err)
	}
	audit, err := c.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range audit {
		seen[a.Action+" "+a.Object] = true
	}
	if !seen["route.approve gw-1 198.19.1.0/24"] || !seen["route.reject gw-1 198.19.2.0/24"] {
		t.Errorf("audit lacks the decisions: %v", seen)
	}

	// The node registers again: the decisions stand, and it learns them.
	if code, body, rr = advertise(h, gw, wire.Route{Prefix: "198.19.1.0/24"}, wire.Route{Prefix: "198.19.2.0/24", SNAT: true}); code != http.StatusOK ||
		rr.Routes[0].Status != wire.RouteApproved || rr.Routes[1].Status != wire.RouteRejected {
		t.Fatalf("register again: %d %s", code, body)
	}

	// Bad input: refused whole, with a message naming the route.
	before, _ := c.SubnetRoutes(ctx, "")
	for _, bad := range []struct {
		routes []wire.Route
		code   int
		msg    string
	}{
		{[]wire.Route{{Prefix: "198.19.1.5/24"}}, http.StatusBadRequest, "198.19.1.5/24 is not a network address: did you mean 198.19.1.0/24?"},
		{[]wire.Route{{Prefix: "100.64.1.0/24"}}, http.StatusBadRequest, "overlaps the overlay 100.64.0.0/10"},
		{[]wire.Route{{Prefix: "0.0.0.0/0"}}, http.StatusBadRequest, "shorter than /8"},
		{[]wire.Route{{Prefix: "198.19.0.0/16"}}, http.StatusConflict, "198.19.0.0/16 overlaps 198.19.1.0/24, which node gw-1 advertises"},
	} {
		if code, body, _ := advertise(h, other, bad.routes...); code != bad.code || !strings.Contains(body, bad.msg) {
			t.Errorf("%v: %d %s, want %d with %q", bad.routes, code, body, bad.code, bad.msg)
		}
	}
	after, _ := c.SubnetRoutes(ctx, "")
	if len(before) != len(after) {
		t.Errorf("refused registrations changed the routes: %v → %v", before, after)
	}
	if n, err := c.Node(ctx, "gw-2"); err != nil || n.PublicKey != "" {
		t.Errorf("a refused registration registered the node: %+v %v", n, err)
	}

	// /metrics counts the routes by status.
	rec := httptest.NewRecorder()
	h.API.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`latch_coordinator_routes{status="advertised"} 0`, `latch_coordinator_routes{status="approved"} 1`, `latch_coordinator_routes{status="rejected"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The same prefix from a second gateway is allowed.
	if code, body, _ := advertise(h, other, wire.Route{Prefix: "198.19.1.0/24"}); code != http.StatusOK {
		t.Fatalf("a second gateway for a subnet: %d %s", code, body)
	}
	if rs, _ := c.SubnetRoutes(ctx, "gw-2"); len(rs) != 1 || rs[0].Status != adminapi.RouteAdvertised {
		t.Fatalf("gw-2's routes: %+v", rs)
	}

	// Deleting the node deletes its routes.
	if err := c.DeleteNode(ctx, "gw-1"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := c.SubnetRoutes(ctx, "gw-1"); len(rs) != 0 {
		t.Fatalf("routes of a deleted node: %+v", rs)
	}
}

// TestRegisterTellsTheSTUNPort: a register response carries the port of
// the coordinator's STUN server, and none when it has none.
func TestRegisterTellsTheSTUNPort(t *testing.T) {
	for _, port := range []int{0, 3478} {
		h := newHarnessWith(t, coordtest.Options{API: func(c *api.Config) { c.STUNPort = port }})
		n := h.MustEnroll(h.Token(1), "n1")
		code, body, rr := advertise(h, n)
		if code != http.StatusOK {
			t.Fatalf("register: %d %s", code, body)
		}
		if rr.STUNPort != port {
			t.Errorf("STUN port %d in the register response, want %d", rr.STUNPort, port)
		}
	}
}
