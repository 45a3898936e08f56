package store

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/latchnet/latch/inventory"
)

var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

func openTest(t testing.TB) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latch.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func update(t testing.TB, s Store, fn func(Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func view(t testing.TB, s Store, fn func(Tx) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// checkErr fails unless err matches want: nil, or a sentinel err wraps.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("error %v, want none", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error %v, want %v", err, want)
	}
}

// errAny matches any non-nil error in table tests.
var errAny = errors.New("any error")

func checkErrAny(t *testing.T, err, want error) {
	t.Helper()
	if want == errAny {
		if err == nil {
			t.Fatal("no error, want one")
		}
		return
	}
	checkErr(t, err, want)
}

var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	t1 = t0.Add(time.Hour)
)

func TestOpenCreatesPrivateFiles(t *testing.T) {
	s, path := openTest(t)
	update(t, s, func(tx Tx) error { return tx.PutMeta("k", "v") })
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), perm)
		}
	}
}

func TestOpenTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after open: %v, %v; want 600", fi.Mode(), err)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", ":memory:", "a?b", filepath.Join(t.TempDir(), "missing", "x.db")} {
		if s, err := OpenSQLite(p); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) succeeded", p)
		}
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openTest(t)
	for _, db := range []struct {
		name string
		q    func(string) string
	}{
		{"writer", func(p string) (v string) { s.w.QueryRow("PRAGMA " + p).Scan(&v); return v }},
		{"reader", func(p string) (v string) { s.r.QueryRow("PRAGMA " + p).Scan(&v); return v }},
	} {
		want := map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "10000"}
		for p, w := range want {
			if got := db.q(p); got != w {
				t.Errorf("%s: PRAGMA %s = %q, want %q", db.name, p, got, w)
			}
		}
	}
}

func TestNamespaces(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error {
		return tx.PutNamespace(Namespace{Name: "prod", Labels: map[string]string{"env": "prod"}, Mode: ModeEnforce})
	})
	tests := []struct {
		name string
		fn   func(Tx) error
		want error
	}{
		{"put", func(tx Tx) error { return tx.PutNamespace(Namespace{Name: "dev", Mode: ModeMonitor}) }, nil},
		{"replace", func(tx Tx) error { return tx.PutNamespace(Namespace{Name: "dev", Mode: ModeEnforce}) }, nil},
		{"empty name", func(tx Tx) error { return tx.PutNamespace(Namespace{Mode: ModeEnforce}) }, errAny},
		{"bad mode", func(tx Tx) error { return tx.PutNamespace(Namespace{Name: "x", Mode: "audit"}) }, errAny},
		{"empty mode", func(tx Tx) error { return tx.PutNamespace(Namespace{Name: "x"}) }, errAny},
		{"get", func(tx Tx) error { _, err := tx.GetNamespace("prod"); return err }, nil},
		{"get missing", func(tx Tx) error { _, err := tx.GetNamespace("nope"); return err }, ErrNotFound},
		{"delete missing", func(tx Tx) error { return tx.DeleteNamespace("nope") }, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErrAny(t, s.Update(context.Background(), tc.fn), tc.want)
		})
	}
	view(t, s, func(tx Tx) error {
		got, err := tx.ListNamespaces()
		if err != nil {
			return err
		}
		want := []Namespace{{Name: "dev", Mode: ModeEnforce}, {Name: "prod", Labels: map[string]string{"env": "prod"}, Mode: ModeEnforce}}
		if d := cmp.Diff(want, got, cmpOpts); d != "" {
			t.Errorf("ListNamespaces (-want +got):\n%s", d)
		}
		return nil
	})
	update(t, s, func(tx Tx) error { return tx.DeleteNamespace("dev") })
	view(t, s, func(tx Tx) error {
		_, err := tx.GetNamespace("dev")
		checkErr(t, err, ErrNotFound)
		return nil
	})
}

