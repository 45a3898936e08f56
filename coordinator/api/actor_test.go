package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/spiffetrust"
	"github.com/latchnet/latch/internal/spiffetest"
	"github.com/latchnet/latch/wire"
)

// auditActor returns the actor of the newest audit entry with action.
func (h *harness) auditActor(action string) string {
	h.t.Helper()
	entries, err := h.Admin().Audit(context.Background())
	if err != nil {
		h.t.Fatalf("audit: %v", err)
	}
	for _, e := range entries {
		if e.Action == action {
			return e.Actor
		}
	}
	h.t.Fatalf("no audit entry %s", action)
	return ""
}

// TestSpiffeDecisionsAuditTheRealActor approves a pending SPIRE node with
// an API token and rejects it from a console session: the audit log names
// each, not "admin".
func TestSpiffeDecisionsAuditTheRealActor(t *testing.T) {
	spire := spiffetest.NewCA(t, "spire.test")
	h := newHarnessWith(t, coordtest.Options{
		Spiffe:     &spiffetrust.Trust{TD: spire.TD, Bundles: spire.Bundle()},
		SpireSVIDs: spiffetest.Static{SVID: spire.Issue(t, "spiffe://spire.test/latch/coordinator", time.Hour)},
	})
	laptop := coordtest.SpireNode(spire, spire.Issue(t, "spiffe://spire.test/dev/laptop", time.Hour)).HTTP
	if code, e := postJSON(t, laptop, h.URL+wire.PathRegister, wire.RegisterRequest{PublicKey: "k"}); code != http.StatusForbidden || e.Code != "pending" {
		t.Fatalf("register of an unmapped SPIRE node: %d %+v", code, e)
	}
	tok, err := h.Admin().CreateAPIToken(context.Background(), adminapi.APITokenRequest{Name: "ops", Role: "admin", TTL: "1h"})
	if err != nil {
		t.Fatalf("api token: %v", err)
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.Token) }
	if code, body := h.Call("POST", "/v1/admin/spiffe/nodes/approve", `{"node":"laptop","namespace":"dev"}`, bearer); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, body)
	}
	if got := h.auditActor("node.spiffe.admit"); got != "apitoken:ops" {
		t.Errorf("approval audited as %q, want apitoken:ops", got)
	}
	sid := h.sessionAs("alice", auth.RoleAdmin)
	session := func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: sid})
		r.Header.Set(auth.CSRFHeader, "csrf")
	}
	if code, body := h.Call("POST", "/v1/admin/spiffe/nodes/reject", `{"node":"laptop"}`, session); code != http.StatusNoContent {
		t.Fatalf("reject: %d %s", code, body)
	}
	if got := h.auditActor("node.spiffe.reject"); got != "alice" {
		t.Errorf("rejection audited as %q, want alice", got)
	}
}
