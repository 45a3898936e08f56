package state

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/wire"
)

// advertise registers node name with routes.
func (e *env) advertise(name string, routes ...wire.Route) error {
	_, _, err := e.s.Register(context.Background(), name, Registration{
		PublicKey: "key-" + name,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")},
		Routes:    routes,
	})
	return err
}

// routeTable is every stored route as "node prefix status snat by".
func (e *env) routeTable() []string {
	e.t.Helper()
	rs, err := e.s.Routes(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s %s snat=%v by=%s", r.Node, r.Prefix, r.Status, r.SNAT, r.DecidedBy))
	}
	return out
}

func (e *env) wantRoutes(want ...string) {
	e.t.Helper()
	if diff := cmp.Diff(want, e.routeTable()); diff != "" {
		e.t.Fatalf("routes (-want +got):\n%s", diff)
	}
}

// TestRouteLifecycle: advertise → list → approve → re-register keeps the
// approval → withdraw → gone; a rejected route stays rejected when
// advertised again; deleting the node deletes its routes; every decision
// is audited.
func TestRouteLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.token("t", 2)
	e.enroll("t", "gw")
	a, b := wire.Route{Prefix: "198.19.1.0/24"}, wire.Route{Prefix: "198.19.2.0/24", SNAT: true}
	if err := e.advertise("gw", a, b); err != nil {
		t.Fatal(err)
	}
	e.wantRoutes("gw 198.19.1.0/24 advertised snat=false by=", "gw 198.19.2.0/24 advertised snat=true by=")

	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.RejectRoute(ctx, "bob", "gw", "198.19.2.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := e.advertise("gw", a, b); err != nil {
		t.Fatal(err)
	}
	e.wantRoutes("gw 198.19.1.0/24 approved snat=false by=alice", "gw 198.19.2.0/24 rejected snat=true by=bob")

	// Withdrawn: gone; advertised again later, it waits for an admin anew.
	if err := e.advertise("gw", b); err != nil {
		t.Fatal(err)
	}
	e.wantRoutes("gw 198.19.2.0/24 rejected snat=true by=bob")
	if err := e.advertise("gw", a, b); err != nil {
		t.Fatal(err)
	}
	e.wantRoutes("gw 198.19.1.0/24 advertised snat=false by=", "gw 198.19.2.0/24 rejected snat=true by=bob")

	// A rejected route is approved by an admin, not by advertising it.
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.2.0/24"); err != nil {
		t.Fatal(err)
	}
	e.wantRoutes("gw 198.19.1.0/24 advertised snat=false by=", "gw 198.19.2.0/24 approved snat=true by=alice")

	if _, err := e.s.ApproveRoute(ctx, "alice", "gw", "198.19.9.0/24"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approving a route the node does not advertise: %v, want not found", err)
	}
	if _, err := e.s.ApproveRoute(ctx, "alice", "nope", "198.19.1.0/24"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approving a route of an unknown node: %v, want not found", err)
	}

	var actions []string
	e.s.Read(ctx, func(tx store.Tx) error {
		es, err := tx.ListAudit(0)
		for _, a := range es {
			if strings.HasPrefix(a.Action, "route.") {
				actions = append(actions, a.Actor+" "+a.Action+" "+a.Object)
			}
		}
		return err
	})
	want := []string{"alice route.approve gw 198.19.2.0/24", "bob route.reject gw 198.19.2.0/24", "alice route.approve gw 198.19.1.0/24"}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}

	if err := e.s.DeleteNode(ctx, "admin", "gw"); err != nil {
		t.Fatal(err)
	}
	e.wantRoutes()
}