func TestDeleteNamespaceInUse(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error {
		return errors.Join(
			tx.PutNamespace(Namespace{Name: "a", Mode: ModeEnforce}),
			tx.PutNamespace(Namespace{Name: "b", Mode: ModeEnforce}),
			tx.PutNode(Node{Name: "n1", Namespace: "a"}),
			tx.PutPolicy(Policy{Namespace: "b", Name: "p"}))
	})
	for _, ns := range []string{"a", "b"} {
		err := s.Update(context.Background(), func(tx Tx) error { return tx.DeleteNamespace(ns) })
		checkErr(t, err, ErrConflict)
		if !strings.Contains(err.Error(), "delete them first") {
			t.Errorf("error %q does not say what to do", err)
		}
	}
}

func testNode(name string) Node {
	return Node{
		Name:       name,
		Namespace:  "prod",
		Labels:     map[string]string{"role": "db"},
		IP:         netip.MustParseAddr("100.64.0.2"),
		PublicKey:  "bXkga2V5",
		Endpoints:  []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:51820"), netip.MustParseAddrPort("[2001:db8::1]:51820")},
		Ports:      []inventory.Port{{Name: "ssh", Port: 22, Protocol: inventory.TCP}},
		CertSerial: "0a1b",
		CreatedAt:  t0,
		LastSeen:   t1,
	}
}

func TestNodes(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error { return tx.PutNamespace(Namespace{Name: "prod", Mode: ModeEnforce}) })
	a := testNode("a")
	b := testNode("b")
	b.IP = netip.MustParseAddr("100.64.0.3")
	b.PublicKey = "b3RoZXIga2V5" // a key of its own: keys are unique
	b.Labels, b.Endpoints, b.Ports, b.LastSeen = nil, nil, nil, time.Time{}
	bare := Node{Name: "c", Namespace: "prod"} // not registered yet: no IP, key or times
	tests := []struct {
		name string
		node Node
		want error
	}{
		{"full", a, nil},
		{"bare", bare, nil},
		{"replace", b, nil},
		{"empty name", Node{Namespace: "prod"}, errAny},
		{"missing namespace", Node{Name: "x", Namespace: "nope"}, ErrNotFound},
		{"address in use", Node{Name: "x", Namespace: "prod", IP: a.IP}, ErrConflict},
		{"public key in use", Node{Name: "x", Namespace: "prod", PublicKey: a.PublicKey}, ErrConflict},
		{"same address, same node", a, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErrAny(t, s.Update(context.Background(), func(tx Tx) error { return tx.PutNode(tc.node) }), tc.want)
		})
	}
	local := a
	local.CreatedAt = t0.In(time.FixedZone("X", 3600))
	update(t, s, func(tx Tx) error { return tx.PutNode(local) })
	view(t, s, func(tx Tx) error {
		got, err := tx.GetNode("a")
		if err != nil {
			return err
		}
		if d := cmp.Diff(a, got, cmpOpts); d != "" {
			t.Errorf("GetNode (-want +got):\n%s", d)
		}
		if got.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
		}
		_, err = tx.GetNode("nope")
		checkErr(t, err, ErrNotFound)
		all, err := tx.ListNodes()
		if err != nil {
			return err
		}
		if d := cmp.Diff([]Node{a, b, bare}, all, cmpOpts); d != "" {
			t.Errorf("ListNodes (-want +got):\n%s", d)
		}
		return nil
	})
	update(t, s, func(tx Tx) error { return tx.DeleteNode("b") })
	err := s.Update(context.Background(), func(tx Tx) error { return tx.DeleteNode("b") })
	checkErr(t, err, ErrNotFound)
}

func wl(ns, name, ip string, labels map[string]string) Workload {
	return Workload{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), Labels: labels,
		Ports: []inventory.Port{{Name: "http", Port: 80, Protocol: inventory.TCP}}}
}

