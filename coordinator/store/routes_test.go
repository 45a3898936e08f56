package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRoutesRoundTrip: SetRoutes replaces a node's routes, which read back
// as written, ordered; an unknown node is ErrNotFound; a prefix twice is
// ErrConflict; deleting the node deletes its routes.
func TestRoutesRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	for _, n := range []struct{ name, ip string }{{"a", "100.64.0.2"}, {"b", "100.64.0.3"}} {
		if err := putTestNode(t, s, n.name, n.ip, ""); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ra := []Route{
		{Prefix: netip.MustParsePrefix("198.19.2.0/24"), SNAT: true, Status: RouteApproved, AdvertisedAt: at, DecidedAt: at.Add(time.Minute), DecidedBy: "alice"},
		{Prefix: netip.MustParsePrefix("198.19.1.0/24"), Status: RouteAdvertised, AdvertisedAt: at},
	}
	rb := []Route{{Prefix: netip.MustParsePrefix("198.19.1.0/24"), Status: RouteRejected, AdvertisedAt: at, DecidedAt: at, DecidedBy: "bob"}}
	update(t, s, func(tx Tx) error {
		if err := tx.SetRoutes("a", ra); err != nil {
			return err
		}
		return tx.SetRoutes("b", rb)
	})
	want := []Route{ra[1], ra[0], rb[0]}
	want[0].Node, want[1].Node, want[2].Node = "a", "a", "b"
	var got []Route
	s.View(context.Background(), func(tx Tx) (err error) { got, err = tx.ListRoutes(); return err })
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}

	err := s.Update(context.Background(), func(tx Tx) error { return tx.SetRoutes("nope", ra) })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("routes of an unknown node: %v, want ErrNotFound", err)
	}
	err = s.Update(context.Background(), func(tx Tx) error { return tx.SetRoutes("a", []Route{ra[1], ra[1]}) })
	if !errors.Is(err, ErrConflict) {
		t.Errorf("a prefix twice: %v, want ErrConflict", err)
	}

	update(t, s, func(tx Tx) error { return tx.SetRoutes("a", ra[:1]) })
	update(t, s, func(tx Tx) error { return tx.DeleteNode("b") })
	s.View(context.Background(), func(tx Tx) (err error) { got, err = tx.ListRoutes(); return err })
	if len(got) != 1 || got[0].Node != "a" || got[0].Prefix != ra[0].Prefix {
		t.Errorf("after withdrawing one of a's routes and deleting b: %+v", got)
	}
}
