package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/spiffemap"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

func wl(ns, name string, labels ...string) inventory.Workload {
	w := inventory.Workload{Namespace: ns, Name: name}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		if w.Labels == nil {
			w.Labels = map[string]string{}
		}
		w.Labels[k] = v
	}
	return w
}

func (e *env) audit(action string) []store.AuditEntry {
	e.t.Helper()
	var out []store.AuditEntry
	err := e.s.Read(context.Background(), func(tx store.Tx) error {
		all, err := tx.ListAudit(0)
		for _, a := range all {
			if a.Action == action {
				out = append(out, a)
			}
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) workloadsOf(node string) []string {
	e.t.Helper()
	var out []string
	err := e.s.Read(context.Background(), func(tx store.Tx) error {
		all, err := tx.ListWorkloads()
		for _, w := range all {
			if w.Node == node {
				out = append(out, w.Key())
			}
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// A node's labels are exactly its token's: asking for others is refused,
// and the refusal does not use the token up.
func TestEnrollRefusesLabelsNotOnToken(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 1) // grants role=server
	_, err := e.s.Enroll(ctx, Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "laptop", Labels: map[string]string{"app": "web"}}, e.sign)
	if !errors.Is(err, ErrNotGranted) || !strings.Contains(err.Error(), "latch admin token create --labels") {
		t.Fatalf("enroll asking for app=web: %v, want ErrNotGranted pointing at token create --labels", err)
	}
	// A superset of the token's labels is refused too.
	_, err = e.s.Enroll(ctx, Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "laptop", Labels: map[string]string{"role": "server", "app": "web"}}, e.sign)
	if !errors.Is(err, ErrNotGranted) {
		t.Fatalf("enroll asking for the token's labels plus app=web: %v, want ErrNotGranted", err)
	}
	// Asking for exactly the token's labels works, and the token was not
	// used up by the refusals.
	n, err := e.s.Enroll(ctx, Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "laptop", Labels: map[string]string{"role": "server"}}, e.sign)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Labels) != 1 || n.Labels["role"] != "server" {
		t.Fatalf("labels %v, want exactly the token's", n.Labels)
	}
}

// The reserved label keys are refused on tokens and approvals.
func TestReservedLabelsRefused(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for _, labels := range []map[string]string{{policy.SpiffeIDLabel: "sha256-00"}, {"spiffe.io/other": "x"}} {
		err := e.s.AddToken(ctx, "admin", store.Token{ID: "r", SecretHash: []byte("h"), Namespace: "prod", Labels: labels, UsesLeft: 1, ExpiresAt: e.now.Add(time.Hour)})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("token with labels %v: %v, want ErrInvalid", labels, err)
		}
		err = e.s.AddToken(ctx, "admin", store.Token{ID: "r", SecretHash: []byte("h"), Namespace: "prod", UsesLeft: 1, ExpiresAt: e.now.Add(time.Hour),
			Workloads: []grant.Workload{{Namespace: "prod", Labels: labels}}})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("token granting a workload with labels %v: %v, want ErrInvalid", labels, err)
		}
	}
	if _, err := e.s.SpiffeNode(ctx, "spiffe://spire.test/x/pend"); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	if _, err := e.s.ApproveSpiffeNode(ctx, "admin", "pend", "prod", map[string]string{policy.SpiffeIDLabel: "x"}, grant.Set{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("approval with the reserved label: %v, want ErrInvalid", err)
	}
	// A node declaring it is refused as well.
	e.token("t", 1)
	e.enroll("t", "n")
	_, _, err := e.s.Register(ctx, "n", Registration{PublicKey: "k", Workloads: []inventory.Workload{wl("prod", "w", policy.SpiffeIDLabel+"=sha256-00")}})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("workload declaring the reserved label: %v, want ErrInvalid", err)
	}
}

