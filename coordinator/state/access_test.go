package state

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
)

func TestUsersSessionsTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if has, _ := e.s.HasUsers(ctx); has {
		t.Fatal("a new store has users")
	}
	for _, u := range []store.User{{Name: "Bad", Role: "admin", PasswordHash: "h"}, {Name: "a", Role: "root", PasswordHash: "h"}, {Name: "a", Role: "admin"}} {
		if err := e.s.CreateUser(ctx, "t", u); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateUser(%+v): %v, want ErrInvalid", u, err)
		}
	}
	if err := e.s.CreateUser(ctx, "t", store.User{Name: "ann", Role: auth.RoleAdmin, PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.CreateUser(ctx, "t", store.User{Name: "ann", Role: auth.RoleViewer, PasswordHash: "h"}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate user: %v", err)
	}
	if err := e.s.DeleteUser(ctx, "t", "ann"); !errors.Is(err, ErrConflict) {
		t.Errorf("deleting the last admin: %v", err)
	}

	sess := store.Session{IDHash: auth.HashSecret("sid"), User: "ann", CSRF: "c", CreatedAt: e.now, ExpiresAt: e.now.Add(time.Hour)}
	if err := e.s.Login(ctx, sess); err != nil {
		t.Fatal(err)
	}
	p, err := e.s.SessionPrincipal(ctx, "sid")
	if err != nil || p.Name != "ann" || p.Role != auth.RoleAdmin || p.CSRF != "c" {
		t.Errorf("SessionPrincipal: %+v %v", p, err)
	}
	if _, err := e.s.SessionPrincipal(ctx, "other"); !errors.Is(err, ErrNoSession) {
		t.Errorf("unknown session: %v", err)
	}
	e.now = e.now.Add(2 * time.Hour)
	if _, err := e.s.SessionPrincipal(ctx, "sid"); !errors.Is(err, ErrNoSession) {
		t.Errorf("expired session: %v", err)
	}

	if err := e.s.AddAPIToken(ctx, "ann", store.APIToken{ID: "i", Name: "", Role: "viewer", SecretHash: auth.HashSecret("s")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("token without a name: %v", err)
	}
	if err := e.s.AddAPIToken(ctx, "ann", store.APIToken{ID: "i", Name: "ci", Role: "viewer", SecretHash: auth.HashSecret("s"), ExpiresAt: e.now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if p, err := e.s.APITokenPrincipal(ctx, "i", "s"); err != nil || p.Name != "apitoken:ci" || p.Role != "viewer" {
		t.Errorf("APITokenPrincipal: %+v %v", p, err)
	}
	if _, err := e.s.APITokenPrincipal(ctx, "i", "wrong"); !errors.Is(err, ErrBadToken) {
		t.Errorf("wrong secret: %v", err)
	}
	e.now = e.now.Add(2 * time.Hour)
	if _, err := e.s.APITokenPrincipal(ctx, "i", "s"); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired token: %v", err)
	}
}

func TestWatchAndPresence(t *testing.T) {
	e := newEnv(t)
	w, stop := e.s.Watch()
	defer stop()
	e.token("t1", 1)
	e.enroll("t1", "n1")
	e.s.StreamOpened("n1")
	e.s.StreamOpened("n1") // a second stream: no second connect
	if !e.s.Online()["n1"] {
		t.Error("n1 not online with a stream open")
	}
	e.s.StreamClosed("n1")
	if !e.s.Online()["n1"] {
		t.Error("n1 offline while one stream is still open")
	}
	e.s.StreamClosed("n1")
	if e.s.Online()["n1"] {
		t.Error("n1 online with no stream")
	}
	var got []string
	for len(got) < 4 {
		select {
		case ev := <-w.C:
			got = append(got, ev.Action+" "+ev.Object)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %v", got)
		}
	}
	want := "token.create t1,node.enroll n1,node.connect n1,node.disconnect n1"
	if strings.Join(got, ",") != want {
		t.Errorf("events %v, want %s", got, want)
	}
	if w.Lost() {
		t.Error("events lost")
	}
}

func TestAuditBeforeAfter(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	doc := func(port string) policy.File {
		return policy.File{Name: "p", Data: []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: " + port + "}]}]\n")}
	}
	if _, err := e.s.ApplyPolicies(ctx, "ann", doc("80")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.ApplyPolicies(ctx, "ann", doc("81")); err != nil {
		t.Fatal(err)
	}
	var entries []store.AuditEntry
	e.s.Read(ctx, func(tx store.Tx) error {
		var err error
		entries, err = tx.ListAudit(1)
		return err
	})
	var d struct{ Before, After map[string]string }
	if err := json.Unmarshal([]byte(entries[0].Detail), &d); err != nil {
		t.Fatal(err)
	}
	if entries[0].Actor != "ann" || !strings.Contains(d.Before["prod/web"], "port: 80") || !strings.Contains(d.After["prod/web"], "port: 81") {
		t.Errorf("audit entry %+v: want ann's change from port 80 to 81", entries[0])
	}
}
