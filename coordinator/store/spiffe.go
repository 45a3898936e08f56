package store

import (
	"database/sql"
	"errors"
	"fmt"
)

const spiffeCols = `spiffe_id, name, status, first_seen, last_seen`

func scanSpiffeNode(sc interface{ Scan(...any) error }) (SpiffeNode, error) {
	var n SpiffeNode
	var first, last sql.NullInt64
	err := sc.Scan(&n.ID, &n.Name, &n.Status, &first, &last)
	n.FirstSeen, n.LastSeen = decTime(first), decTime(last)
	return n, err
}

// PutSpiffeNode implements Tx.
func (t *sqlTx) PutSpiffeNode(n SpiffeNode) error {
	if n.ID == "" || n.Name == "" {
		return errors.New("spiffe node: empty SPIFFE ID or name")
	}
	switch n.Status {
	case SpiffePending, SpiffeRejected, SpiffeAdmitted:
	default:
		return fmt.Errorf("spiffe node %s: unknown status %q", n.ID, n.Status)
	}
	first, err := encTime("spiffe node "+n.ID, n.FirstSeen)
	if err != nil {
		return err
	}
	last, err := encTime("spiffe node "+n.ID, n.LastSeen)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO spiffe_nodes (`+spiffeCols+`) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (spiffe_id) DO UPDATE SET name = excluded.name, status = excluded.status,
	first_seen = excluded.first_seen, last_seen = excluded.last_seen`, n.ID, n.Name, n.Status, first, last)
	if err != nil {
		return fmt.Errorf("spiffe node %s: %w", n.ID, err)
	}
	return nil
}

// GetSpiffeNode implements Tx.
func (t *sqlTx) GetSpiffeNode(id string) (SpiffeNode, error) {
	n, err := scanSpiffeNode(t.queryRow(`SELECT `+spiffeCols+` FROM spiffe_nodes WHERE spiffe_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return SpiffeNode{}, fmt.Errorf("spiffe node %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return SpiffeNode{}, fmt.Errorf("spiffe node %s: %w", id, err)
	}
	return n, nil
}

// ListSpiffeNodes implements Tx.
func (t *sqlTx) ListSpiffeNodes() ([]SpiffeNode, error) {
	return list(t, "listing spiffe nodes", `SELECT `+spiffeCols+` FROM spiffe_nodes ORDER BY spiffe_id`, scanSpiffeNode)
}

// DeleteSpiffeNode implements Tx.
func (t *sqlTx) DeleteSpiffeNode(id string) error {
	res, err := t.exec(`DELETE FROM spiffe_nodes WHERE spiffe_id = ?`, id)
	if err != nil {
		return fmt.Errorf("spiffe node %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("spiffe node %s: %w", id, ErrNotFound)
	}
	return nil
}