func TestWorkloads(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error {
		return errors.Join(
			tx.PutNamespace(Namespace{Name: "prod", Mode: ModeEnforce}),
			tx.PutNamespace(Namespace{Name: "web", Mode: ModeEnforce}),
			tx.PutNode(Node{Name: "n1", Namespace: "prod"}),
			tx.PutNode(Node{Name: "n2", Namespace: "prod"}))
	})
	w1 := wl("web", "front", "100.64.1.1", map[string]string{"app": "front"})
	w2 := wl("prod", "db", "100.64.1.2", nil)
	w3 := wl("web", "api", "100.64.1.3", nil)
	tests := []struct {
		name string
		node string
		ws   []Workload
		want error
	}{
		{"set n1", "n1", []Workload{w1, w2}, nil},
		{"set n2", "n2", []Workload{w3}, nil},
		{"missing node", "nope", []Workload{w3}, ErrNotFound},
		{"missing namespace", "n2", []Workload{wl("nope", "x", "100.64.1.9", nil)}, ErrNotFound},
		{"key of another node", "n2", []Workload{w1}, ErrConflict},
		{"listed twice", "n2", []Workload{w3, w3}, ErrConflict},
		{"address of another workload", "n2", []Workload{wl("web", "x", "100.64.1.1", nil)}, ErrConflict},
		{"names another node", "n2", []Workload{{Namespace: "web", Name: "x", Node: "n1"}}, errAny},
		{"empty name", "n2", []Workload{{Namespace: "web"}}, errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErrAny(t, s.Update(context.Background(), func(tx Tx) error { return tx.SetWorkloads(tc.node, tc.ws) }), tc.want)
		})
	}
	// A failed SetWorkloads leaves the old list even if the caller
	// ignores the error and commits.
	update(t, s, func(tx Tx) error {
		if err := tx.SetWorkloads("n2", []Workload{wl("web", "new", "100.64.1.8", nil), w1}); !errors.Is(err, ErrConflict) {
			t.Errorf("SetWorkloads: error %v, want ErrConflict", err)
		}
		return nil
	})
	w1.Node, w2.Node, w3.Node = "n1", "n1", "n2"
	checkList := func(want []Workload) {
		t.Helper()
		view(t, s, func(tx Tx) error {
			got, err := tx.ListWorkloads()
			if err != nil {
				return err
			}
			if d := cmp.Diff(want, got, cmpOpts); d != "" {
				t.Errorf("ListWorkloads (-want +got):\n%s", d)
			}
			return nil
		})
	}
	checkList([]Workload{w2, w3, w1})
	// Replace: n1 now has only w1, with new labels.
	w1.Labels = map[string]string{"app": "front", "v": "2"}
	update(t, s, func(tx Tx) error { return tx.SetWorkloads("n1", []Workload{w1}) })
	checkList([]Workload{w3, w1})
	// Deleting a node deletes its workloads.
	update(t, s, func(tx Tx) error { return tx.DeleteNode("n1") })
	checkList([]Workload{w3})
	update(t, s, func(tx Tx) error { return tx.SetWorkloads("n2", nil) })
	checkList(nil)
}

func TestPolicies(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error {
		return errors.Join(tx.PutNamespace(Namespace{Name: "a", Mode: ModeEnforce}), tx.PutNamespace(Namespace{Name: "b", Mode: ModeEnforce}))
	})
	tests := []struct {
		name string
		fn   func(Tx) error
		want error
	}{
		{"put b/x", func(tx Tx) error {
			return tx.PutPolicy(Policy{Namespace: "b", Name: "x", YAML: "kind: NetworkPolicy\n", UpdatedAt: t0})
		}, nil},
		{"put a/y", func(tx Tx) error { return tx.PutPolicy(Policy{Namespace: "a", Name: "y", YAML: "old", UpdatedAt: t0}) }, nil},
		{"replace a/y", func(tx Tx) error { return tx.PutPolicy(Policy{Namespace: "a", Name: "y", YAML: "new", UpdatedAt: t1}) }, nil},
		{"put a/z", func(tx Tx) error { return tx.PutPolicy(Policy{Namespace: "a", Name: "z"}) }, nil},
		{"missing namespace", func(tx Tx) error { return tx.PutPolicy(Policy{Namespace: "c", Name: "x"}) }, ErrNotFound},
		{"empty name", func(tx Tx) error { return tx.PutPolicy(Policy{Namespace: "a"}) }, errAny},
		{"delete a/z", func(tx Tx) error { return tx.DeletePolicy("a", "z") }, nil},
		{"delete missing", func(tx Tx) error { return tx.DeletePolicy("a", "z") }, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErrAny(t, s.Update(context.Background(), tc.fn), tc.want)
		})
	}
	view(t, s, func(tx Tx) error {
		got, err := tx.ListPolicies()
		want := []Policy{{Namespace: "a", Name: "y", YAML: "new", UpdatedAt: t1}, {Namespace: "b", Name: "x", YAML: "kind: NetworkPolicy\n", UpdatedAt: t0}}
		if d := cmp.Diff(want, got, cmpOpts); d != "" {
			t.Errorf("ListPolicies (-want +got):\n%s", d)
		}
		return err
	})
}

