package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func schemaVersions(t *testing.T, path string) []int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrationsIdempotent(t *testing.T) {
	s, path := openTest(t)
	update(t, s, func(tx Tx) error { return tx.PutMeta("k", "v") })
	s.Close()
	for range 3 {
		s, err := OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		view(t, s, func(tx Tx) error {
			v, err := tx.GetMeta("k")
			if v != "v" {
				t.Errorf("after reopen, meta k = %q", v)
			}
			return err
		})
		s.Close()
	}
	vs := schemaVersions(t, path)
	if len(vs) != len(migrations) || vs[len(vs)-1] != len(migrations) {
		t.Errorf("schema_migrations holds %v, want 1..%d once each", vs, len(migrations))
	}
}

func TestMigrateAppliesOnlyNewOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	v1 := []string{`CREATE TABLE a (x INTEGER)`}
	v2 := append(v1, `ALTER TABLE a ADD COLUMN y TEXT; INSERT INTO a (x, y) VALUES (1, 'one')`)
	for _, migs := range [][]string{v1, v1, v2, v2} {
		if err := migrate(ctx, db, path, migs); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM a`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows in a: %d, %v; want 1 (migration 2 applied once)", n, err)
	}
	// A failing migration leaves nothing of itself, nor of the ones before
	// it in the same run.
	v4 := append(v2, `CREATE TABLE b (x INTEGER)`, `CREATE TABLE broken (`)
	if err := migrate(ctx, db, path, v4); err == nil {
		t.Fatal("broken migration succeeded")
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("table b exists after a failed migration run")
	}
	if vs := schemaVersions(t, path); len(vs) != 2 {
		t.Errorf("schema versions %v after failed run, want [1 2]", vs)
	}
	// Code that knows fewer migrations than the database is refused.
	err = migrate(ctx, db, path, v1)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("older code on newer schema: %v", err)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	s, path := openTest(t)
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = OpenSQLite(path)
	if err == nil {
		s.Close()
		t.Fatal("opening a database with a newer schema succeeded")
	}
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "newer latch") {
		t.Errorf("error %q does not say to run a newer latch", err)
	}
}
