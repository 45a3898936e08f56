package state

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
)

func TestSpiffeAdmission(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	m, err := spiffemap.New([]spiffemap.Entry{{ID: "spiffe://spire.test/prod/*", Namespace: "prod", Labels: map[string]string{"role": "server"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, e.db, fanout.New(), Options{Now: func() time.Time { return e.now }, SpiffeMap: m})
	if err != nil {
		t.Fatal(err)
	}

	// A mapped ID is admitted at once, with an address, and stays the same node.
	n, err := s.SpiffeNode(ctx, "spiffe://spire.test/prod/web")
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "web" || n.Namespace != "prod" || n.Labels["role"] != "server" || !n.IP.IsValid() {
		t.Fatalf("admitted node = %+v", n)
	}
	again, err := s.SpiffeNode(ctx, "spiffe://spire.test/prod/web")
	if err != nil || again.IP != n.IP {
		t.Fatalf("second call = %+v, %v", again, err)
	}
	if id, ok, _ := s.IsSpiffeNode(ctx, "web"); !ok || id != "spiffe://spire.test/prod/web" {
		t.Fatalf("IsSpiffeNode(web) = %q, %v", id, ok)
	}

	// An unmapped ID waits; it gets no node until approved.
	if _, err := s.SpiffeNode(ctx, "spiffe://spire.test/dev/laptop"); !errors.Is(err, ErrPending) {
		t.Fatalf("unmapped ID: %v, want ErrPending", err)
	}
	if _, err := s.SpiffeNode(ctx, "spiffe://spire.test/dev/laptop"); !errors.Is(err, ErrPending) {
		t.Fatalf("unmapped ID again: %v, want ErrPending", err)
	}
	var recs []store.SpiffeNode
	s.Read(ctx, func(tx store.Tx) error { recs, err = tx.ListSpiffeNodes(); return err })
	if len(recs) != 2 || recs[0].Status != store.SpiffePending || recs[0].Name != "laptop" {
		t.Fatalf("records = %+v", recs)
	}
	if _, err := s.ApproveSpiffeNode(ctx, "admin", "laptop", "Bad_NS", nil, grant.Set{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("approve into a bad namespace: %v", err)
	}
	ap, err := s.ApproveSpiffeNode(ctx, "admin", "laptop", "dev", map[string]string{"role": "client"}, grant.Set{})
	if err != nil {
		t.Fatal(err)
	}
	if ap.Namespace != "dev" || ap.Labels["role"] != "client" || ap.IP == n.IP {
		t.Fatalf("approved node = %+v", ap)
	}
	if got, err := s.SpiffeNode(ctx, "spiffe://spire.test/dev/laptop"); err != nil || got.Name != "laptop" {
		t.Fatalf("approved ID: %+v, %v", got, err)
	}
	if _, err := s.ApproveSpiffeNode(ctx, "admin", "laptop", "dev", nil, grant.Set{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("approving twice: %v", err)
	}

	// Reject removes an admitted node and refuses it from then on.
	if err := s.RejectSpiffeNode(ctx, "admin", "spiffe://spire.test/dev/laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SpiffeNode(ctx, "spiffe://spire.test/dev/laptop"); !errors.Is(err, ErrRejected) {
		t.Fatalf("rejected ID: %v", err)
	}
	s.Read(ctx, func(tx store.Tx) error { _, err = tx.GetNode("laptop"); return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the rejected node is still stored: %v", err)
	}

	// The name comes from the last path segment and may not collide.
	e.token("t1", 1)
	if _, err := s.Enroll(ctx, Enrollment{TokenID: "t1", SecretHash: []byte("h-t1"), Name: "db"}, e.sign); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SpiffeNode(ctx, "spiffe://spire.test/prod/db"); !errors.Is(err, ErrConflict) {
		t.Fatalf("a SPIFFE ID named like an enrolled node: %v", err)
	}
	if _, err := s.SpiffeNode(ctx, "spiffe://spire.test/prod/Not_A_Name"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an ID whose last segment is no node name: %v", err)
	}

	// Deleting a SPIRE node forgets its ID: the mapping admits it afresh.
	if err := s.DeleteNode(ctx, "admin", "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.IsSpiffeNode(ctx, "web"); ok {
		t.Fatal("the deleted node's SPIFFE ID is still admitted")
	}
	if _, err := s.SpiffeNode(ctx, "spiffe://spire.test/prod/web"); err != nil {
		t.Fatal(err)
	}

	var audit []store.AuditEntry
	s.Read(ctx, func(tx store.Tx) error { audit, err = tx.ListAudit(0); return err })
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	for _, want := range []string{"node.spiffe.admit", "node.spiffe.pending", "node.spiffe.reject"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("no audit entry %s in %v", want, actions)
		}
	}
}

// A pending or rejected ID that keeps knocking gets its LastSeen
// refreshed, at most every SpiffeSeenEvery and without an audit entry; an
// admin's decision is not undone by it.
func TestSpiffeSighting(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s, err := Open(ctx, e.db, fanout.New(), Options{Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://spire.test/dev/laptop"
	first := e.now
	record := func() (store.SpiffeNode, int) {
		var rec store.SpiffeNode
		var audit []store.AuditEntry
		s.Read(ctx, func(tx store.Tx) error {
			rec, _ = tx.GetSpiffeNode(id)
			audit, _ = tx.ListAudit(0)
			return nil
		})
		return rec, len(audit)
	}
	if _, err := s.SpiffeNode(ctx, id); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	_, audits := record()
	e.now = first.Add(SpiffeSeenEvery / 2)
	s.SpiffeNode(ctx, id)
	if rec, n := record(); !rec.LastSeen.Equal(first) || n != audits {
		t.Errorf("after half a period: last seen %v (want %v), %d audit entries (want %d)", rec.LastSeen, first, n, audits)
	}
	e.now = first.Add(2 * SpiffeSeenEvery)
	s.SpiffeNode(ctx, id)
	if rec, n := record(); !rec.LastSeen.Equal(e.now) || !rec.FirstSeen.Equal(first) || rec.Status != store.SpiffePending || n != audits {
		t.Errorf("after two periods: %+v, %d audit entries (want %d)", rec, n, audits)
	}
	if err := s.RejectSpiffeNode(ctx, "admin", id); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(2 * SpiffeSeenEvery)
	if _, err := s.SpiffeNode(ctx, id); !errors.Is(err, ErrRejected) {
		t.Fatal(err)
	}
	if rec, _ := record(); rec.Status != store.SpiffeRejected || !rec.LastSeen.Equal(e.now) {
		t.Errorf("a rejected ID seen again: %+v", rec)
	}
}