func TestRevokeSerial(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error { return tx.RevokeSerial("00:AB:cd", t0) })
	tests := []struct {
		serial string
		want   bool
		err    error
	}{
		{"abcd", true, nil},
		{"ABCD", true, nil},
		{"0abcd", true, nil},
		{"ab:cd", true, nil},
		{"abce", false, nil},
		{"", false, errAny},
		{"xyz", false, errAny},
	}
	for _, tc := range tests {
		t.Run(tc.serial, func(t *testing.T) {
			view(t, s, func(tx Tx) error {
				got, err := tx.IsRevoked(tc.serial)
				checkErrAny(t, err, tc.err)
				if got != tc.want {
					t.Errorf("IsRevoked(%q) = %v, want %v", tc.serial, got, tc.want)
				}
				return nil
			})
		})
	}
	// Revoking again is fine.
	update(t, s, func(tx Tx) error { return tx.RevokeSerial("abcd", t1) })
	err := s.Update(context.Background(), func(tx Tx) error { return tx.RevokeSerial("not hex", t1) })
	checkErrAny(t, err, errAny)
}

func TestAudit(t *testing.T) {
	s, _ := openTest(t)
	var ids []int64
	for i, action := range []string{"create", "update", "delete"} {
		update(t, s, func(tx Tx) error {
			id, err := tx.AppendAudit(AuditEntry{ID: 99, Time: t0.Add(time.Duration(i) * time.Second), Actor: "admin", Action: action, Object: "node/a", Detail: "d"})
			ids = append(ids, id)
			return err
		})
	}
	if !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("ids %v do not increase", ids)
	}
	entry := func(i int, action string) AuditEntry {
		return AuditEntry{ID: ids[i], Time: t0.Add(time.Duration(i) * time.Second), Actor: "admin", Action: action, Object: "node/a", Detail: "d"}
	}
	all := []AuditEntry{entry(2, "delete"), entry(1, "update"), entry(0, "create")}
	for _, tc := range []struct {
		limit int
		want  []AuditEntry
	}{{0, all}, {-1, all}, {2, all[:2]}, {10, all}} {
		view(t, s, func(tx Tx) error {
			got, err := tx.ListAudit(tc.limit)
			if d := cmp.Diff(tc.want, got, cmpOpts); d != "" {
				t.Errorf("ListAudit(%d) (-want +got):\n%s", tc.limit, d)
			}
			return err
		})
	}
}

func TestMeta(t *testing.T) {
	s, _ := openTest(t)
	tests := []struct {
		name string
		fn   func(Tx) error
		want error
	}{
		{"get missing", func(tx Tx) error { _, err := tx.GetMeta("ca"); return err }, ErrNotFound},
		{"put", func(tx Tx) error { return tx.PutMeta("ca", "one") }, nil},
		{"replace", func(tx Tx) error { return tx.PutMeta("ca", "two") }, nil},
		{"empty key", func(tx Tx) error { return tx.PutMeta("", "x") }, errAny},
		{"get", func(tx Tx) error {
			v, err := tx.GetMeta("ca")
			if v != "two" {
				t.Errorf("GetMeta = %q, want two", v)
			}
			return err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErrAny(t, s.Update(context.Background(), tc.fn), tc.want)
		})
	}
}

// TestUpdatePanicFirst panics in the very first Update of a store, while
// its queries are not prepared yet.
func TestUpdatePanicFirst(t *testing.T) {
	s, _ := openTest(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in fn was not passed on")
			}
		}()
		s.Update(context.Background(), func(tx Tx) error {
			if err := tx.PutMeta("k", "v"); err != nil {
				t.Error(err)
			}
			panic("boom")
		})
	}()
	checkEmpty(t, s)
}

