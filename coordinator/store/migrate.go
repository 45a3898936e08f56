package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations is the schema history: migrations[i] brings the schema from
// version i to version i+1. Append only; never edit a released entry.
//
// Conventions: times are INTEGER unix nanoseconds (NULL for the zero
// time); maps and slices are JSON TEXT; addresses are TEXT ("" for none).
var migrations = []string{
	// 1: initial schema.
	`
CREATE TABLE namespaces (
	name   TEXT PRIMARY KEY,
	labels TEXT NOT NULL,
	mode   TEXT NOT NULL
);
CREATE TABLE nodes (
	name        TEXT PRIMARY KEY,
	namespace   TEXT NOT NULL REFERENCES namespaces (name),
	labels      TEXT NOT NULL,
	ip          TEXT NOT NULL,
	public_key  TEXT NOT NULL,
	endpoints   TEXT NOT NULL,
	ports       TEXT NOT NULL,
	cert_serial TEXT NOT NULL,
	created_at  INTEGER,
	last_seen   INTEGER
);
CREATE INDEX nodes_namespace ON nodes (namespace);
CREATE UNIQUE INDEX nodes_ip ON nodes (ip) WHERE ip <> '';
CREATE TABLE workloads (
	namespace TEXT NOT NULL REFERENCES namespaces (name),
	name      TEXT NOT NULL,
	node      TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
	labels    TEXT NOT NULL,
	ip        TEXT NOT NULL,
	ports     TEXT NOT NULL,
	PRIMARY KEY (namespace, name)
);
CREATE INDEX workloads_node ON workloads (node);
CREATE UNIQUE INDEX workloads_ip ON workloads (ip) WHERE ip <> '';
CREATE TABLE policies (
	namespace  TEXT NOT NULL REFERENCES namespaces (name),
	name       TEXT NOT NULL,
	yaml       TEXT NOT NULL,
	updated_at INTEGER,
	PRIMARY KEY (namespace, name)
);
CREATE TABLE tokens (
	id          TEXT PRIMARY KEY,
	secret_hash BLOB NOT NULL,
	namespace   TEXT NOT NULL,
	labels      TEXT NOT NULL,
	uses_left   INTEGER NOT NULL CHECK (uses_left >= 0),
	expires_at  INTEGER,
	created_at  INTEGER,
	revoked     INTEGER NOT NULL
);
CREATE TABLE revoked_serials (
	serial     TEXT PRIMARY KEY,
	revoked_at INTEGER
);
-- One row per address ever handed out in a pool, at offset off from the
-- pool's first address. Released rows keep their place with owner NULL,
-- so the lowest free address is the lowest released row or one past the
-- highest row: both are index lookups.
CREATE TABLE addrs (
	pool  TEXT NOT NULL,
	off   INTEGER NOT NULL,
	addr  TEXT NOT NULL,
	owner TEXT,
	PRIMARY KEY (pool, off)
);
CREATE UNIQUE INDEX addrs_owner ON addrs (owner) WHERE owner IS NOT NULL;
CREATE INDEX addrs_free ON addrs (pool, off) WHERE owner IS NULL;
CREATE UNIQUE INDEX addrs_addr ON addrs (addr) WHERE owner IS NOT NULL;
CREATE TABLE audit (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	time   INTEGER,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	object TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
	// 2: web console: users, their sessions, API tokens for automation,
	// and when each node's certificate expires.
	`
ALTER TABLE nodes ADD COLUMN cert_expires INTEGER;
CREATE TABLE users (
	name          TEXT PRIMARY KEY,
	role          TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created_at    INTEGER
);
CREATE TABLE sessions (
	id_hash    BLOB PRIMARY KEY,
	user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
	csrf       TEXT NOT NULL,
	created_at INTEGER,
	expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE TABLE api_tokens (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	role        TEXT NOT NULL,
	secret_hash BLOB NOT NULL,
	created_by  TEXT NOT NULL,
	created_at  INTEGER,
	expires_at  INTEGER,
	revoked     INTEGER NOT NULL
);
`,
	// 3: flow records reported by the nodes (issue 7).
	`CREATE TABLE flows (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	time         INTEGER NOT NULL,
	end_time     INTEGER NOT NULL,
	reporter     TEXT NOT NULL,
	direction    TEXT NOT NULL,
	src_ns       TEXT NOT NULL,
	src_workload TEXT NOT NULL,
	src_node     TEXT NOT NULL,
	src_ip       TEXT NOT NULL,
	dst_ns       TEXT NOT NULL,
	dst_workload TEXT NOT NULL,
	dst_node     TEXT NOT NULL,
	dst_ip       TEXT NOT NULL,
	proto        TEXT NOT NULL,
	port         INTEGER NOT NULL,
	verdict      TEXT NOT NULL,
	reason       TEXT NOT NULL,
	packets      INTEGER NOT NULL,
	bytes        INTEGER NOT NULL
);
CREATE INDEX flows_time ON flows (time);
CREATE INDEX flows_src_ns ON flows (src_ns, id);
CREATE INDEX flows_dst_ns ON flows (dst_ns, id);
`,
	// 4: SPIFFE identities from SPIRE: which node an ID is, or that it
	// waits for approval or was rejected.
	`
CREATE TABLE spiffe_nodes (
	spiffe_id  TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	status     TEXT NOT NULL,
	first_seen INTEGER,
	last_seen  INTEGER
);
CREATE INDEX spiffe_nodes_name ON spiffe_nodes (name);
`,
	// 5: a node's previous certificate, accepted for a short grace after
	// a renewal (issue 12); it goes with the node.
	`
CREATE TABLE grace_certs (
	node   TEXT PRIMARY KEY REFERENCES nodes (name) ON DELETE CASCADE,
	serial TEXT NOT NULL,
	until  INTEGER NOT NULL
);
`,
	// 6: granted identity (issue 12): the workloads a join token grants,
	// each node's grants, and one node per WireGuard public key. A node
	// keeps hosting what it hosts at the upgrade: it is granted exactly
	// those workloads (namespace, labels without the coordinator's
	// spiffe.io/ ones, name). A node loses the reserved label spiffe.io/id
	// if it claimed one. Of nodes sharing a public key, all but the oldest
	// lose it until they register a key of their own.
	`
ALTER TABLE tokens ADD COLUMN workloads TEXT NOT NULL DEFAULT 'null';
CREATE TABLE node_grants (
	node         TEXT PRIMARY KEY REFERENCES nodes (name) ON DELETE CASCADE,
	workloads    TEXT NOT NULL,
	workload_ids TEXT NOT NULL
);
INSERT INTO node_grants (node, workloads, workload_ids)
SELECT node, json_group_array(json_object(
		'namespace', namespace,
		'labels', json(CASE WHEN labels IN ('', 'null') THEN '{}' ELSE json_remove(labels, '$."spiffe.io/id"') END),
		'name', name)), 'null'
FROM (SELECT * FROM workloads ORDER BY node, namespace, name) GROUP BY node;
UPDATE nodes SET labels = json_remove(labels, '$."spiffe.io/id"') WHERE labels NOT IN ('', 'null');
UPDATE nodes SET public_key = '' WHERE public_key <> '' AND rowid NOT IN (
	SELECT MIN(rowid) FROM nodes WHERE public_key <> '' GROUP BY public_key);
CREATE UNIQUE INDEX nodes_public_key ON nodes (public_key) WHERE public_key <> '';
`,
	// 7: pruning the audit log by age (latch coordinator
	// --audit-retention).
	`CREATE INDEX audit_time ON audit (time);`,
	// 8: subnet routes the nodes advertise as gateways (issue 14), and
	// what an admin decided about them; they go with the node.
	`
CREATE TABLE routes (
	node          TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
	prefix        TEXT NOT NULL,
	snat          INTEGER NOT NULL,
	status        TEXT NOT NULL,
	advertised_at INTEGER,
	decided_at    INTEGER,
	decided_by    TEXT NOT NULL,
	PRIMARY KEY (node, prefix)
);
CREATE INDEX routes_prefix ON routes (prefix);
`,
	// 9: sites (issue 14): networks of agentless hosts an admin declares,
	// each a member of a namespace, with labels, IPv4 prefixes and ports.
	`
CREATE TABLE sites (
	namespace  TEXT NOT NULL REFERENCES namespaces (name),
	name       TEXT NOT NULL,
	labels     TEXT NOT NULL,
	cidrs      TEXT NOT NULL,
	ports      TEXT NOT NULL,
	PRIMARY KEY (namespace, name)
);
`,
}

// migrate applies the migrations db lacks, all in one transaction, and
// refuses a database whose schema is newer than migs. path is for messages.
func migrate(ctx context.Context, db *sql.DB, path string, migs []string) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating store %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at INTEGER NOT NULL
)`); err != nil {
		return fmt.Errorf("migrating store %s: %w", path, err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("migrating store %s: reading schema version: %w", path, err)
	}
	if cur > len(migs) {
		return fmt.Errorf("opening store %s: its schema is version %d but this latch knows only up to %d: run a newer latch, or restore a backup taken before the upgrade: %w",
			path, cur, len(migs), ErrConflict)
	}
	for v := cur + 1; v <= len(migs); v++ {
		if _, err := tx.ExecContext(ctx, migs[v-1]); err != nil {
			return fmt.Errorf("migrating store %s to schema version %d: %w", path, v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("migrating store %s to schema version %d: %w", path, v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating store %s: committing: %w", path, err)
	}
	return nil
}
