package state

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
)

func site(ns, name string, labels map[string]string, cidrs ...string) store.Site {
	s := store.Site{Namespace: ns, Name: name, Labels: labels}
	for _, c := range cidrs {
		s.CIDRs = append(s.CIDRs, netip.MustParsePrefix(c))
	}
	return s
}

// siteTable is every stored site as "ns/name labels cidrs ports".
func (e *env) siteTable() []string {
	e.t.Helper()
	ss, err := e.s.Sites(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, s := range ss {
		out = append(out, fmt.Sprintf("%s %v %v %v", s.Key(), s.Labels, s.CIDRs, s.Ports))
	}
	return out
}

// siteAudit is every site.* audit entry, oldest first, as "actor action
// object detail".
func (e *env) siteAudit() []string {
	var out []string
	e.s.Read(context.Background(), func(tx store.Tx) error {
		es, err := tx.ListAudit(0)
		for i := len(es) - 1; i >= 0; i-- {
			if a := es[i]; strings.HasPrefix(a.Action, "site.") {
				out = append(out, a.Actor+" "+a.Action+" "+a.Object+" "+a.Detail)
			}
		}
		return err
	})
	return out
}

// TestSiteLifecycle: a site is declared (its namespace created), replaced,
// listed, evaluated by the what-if evaluator and deleted; each change is
// audited with the site before and after, and published as an event.
func TestSiteLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	w, stop := e.s.Watch()
	defer stop()
	db := site("site-eu", "db", map[string]string{"role": "db"}, "198.19.1.0/24")
	db.Ports = []inventory.Port{{Name: "postgres", Port: 5432}}
	got, err := e.s.PutSite(ctx, "alice", db)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ports[0].Protocol != inventory.TCP {
		t.Errorf("a port without protocol is stored as %q, want TCP", got.Ports[0].Protocol)
	}
	if _, err := e.s.PutSite(ctx, "alice", site("site-eu", "office", nil, "198.19.2.0/24", "198.19.4.0/25")); err != nil {
		t.Fatal(err)
	}
	e.wantSites("site-eu/db map[role:db] [198.19.1.0/24] [{postgres 5432 TCP}]",
		"site-eu/office map[] [198.19.2.0/24 198.19.4.0/25] []")
	e.s.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNamespace("site-eu"); err != nil {
			t.Errorf("the site's namespace was not created: %v", err)
		}
		return nil
	})

	// Replacing: new labels and a wider prefix that overlaps only its own
	// old one.
	if _, err := e.s.PutSite(ctx, "bob", site("site-eu", "db", map[string]string{"role": "db", "tier": "data"}, "198.19.0.0/24", "198.19.1.0/24")); err != nil {
		t.Fatal(err)
	}
	e.wantSites("site-eu/db map[role:db tier:data] [198.19.0.0/24 198.19.1.0/24] []",
		"site-eu/office map[] [198.19.2.0/24 198.19.4.0/25] []")

	_, _, sites, err := e.s.SiteEvaluator(ctx)
	if err != nil || len(sites) != 2 || sites[0].Key() != "site-eu/db" {
		t.Fatalf("the evaluator's sites: %v %v", sites, err)
	}

	if err := e.s.DeleteSite(ctx, "bob", "site-eu", "office"); err != nil {
		t.Fatal(err)
	}
	e.wantSites("site-eu/db map[role:db tier:data] [198.19.0.0/24 198.19.1.0/24] []")
	if err := e.s.DeleteSite(ctx, "bob", "site-eu", "office"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a site twice: %v, want not found", err)
	}

	want := []string{
		`alice site.put site-eu/db {"after":{"name":"db","namespace":"site-eu","labels":{"role":"db"},"cidrs":["198.19.1.0/24"],"ports":[{"name":"postgres","port":5432,"protocol":"TCP"}]}}`,
		`alice site.put site-eu/office {"after":{"name":"office","namespace":"site-eu","cidrs":["198.19.2.0/24","198.19.4.0/25"]}}`,
		`bob site.put site-eu/db {"after":{"name":"db","namespace":"site-eu","labels":{"role":"db","tier":"data"},"cidrs":["198.19.0.0/24","198.19.1.0/24"]},"before":{"name":"db","namespace":"site-eu","labels":{"role":"db"},"cidrs":["198.19.1.0/24"],"ports":[{"name":"postgres","port":5432,"protocol":"TCP"}]}}`,
		`bob site.delete site-eu/office {"before":{"name":"office","namespace":"site-eu","cidrs":["198.19.2.0/24","198.19.4.0/25"]}}`,
	}
	if diff := cmp.Diff(want, e.siteAudit()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	var events []string
	for len(events) < 4 {
		select {
		case ev := <-w.C:
			if strings.HasPrefix(ev.Action, "site.") {
				events = append(events, ev.Actor+" "+ev.Action+" "+ev.Object)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("events: %v, want 4 site events", events)
		}
	}
	if diff := cmp.Diff([]string{"alice site.put site-eu/db", "alice site.put site-eu/office", "bob site.put site-eu/db", "bob site.delete site-eu/office"}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// A namespace holding a site is not deleted under it.
	err = e.db.Update(ctx, func(tx store.Tx) error { return tx.DeleteNamespace("site-eu") })
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "1 sites") {
		t.Errorf("deleting the namespace of a site: %v, want a conflict naming the site", err)
	}
}

func (e *env) wantSites(want ...string) {
	e.t.Helper()
	if diff := cmp.Diff(want, e.siteTable()); diff != "" {
		e.t.Fatalf("sites (-want +got):\n%s", diff)
	}
}

// TestSiteRefusals: an invalid site, one overlapping another site or the
// overlay, and one named like a workload or a node are refused with a
// message saying what to do; nothing is half-applied (no site, no audit
// entry, no namespace created). Workloads and nodes named like a site are
// refused too.
func TestSiteRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.token("t", 2, grant.Workload{Namespace: "prod", Labels: map[string]string{"app": "db"}}, grant.Workload{Namespace: "site-eu"})
	e.enroll("t", "gw")
	e.register("gw", inventory.Workload{Name: "db", Namespace: "prod", Labels: map[string]string{"app": "db"}})
	if _, err := e.s.PutSite(ctx, "alice", site("site-eu", "db", nil, "198.19.1.0/24")); err != nil {
		t.Fatal(err)
	}
	before, audit := e.siteTable(), e.siteAudit()
	withPort := site("site-new", "x", nil, "198.19.9.0/24")
	withPort.Ports = []inventory.Port{{Port: 0, Protocol: "TCP"}}
	for _, c := range []struct {
		site store.Site
		err  error
		msg  string
	}{
		{site("site-new", "x", nil, "198.19.9.5/24"), ErrInvalid, "cidrs[0]: 198.19.9.5/24 is not a network address: write 198.19.9.0/24"},
		{site("site-new", "x", nil, "fd00::/64"), ErrInvalid, "is not IPv4"},
		{site("site-new", "x", nil, "0.0.0.0/0"), ErrInvalid, "overlaps the overlay range 100.64.0.0/10"},
		{site("site-new", "x", nil, "100.64.8.0/24"), ErrInvalid, "overlaps the overlay range"},
		{site("site-new", "x", nil), ErrInvalid, "cidrs: required"},
		{site("site-new", "x", nil, "198.19.9.0/24", "198.19.9.128/25"), ErrInvalid, "cidrs[1]: 198.19.9.128/25 overlaps 198.19.9.0/24 (cidrs[0])"},
		{site("site-new", "X_", nil, "198.19.9.0/24"), ErrInvalid, "name: \"X_\""},
		{site("Bad_NS", "x", nil, "198.19.9.0/24"), ErrInvalid, "namespace: \"Bad_NS\""},
		{site("site-new", "x", map[string]string{"a": "not ok"}, "198.19.9.0/24"), ErrInvalid, "labels[a]"},
		{withPort, ErrInvalid, "ports[0].port: must be between 1 and 65535"},
		{site("site-new", "x", nil, "198.19.0.0/16"), ErrConflict, "198.19.0.0/16 overlaps 198.19.1.0/24 of site site-eu/db"},
		{site("site-new", "x", nil, "198.19.1.128/25"), ErrConflict, "overlaps 198.19.1.0/24 of site site-eu/db"},
		{site("prod", "db", nil, "198.19.9.0/24"), ErrConflict, "prod/db is already the name of a workload of node gw"},
		{site("prod", "gw", nil, "198.19.9.0/24"), ErrConflict, "prod/gw is already the name of a node"},
	} {
		_, err := e.s.PutSite(ctx, "alice", c.site)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %v: %v, want %v with %q", c.site.Key(), c.site.CIDRs, err, c.err, c.msg)
		}
	}
	if diff := cmp.Diff(before, e.siteTable()); diff != "" {
		t.Errorf("a refused site changed the sites (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(audit, e.siteAudit()); diff != "" {
		t.Errorf("a refused site was audited (-before +after):\n%s", diff)
	}
	e.s.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNamespace("site-new"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused site created its namespace: %v", err)
		}
		return nil
	})

	// The other way round: a workload or a node named like a site.
	if _, _, err := e.s.Register(ctx, "gw", Registration{PublicKey: "key-gw",
		Workloads: []inventory.Workload{{Name: "db", Namespace: "site-eu"}}}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "site-eu/db is already the name of a site") {
		t.Errorf("a workload named like a site: %v, want a conflict", err)
	}
	if err := e.s.AddToken(ctx, "admin", store.Token{ID: "t3", SecretHash: []byte("h-t3"), Namespace: "site-eu",
		UsesLeft: 1, ExpiresAt: e.now.Add(time.Hour), CreatedAt: e.now}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Enroll(ctx, Enrollment{TokenID: "t3", SecretHash: []byte("h-t3"), Name: "db"}, e.sign); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "site-eu/db is already the name of a site") {
		t.Errorf("a node named like a site: %v, want a conflict", err)
	}
}

// TestSiteOutsideThePool: a coordinator with its own overlay pool refuses
// a site inside it.
func TestSiteOutsideThePool(t *testing.T) {
	db, err := store.OpenSQLite(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := Open(context.Background(), db, fanout.New(), Options{Pool: netip.MustParsePrefix("10.99.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.PutSite(context.Background(), "alice", site("site-eu", "db", nil, "10.99.8.0/24"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "10.99.8.0/24 overlaps the overlay pool 10.99.0.0/16") {
		t.Fatalf("a site inside the pool: %v", err)
	}
}
