package store

import (
	"errors"
	"testing"
	"time"
)

func TestGraceCertGoesWithItsNode(t *testing.T) {
	s, _ := openTest(t)
	until := time.Date(2026, 12, 3, 12, 2, 0, 0, time.UTC)
	update(t, s, func(tx Tx) error {
		if err := tx.PutNamespace(Namespace{Name: "prod", Mode: ModeEnforce}); err != nil {
			return err
		}
		if err := tx.PutGraceCert(GraceCert{Node: "ghost", Serial: "0a", Until: until}); !errors.Is(err, ErrNotFound) {
			t.Errorf("grace certificate of a node that does not exist: %v, want ErrNotFound", err)
		}
		if err := tx.PutNode(Node{Name: "n1", Namespace: "prod"}); err != nil {
			return err
		}
		if err := tx.PutGraceCert(GraceCert{Node: "n1", Serial: "00:0A", Until: until}); err != nil {
			return err
		}
		// A second renewal replaces the first.
		return tx.PutGraceCert(GraceCert{Node: "n1", Serial: "0B", Until: until.Add(time.Minute)})
	})
	view(t, s, func(tx Tx) error {
		g, err := tx.GetGraceCert("n1")
		if err != nil {
			return err
		}
		if g.Serial != "b" || !g.Until.Equal(until.Add(time.Minute)) {
			t.Errorf("grace certificate = %+v, want serial b until %v", g, until.Add(time.Minute))
		}
		return nil
	})
	update(t, s, func(tx Tx) error { return tx.DeleteNode("n1") })
	view(t, s, func(tx Tx) error {
		if _, err := tx.GetGraceCert("n1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after the node was deleted its grace certificate is still there: %v", err)
		}
		return nil
	})
	update(t, s, func(tx Tx) error { return tx.DeleteGraceCert("n1") })
}
