package api_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi/client"
	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/inventory"
	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// harness is a real coordinator in-process (coordtest) with the helpers
// of these tests.
type harness struct {
	*coordtest.Coordinator
	t *testing.T
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, coordtest.Options{}) }

func newHarnessWith(t *testing.T, o coordtest.Options) *harness {
	return &harness{Coordinator: coordtest.New(t, o), t: t}
}

const policies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web-api, namespace: prod}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
  egress: [{to: [{podSelector: {}}]}]
`

func TestNodeLifecycle(t *testing.T) {
	h := newHarness(t)
	tok := h.Token(2, "namespace=prod,name=w-*")
	a, code, msg := h.Enroll(tok, "node-a")
	if a == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	b, _, _ := h.Enroll(tok, "node-b")
	if _, code, msg := h.Enroll(tok, "node-c"); code != http.StatusUnauthorized || !strings.Contains(msg, "used") {
		t.Fatalf("third use of a 2-use token: %d %q", code, msg)
	}
	if a.Info.Namespace != "prod" || !a.Info.IP.IsValid() || a.Info.Route.String() != "100.64.0.0/10" {
		t.Fatalf("node info: %+v", a.Info)
	}
	for _, n := range []*coordtest.Node{a, b} {
		code, body := h.Post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: "key-" + n.Info.Name,
			Workloads: []wire.WorkloadDecl{{Name: "w-" + n.Info.Name, Namespace: "prod", Ports: []inventory.Port{{Port: 80}}}}}, nil)
		if code != 200 {
			t.Fatalf("register: %d %s", code, body)
		}
	}
	// Stream: the first message is a full view with no peers (deny).
	lines := h.ViewStream(a)
	next := func() wire.StreamMessage {
		for lines.Scan() {
			var m wire.StreamMessage
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if !m.Keepalive {
				return m
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return wire.StreamMessage{}
	}
	m := next()
	if m.Full == nil || len(m.Full.Peers) != 0 {
		t.Fatalf("first message: %+v", m)
	}
	// A bad policy is refused with the validator's message.
	ctx := context.Background()
	c := h.Admin()
	if _, err := c.ApplyPolicies(ctx, "bad.yaml", "", []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: prod}\nspec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n")); !client.IsCode(err, "invalid") || !strings.Contains(err.Error(), "bad.yaml: document 1") {
		t.Fatalf("bad policy: %v", err)
	}
	// A good one makes a and b peers, delivered as a delta.
	if _, err := c.ApplyPolicies(ctx, "", "", []byte(policies)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	m = next()
	if m.Delta == nil || len(m.Delta.UpsertPeers) != 1 || m.Delta.UpsertPeers[0].Node != "node-b" || m.Delta.UpsertPeers[0].PublicKey != "key-node-b" {
		t.Fatalf("after policy: %+v", m)
	}
	// Renewal gives a new certificate.
	var sr wire.SVIDResponse
	if code, body := h.Post(a, wire.PathRenew, wire.RenewRequest{CSR: coordtest.CSR(t, a.Key)}, &sr); code != 200 || len(sr.Chain) == 0 {
		t.Fatalf("renew: %d %s", code, body)
	}
	// Deleting b removes it from a's view; b's certificate is refused.
	if err := c.DeleteNode(ctx, "node-b"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	m = next()
	if m.Delta == nil || len(m.Delta.RemovePeers) != 1 {
		t.Fatalf("after delete: %+v", m)
	}
	if code, body := h.Post(b, wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}, nil); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Fatalf("deleted node's certificate: %d %s", code, body)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	// No admin token.
	req, _ := http.NewRequest("GET", h.URL+"/v1/admin/nodes", nil)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin without token: %d", resp.StatusCode)
	}
	// Node calls without a client certificate.
	resp, err = c.Post(h.URL+wire.PathRegister, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("register without a certificate: %d", resp.StatusCode)
	}
	// A token made for another coordinator.
	other, err := ca.Open(t.TempDir(), spiffeid.RequireTrustDomainFromString("example.test"), ca.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := ca.NewToken(other.Fingerprint())
	if n, _, msg := h.Enroll(tok.String(), "x"); n != nil || !strings.Contains(msg, "fingerprint mismatch") {
		t.Fatalf("enrolling with a token pinned to another CA: %q", msg)
	}
}

func TestExpiredCertificateIsRefusedWithAReason(t *testing.T) {
	h := newHarness(t)
	n, code, msg := h.Enroll(h.Token(1), "old")
	if n == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	h.Clock.Advance(2 * time.Hour)
	code, body := h.Post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}, nil)
	if code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired certificate: %d %s", code, body)
	}
}
