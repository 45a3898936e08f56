package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
)

// sqlTx implements Tx on a database/sql transaction. The SQL is kept to
// what SQLite and PostgreSQL share, apart from the '?' placeholders.
type sqlTx struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts *stmtCache // may be nil
	// misses are queries run unprepared; runTx prepares them once the
	// transaction has ended and its connection is free again.
	misses []string
}

var _ Tx = (*sqlTx)(nil)

// stmtCache keeps the prepared statements of one *sql.DB, so that a query
// is parsed once per connection rather than once per call. database/sql
// keeps, for each statement, its preparation on each connection.
//
// A statement is prepared only when no transaction of the caller holds a
// connection: the writer has a single connection, so preparing on the DB
// from inside an Update would wait for itself.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt // guarded by mu
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

// prepare prepares the queries not yet in the cache. The caller must not
// hold a connection of c.db. Errors are ignored: the query then keeps
// running unprepared, and reports its error there.
func (c *stmtCache) prepare(ctx context.Context, qs []string) {
	for _, q := range qs {
		if c.get(q) != nil {
			continue
		}
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if c.m == nil || c.m[q] != nil {
			st.Close() // closed, or prepared meanwhile by another View
		} else {
			c.m[q] = st
		}
		c.mu.Unlock()
	}
}

// close closes every statement; the cache must no longer be used.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m = nil
	return errors.Join(errs...)
}

// prepared returns q as a statement of t's transaction, or nil if q is not
// prepared yet (then the caller runs q directly).
func (t *sqlTx) prepared(q string) *sql.Stmt {
	if t.stmts == nil {
		return nil
	}
	if st := t.stmts.get(q); st != nil {
		return t.tx.StmtContext(t.ctx, st)
	}
	t.misses = append(t.misses, q)
	return nil
}

func (t *sqlTx) exec(q string, args ...any) (sql.Result, error) {
	if st := t.prepared(q); st != nil {
		return st.ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, q, args...)
}

func (t *sqlTx) query(q string, args ...any) (*sql.Rows, error) {
	if st := t.prepared(q); st != nil {
		return st.QueryContext(t.ctx, args...)
	}
	return t.tx.QueryContext(t.ctx, q, args...)
}

func (t *sqlTx) queryRow(q string, args ...any) *sql.Row {
	if st := t.prepared(q); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, q, args...)
}