// TestRouteRefusals: a registration with a bad route, or one overlapping a
// different route of another node, is refused whole: the node's other
// data and its routes stay as they were.
func TestRouteRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.token("t", 3)
	e.enroll("t", "gw-a")
	e.enroll("t", "gw-b")
	if err := e.advertise("gw-a", wire.Route{Prefix: "198.19.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	// The same prefix from another gateway is a failover group: allowed.
	if err := e.advertise("gw-b", wire.Route{Prefix: "198.19.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	before := e.routeTable()
	for _, c := range []struct {
		routes []wire.Route
		err    error
		msg    string
	}{
		{[]wire.Route{{Prefix: "198.19.0.0/16"}, {Prefix: "198.19.1.0/24"}}, ErrInvalid, "overlaps 198.19.0.0/16"},
		{[]wire.Route{{Prefix: "198.19.1.5/24"}}, ErrInvalid, "did you mean 198.19.1.0/24?"},
		{[]wire.Route{{Prefix: "100.64.8.0/24"}}, ErrInvalid, "overlaps the overlay 100.64.0.0/10"},
		{[]wire.Route{{Prefix: "0.0.0.0/0"}}, ErrInvalid, "shorter than /8"},
		{[]wire.Route{{Prefix: "fd00::/64"}}, ErrInvalid, "IPv6"},
	} {
		_, _, err := e.s.Register(ctx, "gw-b", Registration{PublicKey: "other-key", Routes: c.routes})
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want %v with %q", c.routes, err, c.err, c.msg)
		}
	}
	// gw-b gives up the /16 and advertises a part of gw-a's /16.
	_, _, err := e.s.Register(ctx, "gw-b", Registration{PublicKey: "other-key", Routes: []wire.Route{{Prefix: "198.19.1.0/24"}}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "overlaps 198.19.0.0/16, which node gw-a advertises") {
		t.Fatalf("a route inside another node's: %v", err)
	}
	if diff := cmp.Diff(before, e.routeTable()); diff != "" {
		t.Errorf("a refused registration changed the routes (-before +after):\n%s", diff)
	}
	e.s.Read(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode("gw-b")
		if err == nil && n.PublicKey != "key-gw-b" {
			t.Errorf("a refused registration changed the node's key to %q", n.PublicKey)
		}
		return err
	})

	// Once gw-a's route is rejected, it no longer blocks gw-b; approving it
	// again is then refused while gw-b's overlapping route stands.
	if _, err := e.s.RejectRoute(ctx, "alice", "gw-a", "198.19.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.Register(ctx, "gw-b", Registration{PublicKey: "other-key", Routes: []wire.Route{{Prefix: "198.19.1.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.ApproveRoute(ctx, "alice", "gw-a", "198.19.0.0/16"); !errors.Is(err, ErrConflict) {
		t.Fatalf("approving a route overlapping another node's: %v, want conflict", err)
	}
}

// A node whose routes Register would refuse is not enrolled: the refusal
// comes at enrollment, the token is not used up, and nothing is stored.
func TestEnrollRefusesBadRoutes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.token("t", 2)
	e.enroll("t", "gw-a")
	if err := e.advertise("gw-a", wire.Route{Prefix: "198.19.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	before := e.routeTable()
	for _, c := range []struct {
		routes []wire.Route
		err    error
		msg    string
	}{
		{[]wire.Route{{Prefix: "198.19.1.5/24"}}, ErrInvalid, "did you mean 198.19.1.0/24?"},
		{[]wire.Route{{Prefix: "100.64.8.0/24"}}, ErrInvalid, "overlaps the overlay 100.64.0.0/10"},
		{[]wire.Route{{Prefix: "0.0.0.0/0"}}, ErrInvalid, "shorter than /8"},
		{[]wire.Route{{Prefix: "198.19.9.0/24"}, {Prefix: "198.19.9.128/25"}}, ErrInvalid, "also advertised"},
		{[]wire.Route{{Prefix: "198.19.1.0/25"}}, ErrConflict, "overlaps 198.19.1.0/24, which node gw-a advertises"},
	} {
		_, err := e.s.Enroll(ctx, Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "gw-b", Routes: c.routes}, e.sign)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("enrolling with %v: %v, want %v with %q", c.routes, err, c.err, c.msg)
		}
	}
	e.s.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNode("gw-b"); err == nil {
			t.Errorf("a refused node was stored")
		}
		return nil
	})
	if diff := cmp.Diff(before, e.routeTable()); diff != "" {
		t.Errorf("refused enrollments changed the routes (-before +after):\n%s", diff)
	}
	// The token's second use is still there; the same prefix as gw-a's
	// (a failover pair) is fine.
	if _, err := e.s.Enroll(ctx, Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "gw-b", Routes: []wire.Route{{Prefix: "198.19.1.0/24"}}}, e.sign); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
}
