package store

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/grant"
)

func putTestNode(t *testing.T, s Store, name, ip, key string) error {
	t.Helper()
	return s.Update(context.Background(), func(tx Tx) error {
		if _, err := tx.GetNamespace("prod"); errors.Is(err, ErrNotFound) {
			if err := tx.PutNamespace(Namespace{Name: "prod", Mode: ModeEnforce}); err != nil {
				return err
			}
		}
		return tx.PutNode(Node{Name: name, Namespace: "prod", IP: netip.MustParseAddr(ip), PublicKey: key})
	})
}

// Two nodes cannot hold one WireGuard public key: the second would knock
// the first off its peers.
func TestPublicKeyUnique(t *testing.T) {
	s, _ := openTest(t)
	if err := putTestNode(t, s, "a", "100.64.0.2", "KEY-A"); err != nil {
		t.Fatal(err)
	}
	if err := putTestNode(t, s, "a", "100.64.0.2", "KEY-A"); err != nil {
		t.Fatalf("the same node registering its own key again: %v", err)
	}
	if err := putTestNode(t, s, "b", "100.64.0.3", ""); err != nil {
		t.Fatalf("a second node without a key yet: %v", err)
	}
	err := putTestNode(t, s, "b", "100.64.0.3", "KEY-A")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `node "a"`) {
		t.Fatalf("second node with node a's key: %v, want ErrConflict naming node a", err)
	}
}

func TestGrantsRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	if err := putTestNode(t, s, "a", "100.64.0.2", ""); err != nil {
		t.Fatal(err)
	}
	want := grant.Set{
		Workloads:   []grant.Workload{{Namespace: "prod", Labels: map[string]string{"app": "web"}, Name: "web-*"}, {Namespace: "dev"}},
		WorkloadIDs: []string{"spiffe://example.org/ns/prod/*"},
	}
	update(t, s, func(tx Tx) error {
		got, err := tx.GetGrants("a")
		if err != nil || !got.Empty() {
			t.Errorf("grants before any: %+v, %v; want none", got, err)
		}
		return tx.PutGrants("a", want)
	})
	view(t, s, func(tx Tx) error {
		got, err := tx.GetGrants("a")
		if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
			t.Errorf("grants (-want +got):\n%s", diff)
		}
		return err
	})
	if err := s.Update(context.Background(), func(tx Tx) error { return tx.PutGrants("ghost", want) }); !errors.Is(err, ErrNotFound) {
		t.Errorf("grants for a missing node: %v, want ErrNotFound", err)
	}
	// The grants go with the node.
	update(t, s, func(tx Tx) error { return tx.DeleteNode("a") })
	if err := putTestNode(t, s, "a", "100.64.0.2", ""); err != nil {
		t.Fatal(err)
	}
	view(t, s, func(tx Tx) error {
		got, err := tx.GetGrants("a")
		if !got.Empty() {
			t.Errorf("a node enrolled again under a deleted one's name inherits its grants: %+v", got)
		}
		return err
	})
}

func TestTokenWorkloadsRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	ws := []grant.Workload{{Namespace: "prod", Labels: map[string]string{"app": "web"}}}
	now := time.Unix(1700000000, 0).UTC()
	update(t, s, func(tx Tx) error {
		return tx.PutToken(Token{ID: "t1", SecretHash: []byte{1}, Namespace: "prod", Workloads: ws, UsesLeft: 1, ExpiresAt: now.Add(time.Hour)})
	})
	update(t, s, func(tx Tx) error {
		tok, err := tx.ConsumeToken("t1", []byte{1}, now)
		if diff := cmp.Diff(ws, tok.Workloads, cmpOpts); diff != "" {
			t.Errorf("token workloads (-want +got):\n%s", diff)
		}
		return err
	})
}

// Migration 5 grants every node exactly the workloads it hosts (without
// the coordinator's own spiffe.io/ label), and of nodes sharing a public
// key only the oldest keeps it.
func TestMigrationGrandfathersWorkloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := migrate(ctx, db, path, migrations[:4]); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO namespaces VALUES ('prod', 'null', 'enforce')`,
		`INSERT INTO nodes (name, namespace, labels, ip, public_key, endpoints, ports, cert_serial) VALUES
			('a', 'prod', '{"app":"a","spiffe.io/id":"sha256-00"}', '100.64.0.2', 'K1', 'null', 'null', ''),
			('b', 'prod', 'null', '100.64.0.3', 'K1', 'null', 'null', ''),
			('c', 'prod', 'null', '100.64.0.4', 'K2', 'null', 'null', '')`,
		`INSERT INTO workloads VALUES
			('prod', 'web', 'a', '{"app":"web"}', '100.64.0.5', 'null'),
			('prod', 'bare', 'a', 'null', '100.64.0.6', 'null'),
			('prod', 'svc', 'b', '{"app":"svc","spiffe.io/id":"sha256-00"}', '100.64.0.7', 'null')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[string]grant.Set{
		"a": {Workloads: []grant.Workload{{Namespace: "prod", Name: "bare"}, {Namespace: "prod", Labels: map[string]string{"app": "web"}, Name: "web"}}},
		"b": {Workloads: []grant.Workload{{Namespace: "prod", Labels: map[string]string{"app": "svc"}, Name: "svc"}}},
		"c": {},
	}
	view(t, s, func(tx Tx) error {
		for n, w := range want {
			got, err := tx.GetGrants(n)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(w, got, cmpOpts); diff != "" {
				t.Errorf("grants of %s after the migration (-want +got):\n%s", n, diff)
			}
		}
		keys := map[string]string{}
		nodes, err := tx.ListNodes()
		for _, n := range nodes {
			keys[n.Name] = n.PublicKey
			if n.Name == "a" && (len(n.Labels) != 1 || n.Labels["app"] != "a") {
				t.Errorf("labels of a after the migration: %v, want the reserved one gone", n.Labels)
			}
		}
		if diff := cmp.Diff(map[string]string{"a": "K1", "b": "", "c": "K2"}, keys); diff != "" {
			t.Errorf("public keys after the migration (-want +got):\n%s", diff)
		}
		return err
	})
}
