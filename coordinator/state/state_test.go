package state

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/fanout"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/grant"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/policy"
)

type env struct {
	t    *testing.T
	path string
	db   *store.SQLite
	s    *State
	now  time.Time
	n    int
	// grace is Options.GatewayGrace, and timers the grace timers Open
	// started, the last one last (see fakeAfter).
	grace  time.Duration
	timers []*fakeTimer
}

// fakeTimer is a timer of Options.AfterFunc that fires when the test
// says so.
type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped bool
}

func (e *env) fakeAfter(d time.Duration, f func()) func() bool {
	t := &fakeTimer{d: d, f: f}
	e.timers = append(e.timers, t)
	return func() bool { was := !t.stopped; t.stopped = true; return was }
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, path: filepath.Join(t.TempDir(), "latch.db"), now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	e.open()
	return e
}

func (e *env) open() {
	db, err := store.OpenSQLite(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db = db
	e.t.Cleanup(func() { db.Close() })
	s, err := Open(context.Background(), db, fanout.New(), Options{Now: func() time.Time { return e.now },
		GatewayGrace: e.grace, AfterFunc: e.fakeAfter})
	if err != nil {
		e.t.Fatal(err)
	}
	e.s = s
}

// token adds a join token for namespace prod, labels role=server,
// granting ws.
func (e *env) token(id string, uses int, ws ...grant.Workload) {
	if err := e.s.AddToken(context.Background(), "admin", store.Token{
		ID: id, SecretHash: []byte("h-" + id), Namespace: "prod", Labels: map[string]string{"role": "server"},
		Workloads: ws, UsesLeft: uses, ExpiresAt: e.now.Add(time.Hour), CreatedAt: e.now,
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) sign(store.Node) (Cert, error) {
	e.n++
	return Cert{Serial: fmt.Sprintf("%032x", e.n), NotAfter: e.now.Add(time.Hour)}, nil
}

func (e *env) enroll(tokenID, name string) store.Node {
	e.t.Helper()
	n, err := e.s.Enroll(context.Background(), Enrollment{TokenID: tokenID, SecretHash: []byte("h-" + tokenID), Name: name}, e.sign)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) register(name string, ws ...inventory.Workload) []inventory.Workload {
	e.t.Helper()
	_, out, err := e.s.Register(context.Background(), name, Registration{
		PublicKey: "key-" + name,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.10:51820")},
		Workloads: ws,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) peers(node string) map[string]bool {
	out := map[string]bool{}
	if v := e.s.View(node); v != nil {
		for _, p := range v.Peers {
			out[p.Node] = true
		}
	}
	return out
}

const allowAPI = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
    - to: [{podSelector: {matchLabels: {app: api}}}]
`

func TestEndToEndState(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("tok1", 3, grant.Workload{Namespace: "prod", Labels: map[string]string{"app": "web"}},
		grant.Workload{Namespace: "prod", Labels: map[string]string{"app": "api"}})
	a := e.enroll("tok1", "node-a")
	b := e.enroll("tok1", "node-b")
	c := e.enroll("tok1", "node-c")
	if a.Namespace != "prod" || a.Labels["role"] != "server" || !a.IP.IsValid() || a.IP == b.IP {
		t.Fatalf("enrolled nodes: %+v %+v", a, b)
	}
	web := e.register("node-a", inventory.Workload{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}})
	api := e.register("node-b", inventory.Workload{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"},
		Ports: []inventory.Port{{Port: 8080, Protocol: inventory.TCP}}})
	e.register("node-c")
	if len(e.peers("node-a")) != 0 {
		t.Fatalf("peers before any policy (baseline deny): %v", e.peers("node-a"))
	}
	if _, err := e.s.ApplyPolicies(ctx, "admin", policy.File{Name: "p.yaml", Data: []byte(allowAPI)}); err != nil {
		t.Fatal(err)
	}
	if !e.peers("node-a")["node-b"] || !e.peers("node-b")["node-a"] || len(e.peers("node-c")) != 0 {
		t.Fatalf("peers after policy: a=%v b=%v c=%v", e.peers("node-a"), e.peers("node-b"), e.peers("node-c"))
	}
	// Re-registering keeps addresses.
	web2 := e.register("node-a", inventory.Workload{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}})
	if web2[0].IP != web[0].IP {
		t.Fatalf("workload address changed on re-register: %v -> %v", web[0].IP, web2[0].IP)
	}

	// A bad policy is refused and the old one stays in force.
	before := e.s.View("node-a").Version
	_, err := e.s.ApplyPolicies(ctx, "admin", policy.File{Name: "bad.yaml", Data: []byte(allowAPI + "---\nkind: NetworkPolicy\n")})
	if !errors.Is(err, policy.ErrInvalid) {
		t.Fatalf("bad policy: %v", err)
	}
	if e.s.View("node-a").Version != before || !e.peers("node-a")["node-b"] {
		t.Fatal("a refused policy changed the views")
	}

	// The token had three uses.
	_, err = e.s.Enroll(ctx, Enrollment{TokenID: "tok1", SecretHash: []byte("h-tok1"), Name: "node-d"}, e.sign)
	if !errors.Is(err, store.ErrTokenUsed) {
		t.Fatalf("fourth use of a 3-use token: %v", err)
	}

	// Restart: same peers, newer versions, same addresses.
	versionA := e.s.View("node-a").Version
	e.db.Close()
	e.now = e.now.Add(time.Minute)
	e.open()
	if !e.peers("node-a")["node-b"] || e.s.View("node-a").Version <= versionA {
		t.Fatalf("after restart: peers %v, version %d (was %d)", e.peers("node-a"), e.s.View("node-a").Version, versionA)
	}
	api2 := e.register("node-b", inventory.Workload{Name: "api", Namespace: "prod", Labels: map[string]string{"app": "api"},
		Ports: []inventory.Port{{Port: 8080, Protocol: inventory.TCP}}})
	if api2[0].IP != api[0].IP {
		t.Fatalf("address changed across restart")
	}

	// Deleting a node drops it from its peers and revokes its certificate.
	nb, err := e.s.NodeForCert(ctx, "node-b", fmt.Sprintf("%032x", 2))
	if err != nil || nb.Name != "node-b" {
		t.Fatalf("NodeForCert before delete: %v", err)
	}
	if err := e.s.DeleteNode(ctx, "admin", "node-b"); err != nil {
		t.Fatal(err)
	}
	if e.peers("node-a")["node-b"] || e.s.View("node-b") != nil {
		t.Fatalf("deleted node still seen: %v", e.peers("node-a"))
	}
	if _, err := e.s.NodeForCert(ctx, "node-b", fmt.Sprintf("%032x", 2)); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	_ = c
}

func TestEnrollRollsBackWhenSigningFails(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("once", 1)
	_, err := e.s.Enroll(ctx, Enrollment{TokenID: "once", SecretHash: []byte("h-once"), Name: "n1"},
		func(store.Node) (Cert, error) { return Cert{}, errors.New("boom") })
	if err == nil {
		t.Fatal("enroll succeeded although signing failed")
	}
	// Nothing was used up or stored: the single-use token still works.
	e.enroll("once", "n1")
	if _, err := e.s.Enroll(ctx, Enrollment{TokenID: "once", SecretHash: []byte("h-once"), Name: "n2"}, e.sign); !errors.Is(err, store.ErrTokenUsed) {
		t.Fatalf("second use: %v", err)
	}
}

func TestEnrollErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.token("t", 5)
	e.enroll("t", "dup")
	for _, c := range []struct {
		en   Enrollment
		want error
	}{
		{Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "dup"}, ErrConflict},
		{Enrollment{TokenID: "t", SecretHash: []byte("wrong"), Name: "x"}, store.ErrNotFound},
		{Enrollment{TokenID: "nope", SecretHash: []byte("h-nope"), Name: "x"}, store.ErrNotFound},
		{Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "Bad_Name"}, ErrInvalid},
	} {
		if _, err := e.s.Enroll(ctx, c.en, e.sign); !errors.Is(err, c.want) {
			t.Errorf("%+v: err %v, want %v", c.en, err, c.want)
		}
	}
	e.now = e.now.Add(2 * time.Hour)
	if _, err := e.s.Enroll(ctx, Enrollment{TokenID: "t", SecretHash: []byte("h-t"), Name: "late"}, e.sign); !errors.Is(err, store.ErrTokenExpired) {
		t.Errorf("expired token: %v", err)
	}
}
