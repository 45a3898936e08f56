package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/coordtest"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/wire"
)

// renew renews n's certificate and returns a client with the new one;
// n keeps the old one.
func (h *harness) renew(n *coordtest.Node) *coordtest.Node {
	h.t.Helper()
	var sr wire.SVIDResponse
	if code, body := h.Post(n, wire.PathRenew, wire.RenewRequest{CSR: coordtest.CSR(h.t, n.Key)}, &sr); code != http.StatusOK {
		h.t.Fatalf("renew: %d %s", code, body)
	}
	return n.WithCert(sr.Chain)
}

func TestRenewedCertificateIsRefusedAfterTheGrace(t *testing.T) {
	h := newHarness(t)
	old, code, msg := h.Enroll(h.Token(1), "node-a")
	if old == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	cur := h.renew(old)
	if code, body := h.Register(old.WithCert(old.Cert.Certificate)); code != http.StatusOK {
		t.Fatalf("the previous certificate during the grace: %d %s", code, body)
	}
	h.Clock.Advance(state.RenewGrace)
	if code, body := h.Register(old.WithCert(old.Cert.Certificate)); code != http.StatusForbidden || !strings.Contains(body, "replaced") {
		t.Fatalf("the previous certificate after the grace: %d %s", code, body)
	}
	if code, body := h.Register(cur); code != http.StatusOK {
		t.Fatalf("the current certificate: %d %s", code, body)
	}
}

func TestCertificatesOfADeletedNodeAreRefusedAfterReenrollment(t *testing.T) {
	h := newHarness(t)
	first, code, msg := h.Enroll(h.Token(1), "node-a")
	if first == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	renewed := h.renew(first)
	if code, body := h.Register(renewed); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	if err := h.Admin().DeleteNode(context.Background(), "node-a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	again, code, msg := h.Enroll(h.Token(1), "node-a")
	if again == nil {
		t.Fatalf("enroll again: %d %s", code, msg)
	}
	for what, n := range map[string]*coordtest.Node{"pre-renewal": first, "post-renewal": renewed} {
		if code, body := h.Register(n.WithCert(n.Cert.Certificate)); code != http.StatusForbidden {
			t.Errorf("the %s certificate of the deleted node-a, after node-a enrolled again: %d %s", what, code, body)
		}
	}
	if code, body := h.Register(again); code != http.StatusOK {
		t.Errorf("the re-enrolled node: %d %s", code, body)
	}
}
