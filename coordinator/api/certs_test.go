package api

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/wire"
)

// withCert returns a client of n that presents chain (with n's key), on
// connections of its own.
func (n *nodeClient) withCert(chain [][]byte) *nodeClient {
	o := &nodeClient{key: n.key, info: n.info, cert: tls.Certificate{Certificate: chain, PrivateKey: n.key}}
	cfg := n.http.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &o.cert, nil }
	o.http = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	return o
}

// renew renews n's certificate and returns a client with the new one;
// n keeps the old one.
func (h *harness) renew(n *nodeClient) *nodeClient {
	h.t.Helper()
	var sr wire.SVIDResponse
	if code, body := h.post(n, wire.PathRenew, wire.RenewRequest{CSR: csrFor(h.t, n.key)}, &sr); code != http.StatusOK {
		h.t.Fatalf("renew: %d %s", code, body)
	}
	return n.withCert(sr.Chain)
}

func (h *harness) register(n *nodeClient) (int, string) {
	h.t.Helper()
	return h.post(n, wire.PathRegister, wire.RegisterRequest{PublicKey: "key-" + n.info.Name}, nil)
}

func TestRenewedCertificateIsRefusedAfterTheGrace(t *testing.T) {
	h := newHarness(t)
	old, code, msg := h.enroll(h.token(1), "node-a")
	if old == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	cur := h.renew(old)
	if code, body := h.register(old.withCert(old.cert.Certificate)); code != http.StatusOK {
		t.Fatalf("the previous certificate during the grace: %d %s", code, body)
	}
	h.clock.Advance(state.RenewGrace)
	if code, body := h.register(old.withCert(old.cert.Certificate)); code != http.StatusForbidden || !strings.Contains(body, "replaced") {
		t.Fatalf("the previous certificate after the grace: %d %s", code, body)
	}
	if code, body := h.register(cur); code != http.StatusOK {
		t.Fatalf("the current certificate: %d %s", code, body)
	}
}

func TestCertificatesOfADeletedNodeAreRefusedAfterReenrollment(t *testing.T) {
	h := newHarness(t)
	first, code, msg := h.enroll(h.token(1), "node-a")
	if first == nil {
		t.Fatalf("enroll: %d %s", code, msg)
	}
	renewed := h.renew(first)
	if code, body := h.register(renewed); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	if err := h.client().DeleteNode(context.Background(), "node-a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	again, code, msg := h.enroll(h.token(1), "node-a")
	if again == nil {
		t.Fatalf("enroll again: %d %s", code, msg)
	}
	for what, n := range map[string]*nodeClient{"pre-renewal": first, "post-renewal": renewed} {
		if code, body := h.register(n.withCert(n.cert.Certificate)); code != http.StatusForbidden {
			t.Errorf("the %s certificate of the deleted node-a, after node-a enrolled again: %d %s", what, code, body)
		}
	}
	if code, body := h.register(again); code != http.StatusOK {
		t.Errorf("the re-enrolled node: %d %s", code, body)
	}
}