// exists reports whether q returns a row.
func (t *sqlTx) exists(q string, args ...any) (bool, error) {
	var one int
	err := t.queryRow(q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// deleted turns the result of a DELETE or UPDATE into ErrNotFound when it
// touched no row.
func deleted(what string, res sql.Result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// savepoint runs fn so that, if it fails, none of its writes remain even
// if the caller goes on to commit the transaction.
func (t *sqlTx) savepoint(name string, fn func() error) error {
	if _, err := t.exec("SAVEPOINT " + name); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rerr := t.exec("ROLLBACK TO SAVEPOINT " + name); rerr != nil {
			return errors.Join(err, rerr)
		}
		if _, rerr := t.exec("RELEASE SAVEPOINT " + name); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	_, err := t.exec("RELEASE SAVEPOINT " + name)
	return err
}

func (t *sqlTx) requireNamespace(what, ns string) error {
	ok, err := t.exists(`SELECT 1 FROM namespaces WHERE name = ?`, ns)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !ok {
		return fmt.Errorf("%s: namespace %q does not exist: create it first: %w", what, ns, ErrNotFound)
	}
	return nil
}

// ---- namespaces

// PutNamespace implements Tx.
func (t *sqlTx) PutNamespace(ns Namespace) error {
	what := fmt.Sprintf("namespace %q", ns.Name)
	if ns.Name == "" {
		return errors.New("namespace: name is empty")
	}
	if ns.Mode != ModeEnforce && ns.Mode != ModeMonitor {
		return fmt.Errorf("%s: mode %q is not %q or %q", what, ns.Mode, ModeEnforce, ModeMonitor)
	}
	labels, err := encJSON(what+": labels", ns.Labels)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO namespaces (name, labels, mode) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, mode = excluded.mode`, ns.Name, labels, ns.Mode)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func scanNamespace(sc interface{ Scan(...any) error }) (Namespace, error) {
	var ns Namespace
	var labels string
	if err := sc.Scan(&ns.Name, &labels, &ns.Mode); err != nil {
		return Namespace{}, err
	}
	err := decJSON(fmt.Sprintf("namespace %q: labels", ns.Name), labels, &ns.Labels)
	return ns, err
}

// GetNamespace implements Tx.
func (t *sqlTx) GetNamespace(name string) (Namespace, error) {
	ns, err := scanNamespace(t.queryRow(`SELECT name, labels, mode FROM namespaces WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Namespace{}, fmt.Errorf("namespace %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Namespace{}, fmt.Errorf("namespace %q: %w", name, err)
	}
	return ns, nil
}

// ListNamespaces implements Tx.
func (t *sqlTx) ListNamespaces() ([]Namespace, error) {
	return list(t, "listing namespaces", `SELECT name, labels, mode FROM namespaces ORDER BY name`, scanNamespace)
}

// list runs q and scans every row with scan.
func list[T any](t *sqlTx, what, q string, scan func(interface{ Scan(...any) error }) (T, error), args ...any) ([]T, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// DeleteNamespace implements Tx.
func (t *sqlTx) DeleteNamespace(name string) error {
	what := fmt.Sprintf("namespace %q", name)
	var nodes, workloads, policies, sites int
	err := t.queryRow(`SELECT
	(SELECT COUNT(*) FROM nodes WHERE namespace = ?),
	(SELECT COUNT(*) FROM workloads WHERE namespace = ?),
	(SELECT COUNT(*) FROM policies WHERE namespace = ?),
	(SELECT COUNT(*) FROM sites WHERE namespace = ?)`, name, name, name, name).Scan(&nodes, &workloads, &policies, &sites)
	if err != nil {
		return fmt.Errorf("deleting %s: %w", what, err)
	}
	if sites > 0 && nodes+workloads+policies == 0 {
		return fmt.Errorf("deleting %s: it still holds %d sites: delete them first: %w", what, sites, ErrConflict)
	}
	if nodes+workloads+policies > 0 {
		return fmt.Errorf("deleting %s: it still holds %d nodes, %d workloads and %d policies: delete them first: %w",
			what, nodes, workloads, policies, ErrConflict)
	}
	res, err := t.exec(`DELETE FROM namespaces WHERE name = ?`, name)
	return deleted(what, res, err)
}

// ---- nodes

const nodeCols = `name, namespace, labels, ip, public_key, endpoints, ports, cert_serial, created_at, last_seen, cert_expires`

// PutNode implements Tx.
func (t *sqlTx) PutNode(n Node) error {
	what := fmt.Sprintf("node %q", n.Name)
	if n.Name == "" {
		return errors.New("node: name is empty")
	}
	if err := t.requireNamespace(what, n.Namespace); err != nil {
		return err
	}
	labels, err := encJSON(what+": labels", n.Labels)
	if err != nil {
		return err
	}
	endpoints, err := encJSON(what+": endpoints", n.Endpoints)
	if err != nil {
		return err
	}
	ports, err := encJSON(what+": ports", n.Ports)
	if err != nil {
		return err
	}
	created, err := encTime(what+": created", n.CreatedAt)
	if err != nil {
		return err
	}
	seen, err := encTime(what+": last seen", n.LastSeen)
	if err != nil {
		return err
	}
	certExpires, err := encTime(what+": certificate expiry", n.CertExpires)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO nodes (`+nodeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET namespace = excluded.namespace, labels = excluded.labels, ip = excluded.ip,
	public_key = excluded.public_key, endpoints = excluded.endpoints, ports = excluded.ports,
	cert_serial = excluded.cert_serial, created_at = excluded.created_at, last_seen = excluded.last_seen,
	cert_expires = excluded.cert_expires`,
		n.Name, n.Namespace, labels, encAddr(n.IP), n.PublicKey, endpoints, ports, n.CertSerial, created, seen, certExpires)
	if isUniqueViolation(err, "nodes.public_key") {
		var other string
		_ = t.queryRow(`SELECT name FROM nodes WHERE public_key = ? AND name <> ?`, n.PublicKey, n.Name).Scan(&other)
		return fmt.Errorf("%s: the WireGuard public key %s is already registered by node %q: every node needs its own key (a copied state directory?): %w", what, n.PublicKey, other, ErrConflict)
	}
	if isUniqueViolation(err, "nodes.ip") {
		var other string
		_ = t.queryRow(`SELECT name FROM nodes WHERE ip = ?`, encAddr(n.IP)).Scan(&other)
		return fmt.Errorf("%s: address %s is already used by node %q: %w", what, n.IP, other, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func scanNode(sc interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var labels, ip, endpoints, ports string
	var created, seen, certExpires sql.NullInt64
	if err := sc.Scan(&n.Name, &n.Namespace, &labels, &ip, &n.PublicKey, &endpoints, &ports, &n.CertSerial, &created, &seen, &certExpires); err != nil {
		return Node{}, err
	}
	what := fmt.Sprintf("node %q", n.Name)
	var err error
	if n.IP, err = decAddr(what, ip); err != nil {
		return Node{}, err
	}
	err = errors.Join(
		decJSON(what+": labels", labels, &n.Labels),
		decJSON(what+": endpoints", endpoints, &n.Endpoints),
		decJSON(what+": ports", ports, &n.Ports))
	n.CreatedAt, n.LastSeen, n.CertExpires = decTime(created), decTime(seen), decTime(certExpires)
	return n, err
}

// GetNode implements Tx.
func (t *sqlTx) GetNode(name string) (Node, error) {
	n, err := scanNode(t.queryRow(`SELECT `+nodeCols+` FROM nodes WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("node %q: %w", name, err)
	}
	return n, nil
}

// ListNodes implements Tx.
func (t *sqlTx) ListNodes() ([]Node, error) {
	return list(t, "listing nodes", `SELECT `+nodeCols+` FROM nodes ORDER BY name`, scanNode)
}

// DeleteNode implements Tx.
func (t *sqlTx) DeleteNode(name string) error {
	// Workloads go with it: ON DELETE CASCADE.
	res, err := t.exec(`DELETE FROM nodes WHERE name = ?`, name)
	return deleted(fmt.Sprintf("node %q", name), res, err)
}

// ---- grants

// GetGrants implements Tx.
func (t *sqlTx) GetGrants(node string) (grant.Set, error) {
	what := fmt.Sprintf("grants of node %q", node)
	var ws, ids string
	err := t.queryRow(`SELECT workloads, workload_ids FROM node_grants WHERE node = ?`, node).Scan(&ws, &ids)
	if errors.Is(err, sql.ErrNoRows) {
		return grant.Set{}, nil
	}
	if err != nil {
		return grant.Set{}, fmt.Errorf("%s: %w", what, err)
	}
	var g grant.Set
	return g, errors.Join(decJSON(what+": workloads", ws, &g.Workloads), decJSON(what+": workload IDs", ids, &g.WorkloadIDs))
}

// PutGrants implements Tx.
func (t *sqlTx) PutGrants(node string, g grant.Set) error {
	what := fmt.Sprintf("grants of node %q", node)
	ws, err := encJSON(what+": workloads", g.Workloads)
	if err != nil {
		return err
	}
	ids, err := encJSON(what+": workload IDs", g.WorkloadIDs)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO node_grants (node, workloads, workload_ids) VALUES (?, ?, ?)
ON CONFLICT (node) DO UPDATE SET workloads = excluded.workloads, workload_ids = excluded.workload_ids`, node, ws, ids)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ---- workloads

// SetWorkloads implements Tx.
func (t *sqlTx) SetWorkloads(node string, ws []Workload) error {
	what := fmt.Sprintf("workloads of node %q", node)
	ok, err := t.exists(`SELECT 1 FROM nodes WHERE name = ?`, node)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !ok {
		return fmt.Errorf("%s: node %q: %w", what, node, ErrNotFound)
	}
	type row struct {
		ns, name, labels, ip, ports string
	}
	rows := make([]row, 0, len(ws))
	seen := make(map[string]bool, len(ws))
	for i := range ws {
		w := &ws[i]
		wwhat := fmt.Sprintf("%s: workload %q", what, w.Key())
		if w.Name == "" || w.Namespace == "" {
			return fmt.Errorf("%s: workload %d: name and namespace must be set", what, i)
		}
		if w.Node != "" && w.Node != node {
			return fmt.Errorf("%s: it names node %q", wwhat, w.Node)
		}
		if seen[w.Key()] {
			return fmt.Errorf("%s: listed twice: %w", wwhat, ErrConflict)
		}
		seen[w.Key()] = true
		labels, err := encJSON(wwhat+": labels", w.Labels)
		if err != nil {
			return err
		}
		ports, err := encJSON(wwhat+": ports", w.Ports)
		if err != nil {
			return err
		}
		rows = append(rows, row{w.Namespace, w.Name, labels, encAddr(w.IP), ports})
	}
	return t.savepoint("set_workloads", func() error {
		if _, err := t.exec(`DELETE FROM workloads WHERE node = ?`, node); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		namespaces := map[string]bool{}
		for _, r := range rows {
			wwhat := fmt.Sprintf("%s: workload %q", what, r.ns+"/"+r.name)
			if !namespaces[r.ns] {
				if err := t.requireNamespace(wwhat, r.ns); err != nil {
					return err
				}
				namespaces[r.ns] = true
			}
			var other string
			err := t.queryRow(`SELECT node FROM workloads WHERE namespace = ? AND name = ?`, r.ns, r.name).Scan(&other)
			if err == nil {
				return fmt.Errorf("%s: it belongs to node %q: %w", wwhat, other, ErrConflict)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s: %w", wwhat, err)
			}
			_, err = t.exec(`INSERT INTO workloads (namespace, name, node, labels, ip, ports) VALUES (?, ?, ?, ?, ?, ?)`,
				r.ns, r.name, node, r.labels, r.ip, r.ports)
			if isUniqueViolation(err, "workloads.ip") {
				var ons, oname string
				_ = t.queryRow(`SELECT namespace, name FROM workloads WHERE ip = ?`, r.ip).Scan(&ons, &oname)
				return fmt.Errorf("%s: address %s is already used by workload %q: %w", wwhat, r.ip, ons+"/"+oname, ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", wwhat, err)
			}
		}
		return nil
	})
}

func scanWorkload(sc interface{ Scan(...any) error }) (Workload, error) {
	var w Workload
	var labels, ip, ports string
	if err := sc.Scan(&w.Namespace, &w.Name, &w.Node, &labels, &ip, &ports); err != nil {
		return Workload{}, err
	}
	what := fmt.Sprintf("workload %q", w.Key())
	var err error
	if w.IP, err = decAddr(what, ip); err != nil {
		return Workload{}, err
	}
	var ps []inventory.Port
	err = errors.Join(decJSON(what+": labels", labels, &w.Labels), decJSON(what+": ports", ports, &ps))
	w.Ports = ps
	return w, err
}

// ListWorkloads implements Tx.
func (t *sqlTx) ListWorkloads() ([]Workload, error) {
	return list(t, "listing workloads",
		`SELECT namespace, name, node, labels, ip, ports FROM workloads ORDER BY namespace, name`, scanWorkload)
}

// ---- policies

// PutPolicy implements Tx.
func (t *sqlTx) PutPolicy(p Policy) error {
	what := fmt.Sprintf("policy %q", p.Namespace+"/"+p.Name)
	if p.Name == "" {
		return fmt.Errorf("%s: name is empty", what)
	}
	if err := t.requireNamespace(what, p.Namespace); err != nil {
		return err
	}
	updated, err := encTime(what+": updated", p.UpdatedAt)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO policies (namespace, name, yaml, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, name) DO UPDATE SET yaml = excluded.yaml, updated_at = excluded.updated_at`,
		p.Namespace, p.Name, p.YAML, updated)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// DeletePolicy implements Tx.
func (t *sqlTx) DeletePolicy(namespace, name string) error {
	res, err := t.exec(`DELETE FROM policies WHERE namespace = ? AND name = ?`, namespace, name)
	return deleted(fmt.Sprintf("policy %q", namespace+"/"+name), res, err)
}

// ListPolicies implements Tx.
func (t *sqlTx) ListPolicies() ([]Policy, error) {
	return list(t, "listing policies", `SELECT namespace, name, yaml, updated_at FROM policies ORDER BY namespace, name`,
		func(sc interface{ Scan(...any) error }) (Policy, error) {
			var p Policy
			var updated sql.NullInt64
			err := sc.Scan(&p.Namespace, &p.Name, &p.YAML, &updated)
			p.UpdatedAt = decTime(updated)
			return p, err
		})
}

// ---- join tokens

const tokenCols = `id, secret_hash, namespace, labels, uses_left, expires_at, created_at, revoked, workloads`

// PutToken implements Tx.
func (t *sqlTx) PutToken(tok Token) error {
	what := fmt.Sprintf("token %s", tok.ID)
	switch {
	case tok.ID == "":
		return errors.New("token: ID is empty")
	case len(tok.SecretHash) == 0:
		return fmt.Errorf("%s: secret hash is empty", what)
	case tok.UsesLeft < 0:
		return fmt.Errorf("%s: uses left is %d, must not be negative", what, tok.UsesLeft)
	case tok.ExpiresAt.IsZero():
		return fmt.Errorf("%s: no expiry time: a join token must expire", what)
	}
	labels, err := encJSON(what+": labels", tok.Labels)
	if err != nil {
		return err
	}
	workloads, err := encJSON(what+": workloads", tok.Workloads)
	if err != nil {
		return err
	}
	expires, err := encTime(what+": expiry", tok.ExpiresAt)
	if err != nil {
		return err
	}
	created, err := encTime(what+": created", tok.CreatedAt)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash, namespace = excluded.namespace,
	labels = excluded.labels, uses_left = excluded.uses_left, expires_at = excluded.expires_at,
	created_at = excluded.created_at, revoked = excluded.revoked, workloads = excluded.workloads`,
		tok.ID, tok.SecretHash, tok.Namespace, labels, tok.UsesLeft, expires, created, tok.Revoked, workloads)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func scanToken(sc interface{ Scan(...any) error }) (Token, error) {
	var tok Token
	var labels, workloads string
	var expires, created sql.NullInt64
	if err := sc.Scan(&tok.ID, &tok.SecretHash, &tok.Namespace, &labels, &tok.UsesLeft, &expires, &created, &tok.Revoked, &workloads); err != nil {
		return Token{}, err
	}
	tok.ExpiresAt, tok.CreatedAt = decTime(expires), decTime(created)
	return tok, errors.Join(decJSON(fmt.Sprintf("token %s: labels", tok.ID), labels, &tok.Labels),
		decJSON(fmt.Sprintf("token %s: workloads", tok.ID), workloads, &tok.Workloads))
}

// ListTokens implements Tx.
func (t *sqlTx) ListTokens() ([]Token, error) {
	return list(t, "listing tokens", `SELECT `+tokenCols+` FROM tokens ORDER BY id`, scanToken)
}

// RevokeToken implements Tx.
func (t *sqlTx) RevokeToken(id string) error {
	res, err := t.exec(`UPDATE tokens SET revoked = ? WHERE id = ?`, true, id)
	return deleted(fmt.Sprintf("revoking token %s", id), res, err)
}

// dummyHash is compared against when the token does not exist, so that an
// unknown id costs the same compare as a wrong secret.
var dummyHash = make([]byte, 32)

// ConsumeToken implements Tx.
func (t *sqlTx) ConsumeToken(id string, secretHash []byte, now time.Time) (Token, error) {
	tok, err := t.CheckToken(id, secretHash, now)
	if err != nil {
		return Token{}, err
	}
	// The condition makes the decrement safe even where writers are not
	// serialized.
	res, err := t.exec(`UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0`, id)
	if err != nil {
		return Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return Token{}, fmt.Errorf("token %s has already been used: create a new one with `latch admin token create`: %w", id, ErrTokenUsed)
	}
	return tok, nil
}

// CheckToken implements Tx.
func (t *sqlTx) CheckToken(id string, secretHash []byte, now time.Time) (Token, error) {
	// One message for an unknown id and a wrong secret: without the secret
	// nobody learns whether the id exists.
	invalid := fmt.Errorf("token %s does not exist or its secret is wrong: check the token, or create one with `latch admin token create`: %w", id, ErrNotFound)
	tok, err := scanToken(t.queryRow(`SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		subtle.ConstantTimeCompare(dummyHash, secretHash)
		return Token{}, invalid
	}
	if err != nil {
		return Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare(tok.SecretHash, secretHash) != 1 {
		return Token{}, invalid
	}
	switch {
	case tok.Revoked:
		return Token{}, fmt.Errorf("token %s was revoked: create a new one with `latch admin token create`: %w", id, ErrTokenRevoked)
	case !now.Before(tok.ExpiresAt):
		return Token{}, fmt.Errorf("token %s has expired at %s: create a new one with `latch admin token create`: %w",
			id, tok.ExpiresAt.Format(time.RFC3339), ErrTokenExpired)
	case tok.UsesLeft <= 0:
		return Token{}, fmt.Errorf("token %s has already been used: create a new one with `latch admin token create`: %w", id, ErrTokenUsed)
	}
	return tok, nil
}

// ---- certificate revocation

// canonSerial returns the canonical form of a hex serial: lower case, no
// colons, no leading zeros, so that one serial has one spelling.
func canonSerial(serial string) (string, error) {
	s := strings.ToLower(strings.ReplaceAll(serial, ":", ""))
	if s == "" {
		return "", errors.New("certificate serial is empty")
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("certificate serial %q is not hexadecimal", serial)
		}
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		s = "0"
	}
	return s, nil
}

// RevokeSerial implements Tx.
func (t *sqlTx) RevokeSerial(serial string, at time.Time) error {
	s, err := canonSerial(serial)
	if err != nil {
		return fmt.Errorf("revoking certificate: %w", err)
	}
	when, err := encTime("revoking certificate "+s, at)
	if err != nil {
		return err
	}
	if _, err := t.exec(`INSERT INTO revoked_serials (serial, revoked_at) VALUES (?, ?) ON CONFLICT (serial) DO NOTHING`, s, when); err != nil {
		return fmt.Errorf("revoking certificate %s: %w", s, err)
	}
	return nil
}

// IsRevoked implements Tx.
func (t *sqlTx) IsRevoked(serial string) (bool, error) {
	s, err := canonSerial(serial)
	if err != nil {
		return false, fmt.Errorf("checking revocation: %w", err)
	}
	ok, err := t.exists(`SELECT 1 FROM revoked_serials WHERE serial = ?`, s)
	if err != nil {
		return false, fmt.Errorf("checking revocation of certificate %s: %w", s, err)
	}
	return ok, nil
}

// ---- certificates in their grace after a renewal

// PutGraceCert implements Tx.
func (t *sqlTx) PutGraceCert(g GraceCert) error {
	what := fmt.Sprintf("previous certificate of node %q", g.Node)
	s, err := canonSerial(g.Serial)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if g.Until.IsZero() {
		return fmt.Errorf("%s: no end of grace", what)
	}
	until, err := encTime(what, g.Until)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO grace_certs (node, serial, until) VALUES (?, ?, ?)
ON CONFLICT (node) DO UPDATE SET serial = excluded.serial, until = excluded.until`, g.Node, s, until)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("%s: node %q: %w", what, g.Node, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// GetGraceCert implements Tx.
func (t *sqlTx) GetGraceCert(node string) (GraceCert, error) {
	g := GraceCert{Node: node}
	var until sql.NullInt64
	err := t.queryRow(`SELECT serial, until FROM grace_certs WHERE node = ?`, node).Scan(&g.Serial, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return GraceCert{}, fmt.Errorf("previous certificate of node %q: %w", node, ErrNotFound)
	}
	if err != nil {
		return GraceCert{}, fmt.Errorf("previous certificate of node %q: %w", node, err)
	}
	g.Until = decTime(until)
	return g, nil
}

// DeleteGraceCert implements Tx.
func (t *sqlTx) DeleteGraceCert(node string) error {
	if _, err := t.exec(`DELETE FROM grace_certs WHERE node = ?`, node); err != nil {
		return fmt.Errorf("forgetting the previous certificate of node %q: %w", node, err)
	}
	return nil
}

// ---- audit

// AppendAudit implements Tx.
func (t *sqlTx) AppendAudit(e AuditEntry) (int64, error) {
	when, err := encTime("audit entry", e.Time)
	if err != nil {
		return 0, err
	}
	var id int64
	err = t.queryRow(`INSERT INTO audit (time, actor, action, object, detail) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		when, e.Actor, e.Action, e.Object, e.Detail).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("appending audit entry: %w", err)
	}
	return id, nil
}

// ListAudit implements Tx.
func (t *sqlTx) ListAudit(limit int) ([]AuditEntry, error) {
	q := `SELECT id, time, actor, action, object, detail FROM audit ORDER BY id DESC`
	var args []any
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return list(t, "listing audit entries", q, func(sc interface{ Scan(...any) error }) (AuditEntry, error) {
		var e AuditEntry
		var when sql.NullInt64
		err := sc.Scan(&e.ID, &when, &e.Actor, &e.Action, &e.Object, &e.Detail)
		e.Time = decTime(when)
		return e, err
	}, args...)
}

// PruneAudit implements Tx.
func (t *sqlTx) PruneAudit(before time.Time, maxRows int) (int64, error) {
	var n int64
	res, err := t.exec(`DELETE FROM audit WHERE time < ?`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("pruning the audit log: %w", err)
	}
	if k, err := res.RowsAffected(); err == nil {
		n += k
	}
	if maxRows > 0 {
		res, err := t.exec(`DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)`, maxRows)
		if err != nil {
			return n, fmt.Errorf("pruning the audit log: %w", err)
		}
		if k, err := res.RowsAffected(); err == nil {
			n += k
		}
	}
	return n, nil
}

// ---- meta

// GetMeta implements Tx.
func (t *sqlTx) GetMeta(key string) (string, error) {
	var v string
	err := t.queryRow(`SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("meta %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("meta %q: %w", key, err)
	}
	return v, nil
}

// PutMeta implements Tx.
func (t *sqlTx) PutMeta(key, value string) error {
	if key == "" {
		return errors.New("meta: key is empty")
	}
	_, err := t.exec(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("meta %q: %w", key, err)
	}
	return nil
}

// ---- users, sessions, API tokens

const userCols = `name, role, password_hash, created_at`

// PutUser implements Tx.
func (t *sqlTx) PutUser(u User) error {
	what := fmt.Sprintf("user %q", u.Name)
	switch {
	case u.Name == "":
		return errors.New("user: name is empty")
	case u.Role == "":
		return fmt.Errorf("%s: role is empty", what)
	case u.PasswordHash == "":
		return fmt.Errorf("%s: password hash is empty", what)
	}
	created, err := encTime(what+": created", u.CreatedAt)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, created_at = excluded.created_at`,
		u.Name, u.Role, u.PasswordHash, created)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var u User
	var created sql.NullInt64
	err := sc.Scan(&u.Name, &u.Role, &u.PasswordHash, &created)
	u.CreatedAt = decTime(created)
	return u, err
}

// GetUser implements Tx.
func (t *sqlTx) GetUser(name string) (User, error) {
	u, err := scanUser(t.queryRow(`SELECT `+userCols+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

// ListUsers implements Tx.
func (t *sqlTx) ListUsers() ([]User, error) {
	return list(t, "listing users", `SELECT `+userCols+` FROM users ORDER BY name`, scanUser)
}

// DeleteUser implements Tx.
func (t *sqlTx) DeleteUser(name string) error {
	// Sessions go with it: ON DELETE CASCADE.
	res, err := t.exec(`DELETE FROM users WHERE name = ?`, name)
	return deleted(fmt.Sprintf("user %q", name), res, err)
}

const sessionCols = `id_hash, user_name, csrf, created_at, expires_at`

// PutSession implements Tx.
func (t *sqlTx) PutSession(s Session) error {
	what := fmt.Sprintf("session of user %q", s.User)
	switch {
	case len(s.IDHash) == 0:
		return fmt.Errorf("%s: id hash is empty", what)
	case s.CSRF == "":
		return fmt.Errorf("%s: csrf token is empty", what)
	case s.ExpiresAt.IsZero():
		return fmt.Errorf("%s: no expiry time: a session must expire", what)
	}
	if ok, err := t.exists(`SELECT 1 FROM users WHERE name = ?`, s.User); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	} else if !ok {
		return fmt.Errorf("%s: user does not exist: %w", what, ErrNotFound)
	}
	created, err := encTime(what+": created", s.CreatedAt)
	if err != nil {
		return err
	}
	expires, err := encTime(what+": expiry", s.ExpiresAt)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id_hash) DO UPDATE SET user_name = excluded.user_name, csrf = excluded.csrf, created_at = excluded.created_at, expires_at = excluded.expires_at`,
		s.IDHash, s.User, s.CSRF, created, expires)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// GetSession implements Tx.
func (t *sqlTx) GetSession(idHash []byte) (Session, error) {
	var s Session
	var created, expires sql.NullInt64
	err := t.queryRow(`SELECT `+sessionCols+` FROM sessions WHERE id_hash = ?`, idHash).Scan(&s.IDHash, &s.User, &s.CSRF, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	s.CreatedAt, s.ExpiresAt = decTime(created), decTime(expires)
	return s, nil
}

// DeleteSession implements Tx.
func (t *sqlTx) DeleteSession(idHash []byte) error {
	res, err := t.exec(`DELETE FROM sessions WHERE id_hash = ?`, idHash)
	return deleted("session", res, err)
}

// DeleteExpiredSessions implements Tx.
func (t *sqlTx) DeleteExpiredSessions(now time.Time) (int, error) {
	res, err := t.exec(`DELETE FROM sessions WHERE expires_at <= ?`, now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("deleting expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

const apiTokenCols = `id, name, role, secret_hash, created_by, created_at, expires_at, revoked`

// PutAPIToken implements Tx.
func (t *sqlTx) PutAPIToken(tok APIToken) error {
	what := fmt.Sprintf("API token %s", tok.ID)
	switch {
	case tok.ID == "":
		return errors.New("API token: ID is empty")
	case len(tok.SecretHash) == 0:
		return fmt.Errorf("%s: secret hash is empty", what)
	case tok.Role == "":
		return fmt.Errorf("%s: role is empty", what)
	}
	created, err := encTime(what+": created", tok.CreatedAt)
	if err != nil {
		return err
	}
	expires, err := encTime(what+": expiry", tok.ExpiresAt)
	if err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO api_tokens (`+apiTokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, secret_hash = excluded.secret_hash,
	created_by = excluded.created_by, created_at = excluded.created_at, expires_at = excluded.expires_at, revoked = excluded.revoked`,
		tok.ID, tok.Name, tok.Role, tok.SecretHash, tok.CreatedBy, created, expires, tok.Revoked)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func scanAPIToken(sc interface{ Scan(...any) error }) (APIToken, error) {
	var tok APIToken
	var created, expires sql.NullInt64
	err := sc.Scan(&tok.ID, &tok.Name, &tok.Role, &tok.SecretHash, &tok.CreatedBy, &created, &expires, &tok.Revoked)
	tok.CreatedAt, tok.ExpiresAt = decTime(created), decTime(expires)
	return tok, err
}

// GetAPIToken implements Tx.
func (t *sqlTx) GetAPIToken(id string) (APIToken, error) {
	tok, err := scanAPIToken(t.queryRow(`SELECT `+apiTokenCols+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, fmt.Errorf("API token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return APIToken{}, fmt.Errorf("API token %s: %w", id, err)
	}
	return tok, nil
}

// ListAPITokens implements Tx.
func (t *sqlTx) ListAPITokens() ([]APIToken, error) {
	return list(t, "listing API tokens", `SELECT `+apiTokenCols+` FROM api_tokens ORDER BY id`, scanAPIToken)
}

// RevokeAPIToken implements Tx.
func (t *sqlTx) RevokeAPIToken(id string) error {
	res, err := t.exec(`UPDATE api_tokens SET revoked = ? WHERE id = ?`, true, id)
	return deleted(fmt.Sprintf("revoking API token %s", id), res, err)
}
