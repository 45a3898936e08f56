package store

import (
	"database/sql"
	"fmt"
	"net/netip"
)

const routeCols = `node, prefix, snat, status, advertised_at, decided_at, decided_by`

func scanRoute(sc interface{ Scan(...any) error }) (Route, error) {
	var r Route
	var prefix string
	var adv, dec sql.NullInt64
	if err := sc.Scan(&r.Node, &prefix, &r.SNAT, &r.Status, &adv, &dec, &r.DecidedBy); err != nil {
		return r, err
	}
	r.AdvertisedAt, r.DecidedAt = decTime(adv), decTime(dec)
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return r, fmt.Errorf("route %s of node %q: %w", prefix, r.Node, err)
	}
	r.Prefix = p
	return r, nil
}

// SetRoutes implements Tx.
func (t *sqlTx) SetRoutes(node string, rs []Route) error {
	what := fmt.Sprintf("routes of node %q", node)
	if _, err := t.GetNode(node); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM routes WHERE node = ?`, node); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, r := range rs {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("%s: invalid prefix", what)
		}
		switch r.Status {
		case RouteAdvertised, RouteApproved, RouteRejected:
		default:
			return fmt.Errorf("%s: route %s: unknown status %q", what, r.Prefix, r.Status)
		}
		adv, err := encTime(what, r.AdvertisedAt)
		if err != nil {
			return err
		}
		dec, err := encTime(what, r.DecidedAt)
		if err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO routes (`+routeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			node, r.Prefix.String(), r.SNAT, r.Status, adv, dec, r.DecidedBy); err != nil {
			if isUniqueViolation(err, "") {
				return fmt.Errorf("%s: %s given twice: %w", what, r.Prefix, ErrConflict)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// ListRoutes implements Tx.
func (t *sqlTx) ListRoutes() ([]Route, error) {
	return list(t, "listing routes", `SELECT `+routeCols+` FROM routes ORDER BY node, prefix`, scanRoute)
}
