package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSpiffeNodes(t *testing.T) {
	s, _ := openTest(t)
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	a := SpiffeNode{ID: "spiffe://spire.test/prod/web", Name: "web", Status: SpiffePending, FirstSeen: now, LastSeen: now}
	b := SpiffeNode{ID: "spiffe://spire.test/dev/laptop", Name: "laptop", Status: SpiffeRejected, FirstSeen: now, LastSeen: now}
	update(t, s, func(tx Tx) error {
		if err := tx.PutSpiffeNode(a); err != nil {
			return err
		}
		return tx.PutSpiffeNode(b)
	})
	a.Status, a.LastSeen = SpiffeAdmitted, now.Add(time.Minute)
	update(t, s, func(tx Tx) error { return tx.PutSpiffeNode(a) })
	view(t, s, func(tx Tx) error {
		got, err := tx.GetSpiffeNode(a.ID)
		checkErr(t, err, nil)
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("GetSpiffeNode (-want +got):\n%s", diff)
		}
		all, err := tx.ListSpiffeNodes()
		checkErr(t, err, nil)
		if diff := cmp.Diff([]SpiffeNode{b, a}, all); diff != "" { // ordered by ID
			t.Errorf("ListSpiffeNodes (-want +got):\n%s", diff)
		}
		_, err = tx.GetSpiffeNode("spiffe://spire.test/none")
		checkErr(t, err, ErrNotFound)
		return nil
	})
	update(t, s, func(tx Tx) error { return tx.DeleteSpiffeNode(b.ID) })
	err := s.Update(t.Context(), func(tx Tx) error { return tx.DeleteSpiffeNode(b.ID) })
	checkErr(t, err, ErrNotFound)
	err = s.Update(t.Context(), func(tx Tx) error { return tx.PutSpiffeNode(SpiffeNode{ID: "spiffe://x/y", Name: "y", Status: "maybe"}) })
	if err == nil {
		t.Error("an unknown status was stored")
	}
}