// A dev laptop declaring prod/fake-web with app=web, which nobody granted
// it, is refused as a whole, with an audit entry, and nothing changes.
func TestRegisterUngrantedWorkloadRefused(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 1, grant.Workload{Namespace: "dev", Labels: map[string]string{"app": "tool"}})
	e.enroll("t", "laptop")
	e.register("laptop", wl("dev", "tool", "app=tool"))

	reg := Registration{PublicKey: "new-key", Workloads: []inventory.Workload{wl("dev", "tool", "app=tool"), wl("secret", "fake-web", "app=web")}}
	_, _, err := e.s.Register(ctx, "laptop", reg)
	if !errors.Is(err, ErrNotGranted) {
		t.Fatalf("register with an ungranted workload: %v, want ErrNotGranted", err)
	}
	for _, want := range []string{"secret/fake-web", "app=web", "latch admin node grant laptop --workload 'namespace=secret,labels=app=web,name=fake-web'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	refused := e.audit("node.register.refused")
	if len(refused) != 1 || refused[0].Object != "laptop" || !strings.Contains(refused[0].Detail, "secret/fake-web") {
		t.Fatalf("audit of the refusal: %+v", refused)
	}
	// Nothing half-applied: the old registration stands, the namespace
	// was not created.
	if got := e.workloadsOf("laptop"); fmt.Sprint(got) != "[dev/tool]" {
		t.Errorf("workloads after the refusal: %v", got)
	}
	e.s.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNamespace("secret"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("namespace secret after the refusal: %v, want it not created", err)
		}
		if n, _ := tx.GetNode("laptop"); n.PublicKey != "key-laptop" {
			t.Errorf("public key after the refusal: %q", n.PublicKey)
		}
		return nil
	})
	// The node retries: the same refusal is not audited again within a
	// minute, but is after.
	e.s.Register(ctx, "laptop", reg)
	if n := len(e.audit("node.register.refused")); n != 1 {
		t.Errorf("%d refusal entries after a quick retry, want 1", n)
	}
	e.now = e.now.Add(RefusalAuditEvery)
	e.s.Register(ctx, "laptop", reg)
	if n := len(e.audit("node.register.refused")); n != 2 {
		t.Errorf("%d refusal entries after a retry a minute later, want 2", n)
	}
}

// A grant matches namespace, the exact label set and the name pattern.
func TestRegisterGrantedWorkload(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 1, grant.Workload{Namespace: "shop", Labels: map[string]string{"app": "web"}, Name: "web-*"})
	e.enroll("t", "n")
	out := e.register("n", wl("shop", "web-1", "app=web"), wl("shop", "web-2", "app=web"))
	if len(out) != 2 || !out[0].IP.IsValid() {
		t.Fatalf("granted workloads: %+v", out)
	}
	e.s.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetNamespace("shop"); err != nil {
			t.Errorf("the granted namespace was not created: %v", err)
		}
		return nil
	})
	for _, w := range []inventory.Workload{
		wl("shop", "web-3", "app=web", "env=canary"), // a label more
		wl("shop", "web-3"),                          // fewer
		wl("shop", "db", "app=web"),                  // name outside the pattern
		wl("prod", "web-3", "app=web"),               // another namespace
	} {
		if _, _, err := e.s.Register(ctx, "n", Registration{PublicKey: "key-n", Workloads: []inventory.Workload{w}}); !errors.Is(err, ErrNotGranted) {
			t.Errorf("%s %v: %v, want ErrNotGranted", w.Key(), w.Labels, err)
		}
	}
}

func TestRegisterDuplicatePublicKey(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 2)
	e.enroll("t", "a")
	e.enroll("t", "b")
	e.register("a")
	_, _, err := e.s.Register(ctx, "b", Registration{PublicKey: "key-a"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("b registering a's key: %v, want ErrConflict naming a", err)
	}
	if v := e.s.View("a"); v == nil {
		t.Fatal("node a lost its view")
	}
}

func TestRegisterWorkloadLimit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	s, err := Open(ctx, e.db, fanout.New(), Options{Now: func() time.Time { return e.now }, MaxWorkloadsPerNode: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	e.token("t", 1, grant.Workload{Namespace: "prod"})
	e.enroll("t", "n")
	e.register("n", wl("prod", "a"), wl("prod", "b"))
	_, _, err = s.Register(ctx, "n", Registration{PublicKey: "key-n", Workloads: []inventory.Workload{wl("prod", "a"), wl("prod", "b"), wl("prod", "c")}})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "--max-workloads-per-node") {
		t.Fatalf("three workloads with a limit of two: %v, want ErrLimit naming the flag", err)
	}
}

