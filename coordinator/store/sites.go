package store

import (
	"errors"
	"fmt"
)

const siteCols = `namespace, name, labels, cidrs, ports`

// PutSite implements Tx.
func (t *sqlTx) PutSite(s Site) error {
	what := fmt.Sprintf("site %q", s.Key())
	if s.Name == "" {
		return fmt.Errorf("%s: name is empty", what)
	}
	if err := t.requireNamespace(what, s.Namespace); err != nil {
		return err
	}
	labels, err := encJSON(what+": labels", s.Labels)
	if err != nil {
		return err
	}
	cidrs, err := encJSON(what+": cidrs", s.CIDRs)
	if err != nil {
		return err
	}
	ports, err := encJSON(what+": ports", s.Ports)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO sites (`+siteCols+`) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (namespace, name) DO UPDATE SET labels = excluded.labels, cidrs = excluded.cidrs, ports = excluded.ports`,
		s.Namespace, s.Name, labels, cidrs, ports)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// DeleteSite implements Tx.
func (t *sqlTx) DeleteSite(namespace, name string) error {
	res, err := t.exec(`DELETE FROM sites WHERE namespace = ? AND name = ?`, namespace, name)
	return deleted(fmt.Sprintf("site %q", namespace+"/"+name), res, err)
}

func scanSite(sc interface{ Scan(...any) error }) (Site, error) {
	var s Site
	var labels, cidrs, ports string
	if err := sc.Scan(&s.Namespace, &s.Name, &labels, &cidrs, &ports); err != nil {
		return Site{}, err
	}
	what := fmt.Sprintf("site %q", s.Key())
	err := errors.Join(decJSON(what+": labels", labels, &s.Labels),
		decJSON(what+": cidrs", cidrs, &s.CIDRs), decJSON(what+": ports", ports, &s.Ports))
	return s, err
}

// ListSites implements Tx.
func (t *sqlTx) ListSites() ([]Site, error) {
	return list(t, "listing sites", `SELECT `+siteCols+` FROM sites ORDER BY namespace, name`, scanSite)
}
