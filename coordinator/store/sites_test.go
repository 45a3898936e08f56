package store

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/inventory"
)

// TestSitesRoundTrip: PutSite creates and replaces sites, which read back
// as written, ordered by namespace, name; a missing namespace is
// ErrNotFound; deleting a missing site is ErrNotFound; a namespace holding
// a site is not deleted.
func TestSitesRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	db := Site{Namespace: "site-eu", Name: "db", Labels: map[string]string{"role": "db"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}, Ports: []inventory.Port{{Name: "postgres", Port: 5432, Protocol: inventory.TCP}}}
	office := Site{Namespace: "site-eu", Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.2.0/24"), netip.MustParsePrefix("198.19.4.0/25")}}
	if err := s.Update(ctx, func(tx Tx) error { return tx.PutSite(db) }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a site in a missing namespace: %v, want not found", err)
	}
	update(t, s, func(tx Tx) error {
		if err := tx.PutNamespace(Namespace{Name: "site-eu", Mode: ModeEnforce}); err != nil {
			return err
		}
		if err := tx.PutSite(office); err != nil {
			return err
		}
		db.Labels["tier"] = "data"
		if err := tx.PutSite(Site{Namespace: "site-eu", Name: "db", CIDRs: db.CIDRs}); err != nil {
			return err
		}
		return tx.PutSite(db) // replaces the one before
	})
	var got []Site
	view(t, s, func(tx Tx) (err error) { got, err = tx.ListSites(); return err })
	if diff := cmp.Diff([]Site{db, office}, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("sites (-want +got):\n%s", diff)
	}
	if err := s.Update(ctx, func(tx Tx) error { return tx.DeleteNamespace("site-eu") }); !errors.Is(err, ErrConflict) {
		t.Errorf("deleting the namespace of sites: %v, want conflict", err)
	}
	update(t, s, func(tx Tx) error { return tx.DeleteSite("site-eu", "office") })
	if err := s.Update(ctx, func(tx Tx) error { return tx.DeleteSite("site-eu", "office") }); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a missing site: %v, want not found", err)
	}
	view(t, s, func(tx Tx) (err error) { got, err = tx.ListSites(); return err })
	if len(got) != 1 || got[0].Key() != "site-eu/db" {
		t.Errorf("after delete: %+v", got)
	}
}