// A SPIRE node may declare only the workload SPIFFE IDs its mapping entry
// lists.
func TestRegisterWorkloadSpiffeIDs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m, err := spiffemap.New([]spiffemap.Entry{{
		ID: "spiffe://spire.test/agent/*", Namespace: "prod",
		Workloads:   []grant.Workload{{Namespace: "prod", Labels: map[string]string{"app": "web"}}},
		WorkloadIDs: []string{"spiffe://spire.test/ns/prod/sa/web"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, e.db, fanout.New(), Options{Now: func() time.Time { return e.now }, SpiffeMap: m})
	if err != nil {
		t.Fatal(err)
	}
	const nodeID = "spiffe://spire.test/agent/n1"
	if _, err := s.SpiffeNode(ctx, nodeID); err != nil {
		t.Fatal(err)
	}
	reg := func(id string) error {
		_, _, err := s.Register(ctx, "n1", Registration{PublicKey: "k1", SpiffeID: nodeID,
			Workloads: []inventory.Workload{wl("prod", "web", "app=web")}, WorkloadIDs: map[string]string{"prod/web": id}})
		return err
	}
	if err := reg("spiffe://spire.test/ns/prod/sa/admin"); !errors.Is(err, ErrNotGranted) || !strings.Contains(err.Error(), "sa/admin") {
		t.Fatalf("workload ID outside the entry's patterns: %v, want ErrNotGranted", err)
	}
	if err := reg("spiffe://spire.test/ns/prod/sa/web"); err != nil {
		t.Fatalf("workload ID the entry lists: %v", err)
	}
	var got map[string]string
	s.Read(ctx, func(tx store.Tx) error {
		ws, err := tx.ListWorkloads()
		for _, w := range ws {
			got = w.Labels
		}
		return err
	})
	if got[policy.SpiffeIDLabel] != policy.SpiffeLabelValue("spiffe://spire.test/ns/prod/sa/web") || got["app"] != "web" {
		t.Errorf("labels of the SPIRE workload: %v", got)
	}
	// The entry's grants count only for the node it admitted: without
	// its SPIFFE ID the same node has none.
	_, _, err = s.Register(ctx, "n1", Registration{PublicKey: "k1", Workloads: []inventory.Workload{wl("prod", "web", "app=web")}})
	if !errors.Is(err, ErrNotGranted) {
		t.Errorf("without the node's SPIFFE ID: %v, want ErrNotGranted", err)
	}
}

// An admin grants and revokes; a revoked grant takes the workloads it
// covered off the node at once.
func TestGrantAndRevoke(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 1)
	e.enroll("t", "n")
	web := grant.Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}}
	if _, _, err := e.s.Register(ctx, "n", Registration{PublicKey: "k", Workloads: []inventory.Workload{wl("prod", "web", "app=web")}}); !errors.Is(err, ErrNotGranted) {
		t.Fatalf("before the grant: %v", err)
	}
	if _, err := e.s.GrantNode(ctx, "alice", "n", grant.Set{Workloads: []grant.Workload{web}}); err != nil {
		t.Fatal(err)
	}
	e.register("n", wl("prod", "web", "app=web"))
	if _, err := e.s.GrantNode(ctx, "alice", "ghost", grant.Set{Workloads: []grant.Workload{web}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("grant to a missing node: %v", err)
	}
	if _, err := e.s.GrantNode(ctx, "alice", "n", grant.Set{Workloads: []grant.Workload{{Namespace: "prod", Labels: map[string]string{policy.SpiffeIDLabel: "x"}}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("grant with a reserved label: %v", err)
	}
	if _, err := e.s.RevokeNode(ctx, "alice", "n", grant.Set{Workloads: []grant.Workload{web}}); err != nil {
		t.Fatal(err)
	}
	if got := e.workloadsOf("n"); len(got) != 0 {
		t.Errorf("workloads after the revoke: %v", got)
	}
	if _, err := e.s.RevokeNode(ctx, "alice", "n", grant.Set{Workloads: []grant.Workload{web}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("revoking a grant the node does not hold: %v", err)
	}
	g, err := e.s.Grants(ctx, "n")
	if err != nil || !g.Granted.Empty() {
		t.Errorf("grants after the revoke: %+v, %v", g, err)
	}
	if a := e.audit("node.grant"); len(a) != 1 || a[0].Actor != "alice" {
		t.Errorf("audit of the grant: %+v", a)
	}
	if a := e.audit("node.revoke"); len(a) != 1 || !strings.Contains(a[0].Detail, "before") {
		t.Errorf("audit of the revoke: %+v", a)
	}
}

// Malformed declarations are refused before any grant is looked up, so a
// refusal never quotes them in the audit log.
func TestRegisterMalformedDeclaration(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 1)
	e.enroll("t", "n")
	for _, w := range []inventory.Workload{
		wl("prod", strings.Repeat("x", 300)),
		wl("Prod", "web"),
		wl("prod", "web", "bad key!=x"),
		wl("prod", "web", "app="+strings.Repeat("v", 100)),
	} {
		if _, _, err := e.s.Register(ctx, "n", Registration{PublicKey: "k", Workloads: []inventory.Workload{w}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%.40q: %v, want ErrInvalid", w.Key(), err)
		}
	}
	if a := e.audit("node.register.refused"); len(a) != 0 {
		t.Errorf("malformed declarations were audited: %+v", a)
	}
}