func TestUpdateRollback(t *testing.T) {
	s, _ := openTest(t)
	boom := errors.New("boom")
	write := func(tx Tx) {
		if err := errors.Join(
			tx.PutNamespace(Namespace{Name: "a", Mode: ModeEnforce}),
			tx.PutNode(Node{Name: "n", Namespace: "a"}),
			tx.PutMeta("k", "v"),
		); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.AppendAudit(AuditEntry{Action: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.AllocateAddr("n", netip.MustParsePrefix("100.64.0.0/10")); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Update(context.Background(), func(tx Tx) error { write(tx); return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Update: error %v, want boom", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in fn was not passed on")
			}
		}()
		s.Update(context.Background(), func(tx Tx) error { write(tx); panic("boom") })
	}()
	ctx, cancel := context.WithCancel(context.Background())
	err = s.Update(ctx, func(tx Tx) error { write(tx); cancel(); return nil })
	if err == nil {
		t.Error("Update with a context cancelled before commit succeeded")
	}
	checkEmpty(t, s)
	// The store still works after all that.
	update(t, s, func(tx Tx) error { write(tx); return nil })
}

func checkEmpty(t *testing.T, s Store) {
	t.Helper()
	view(t, s, func(tx Tx) error {
		ns, _ := tx.ListNamespaces()
		nodes, _ := tx.ListNodes()
		audit, _ := tx.ListAudit(0)
		_, err := tx.GetMeta("k")
		if len(ns)+len(nodes)+len(audit) != 0 || !errors.Is(err, ErrNotFound) {
			t.Errorf("after rollback: %d namespaces, %d nodes, %d audit entries, meta error %v", len(ns), len(nodes), len(audit), err)
		}
		return nil
	})
	// The allocation was rolled back too: the next owner gets the first address.
	update(t, s, func(tx Tx) error {
		a, err := tx.AllocateAddr("probe", netip.MustParsePrefix("100.64.0.0/10"))
		if a != netip.MustParseAddr("100.64.0.2") {
			t.Errorf("after rollback, first allocation is %v", a)
		}
		if err != nil {
			return err
		}
		return tx.ReleaseAddr("probe")
	})
}

func TestViewIsReadOnly(t *testing.T) {
	s, _ := openTest(t)
	for name, fn := range map[string]func(Tx) error{
		"PutMeta":      func(tx Tx) error { return tx.PutMeta("k", "v") },
		"PutNamespace": func(tx Tx) error { return tx.PutNamespace(Namespace{Name: "a", Mode: ModeEnforce}) },
		"AppendAudit":  func(tx Tx) error { _, err := tx.AppendAudit(AuditEntry{}); return err },
	} {
		if err := s.View(context.Background(), fn); err == nil {
			t.Errorf("%s inside View succeeded", name)
		}
	}
}

// TestViewSnapshot checks that a View sees one snapshot while an Update
// commits, and that readers do not wait for the writer.
func TestViewSnapshot(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx Tx) error { return tx.PutMeta("k", "1") })
	view(t, s, func(tx Tx) error {
		v, err := tx.GetMeta("k")
		if err != nil || v != "1" {
			t.Fatalf("GetMeta = %q, %v", v, err)
		}
		update(t, s, func(tx Tx) error { return tx.PutMeta("k", "2") })
		v, err = tx.GetMeta("k")
		if v != "1" {
			t.Errorf("inside one View, value changed to %q", v)
		}
		return err
	})
	view(t, s, func(tx Tx) error {
		v, err := tx.GetMeta("k")
		if v != "2" {
			t.Errorf("after commit, GetMeta = %q, want 2", v)
		}
		return err
	})
}

func TestTimeOutOfRange(t *testing.T) {
	s, _ := openTest(t)
	err := s.Update(context.Background(), func(tx Tx) error {
		_, err := tx.AppendAudit(AuditEntry{Time: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
		return err
	})
	if err == nil {
		t.Error("storing year 9999 succeeded")
	}
}
