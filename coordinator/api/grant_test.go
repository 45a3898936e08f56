package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/wire"
)

func decl(ns, name string, labels ...string) wire.WorkloadDecl {
	d := wire.WorkloadDecl{Namespace: ns, Name: name}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		if d.Labels == nil {
			d.Labels = map[string]string{}
		}
		d.Labels[k] = v
	}
	return d
}

// A node asking for app=web with a token that grants no labels is
// refused, and told where labels come from.
func TestEnrollLabelsNotGranted(t *testing.T) {
	h := newHarness(t)
	tok := h.Token(1)
	n, code, msg := h.EnrollLabels(tok, "laptop", map[string]string{"app": "web"})
	if n != nil || code != http.StatusForbidden || !strings.Contains(msg, "latch admin token create --labels") {
		t.Fatalf("enroll asking for app=web: %d %q, want 403 saying labels come from the token", code, msg)
	}
	// The refusal did not use the single-use token up.
	if n, code, msg := h.Enroll(tok, "laptop"); n == nil || len(n.Info.Labels) != 0 {
		t.Fatalf("enroll without labels: %d %q %+v", code, msg, n)
	}
}

// The attack of issue 12: a dev laptop declares prod/fake-web with
// app=web. Nobody granted it; the registration is refused whole, with an
// audit entry, and prod/web's flows stay prod/web's.
func TestRegisterUngrantedWorkload(t *testing.T) {
	h := newHarness(t)
	laptop, code, msg := h.Enroll(h.Token(1, "namespace=dev,labels=app=tool"), "laptop")
	if laptop == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	req := wire.RegisterRequest{PublicKey: "key-laptop", Workloads: []wire.WorkloadDecl{decl("dev", "tool", "app=tool"), decl("prod", "fake-web", "app=web")}}
	code, body := h.Post(laptop, wire.PathRegister, req, nil)
	if code != http.StatusForbidden || !strings.Contains(body, "prod/fake-web") || !strings.Contains(body, "namespace=prod,labels=app=web") {
		t.Fatalf("register of prod/fake-web: %d %s, want 403 naming the workload and the grant it lacks", code, body)
	}
	c, ctx := h.Admin(), context.Background()
	audit, err := c.Audit(ctx)
	if err != nil || !slices.ContainsFunc(audit, func(e adminapi.AuditEntry) bool {
		return e.Action == "node.register.refused" && strings.Contains(e.Object+e.Detail, "prod/fake-web")
	}) {
		t.Errorf("no audit entry for the refusal: %v %+v", err, audit)
	}
	if wls, err := c.Workloads(ctx); err != nil || len(wls) != 0 {
		t.Errorf("a refused registration left workloads behind: %v %+v", err, wls)
	}
	// What was granted registers.
	req.Workloads = req.Workloads[:1]
	if code, body := h.Post(laptop, wire.PathRegister, req, nil); code != 200 {
		t.Fatalf("register of the granted workload: %d %s", code, body)
	}
}

// An admin grants a workload to an enrolled node and revokes it again.
func TestAdminGrantRevoke(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.Enroll(h.Token(1), "n1")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	req := wire.RegisterRequest{PublicKey: "key-n1", Workloads: []wire.WorkloadDecl{decl("prod", "web", "app=web")}}
	if code, _ := h.Post(n, wire.PathRegister, req, nil); code != http.StatusForbidden {
		t.Fatalf("register before the grant: %d", code)
	}
	c, ctx := h.Admin(), context.Background()
	if g, err := c.GrantNode(ctx, "n1", adminapi.GrantSet{Workloads: []adminapi.Grant{adminapi.GrantSpec("namespace=prod,labels=app=web")}}); err != nil ||
		len(g.Granted.Workloads) != 1 || g.Granted.Workloads[0].Labels["app"] != "web" {
		t.Fatalf("grant: %v %+v", err, g)
	}
	if code, body := h.Post(n, wire.PathRegister, req, nil); code != 200 {
		t.Fatalf("register after the grant: %d %s", code, body)
	}
	if _, err := c.GrantNode(ctx, "n1", adminapi.GrantSet{Workloads: []adminapi.Grant{{Namespace: "prod", Labels: map[string]string{"spiffe.io/id": "x"}}}}); !client.IsCode(err, "invalid") {
		t.Errorf("grant of a reserved label: %v", err)
	}
	if g, err := c.RevokeNodeGrants(ctx, "n1", adminapi.GrantSet{Workloads: []adminapi.Grant{{Namespace: "prod", Labels: map[string]string{"app": "web"}}}}); err != nil || len(g.Granted.Workloads) != 0 {
		t.Fatalf("revoke: %v %+v", err, g)
	}
	if wls, err := c.Workloads(ctx); err != nil || slices.ContainsFunc(wls, func(w adminapi.Workload) bool { return w.Name == "web" }) {
		t.Errorf("the revoked workload is still registered: %v %+v", err, wls)
	}
}

func TestRegisterDuplicatePublicKey(t *testing.T) {
	h := newHarness(t)
	tok := h.Token(2)
	a, _, _ := h.Enroll(tok, "node-a")
	b, _, _ := h.Enroll(tok, "node-b")
	if a == nil || b == nil {
		t.Fatal("enroll failed")
	}
	if code, body := h.Post(a, wire.PathRegister, wire.RegisterRequest{PublicKey: "same-key"}, nil); code != 200 {
		t.Fatalf("register a: %d %s", code, body)
	}
	if code, body := h.Post(b, wire.PathRegister, wire.RegisterRequest{PublicKey: "same-key"}, nil); code != http.StatusConflict || !strings.Contains(body, "node-a") {
		t.Fatalf("b registering a's public key: %d %s, want 409 naming node-a", code, body)
	}
}

func TestRegisterTooManyWorkloads(t *testing.T) {
	h := newHarness(t)
	n, _, msg := h.Enroll(h.Token(1, "namespace=prod"), "busy")
	if n == nil {
		t.Fatal(msg)
	}
	req := wire.RegisterRequest{PublicKey: "key-busy"}
	for i := range 65 {
		req.Workloads = append(req.Workloads, decl("prod", fmt.Sprintf("w%d", i)))
	}
	code, body := h.Post(n, wire.PathRegister, req, nil)
	if code != http.StatusForbidden || !strings.Contains(body, "at most 64") {
		t.Fatalf("65 workloads: %d %s, want 403 naming the limit of 64", code, body)
	}
	req.Workloads = req.Workloads[:64]
	if code, body := h.Post(n, wire.PathRegister, req, nil); code != 200 {
		t.Fatalf("64 workloads: %d %s", code, body)
	}
}
