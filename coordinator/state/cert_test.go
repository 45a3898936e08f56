package state

import (
	"context"
	"strings"
	"testing"
)

// renew renews name's certificate over a connection that presented the
// certificate with serial presented, and returns the new serial.
func (e *env) renew(name, presented string) string {
	e.t.Helper()
	n, err := e.s.Renew(context.Background(), name, presented, e.sign)
	if err != nil {
		e.t.Fatal(err)
	}
	return n.CertSerial
}

func (e *env) accepts(name, serial string) error {
	_, err := e.s.NodeForCert(context.Background(), name, serial)
	return err
}

func TestRenewedCertificateExpiresAfterTheGrace(t *testing.T) {
	e := newEnv(t)
	e.token("t1", 1)
	old := e.enroll("t1", "node-a").CertSerial
	cur := e.renew("node-a", old)
	if err := e.accepts("node-a", old); err != nil {
		t.Fatalf("the previous certificate is refused during the grace: %v", err)
	}
	e.now = e.now.Add(RenewGrace)
	if err := e.accepts("node-a", old); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("the previous certificate after the grace: %v, want it refused as replaced", err)
	}
	if err := e.accepts("node-a", cur); err != nil {
		t.Fatalf("the current certificate: %v", err)
	}
}

func TestGraceEndsWhenTheNewCertificateIsUsed(t *testing.T) {
	e := newEnv(t)
	e.token("t1", 1)
	old := e.enroll("t1", "node-a").CertSerial
	cur := e.renew("node-a", old)
	if err := e.accepts("node-a", cur); err != nil {
		t.Fatal(err)
	}
	if err := e.accepts("node-a", old); err == nil {
		t.Fatal("the previous certificate is still accepted after the node used its new one")
	}
}

// A node whose renewal answer was lost renews again with the certificate
// it holds; the certificate it never received is refused from then on.
func TestRenewAgainAfterALostAnswer(t *testing.T) {
	e := newEnv(t)
	e.token("t1", 1)
	old := e.enroll("t1", "node-a").CertSerial
	lost := e.renew("node-a", old)
	e.now = e.now.Add(RenewGrace / 2)
	cur := e.renew("node-a", old)
	if err := e.accepts("node-a", lost); err == nil {
		t.Error("the certificate whose answer was lost is still accepted")
	}
	if err := e.accepts("node-a", old); err != nil {
		t.Errorf("the certificate the node holds, within the grace of the first renewal: %v", err)
	}
	// The second renewal did not extend the grace of the first.
	e.now = e.now.Add(RenewGrace / 2)
	if err := e.accepts("node-a", old); err == nil {
		t.Error("renewing again with the previous certificate extended its grace")
	}
	if err := e.accepts("node-a", cur); err != nil {
		t.Error(err)
	}
	// And the replaced certificates cannot renew.
	if _, err := e.s.Renew(context.Background(), "node-a", old, e.sign); err == nil {
		t.Error("a replaced certificate renewed")
	}
}

func TestCertificatesOfADeletedNodeStayRefusedAfterReenrollment(t *testing.T) {
	e := newEnv(t)
	e.token("t1", 2)
	first := e.enroll("t1", "node-a").CertSerial
	renewed := e.renew("node-a", first)
	if err := e.s.DeleteNode(context.Background(), "admin", "node-a"); err != nil {
		t.Fatal(err)
	}
	again := e.enroll("t1", "node-a").CertSerial
	for what, serial := range map[string]string{"pre-renewal": first, "post-renewal": renewed} {
		if err := e.accepts("node-a", serial); err == nil {
			t.Errorf("the %s certificate of the first node-a is accepted for the re-enrolled node-a", what)
		}
	}
	if err := e.accepts("node-a", again); err != nil {
		t.Errorf("the re-enrolled node's certificate: %v", err)
	}
}
