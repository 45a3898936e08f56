package spiffetrust

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, td string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://" + td)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) leaf(t *testing.T, id string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter,
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("spire.test")
	ca, other := newCA(t, "spire.test"), newCA(t, "spire.test")
	path := filepath.Join(t.TempDir(), "bundle.pem")
	writePEM(t, path, ca.cert)
	src, err := NewFileSource(td, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Trust{TD: td, Bundles: src}
	now := time.Now()
	good := ca.leaf(t, "spiffe://spire.test/node/a", now.Add(time.Hour))
	id, err := tr.Verify([]*x509.Certificate{good}, now)
	if err != nil || id.String() != "spiffe://spire.test/node/a" {
		t.Fatalf("Verify(good) = %v, %v", id, err)
	}
	for name, chain := range map[string][]*x509.Certificate{
		"none":         nil,
		"other CA":     {other.leaf(t, "spiffe://spire.test/node/a", now.Add(time.Hour))},
		"other domain": {newCA(t, "x.test").leaf(t, "spiffe://x.test/node/a", now.Add(time.Hour))},
		"expired":      {ca.leaf(t, "spiffe://spire.test/node/a", now.Add(-time.Second))},
	} {
		if _, err := tr.Verify(chain, now); !errors.Is(err, ErrUntrusted) {
			t.Errorf("Verify(%s) = %v, want ErrUntrusted", name, err)
		}
	}
}

// TestFileSourceReload replaces the bundle file (a SPIRE CA rotation) and
// waits for Watch to pick up the new one; a broken file keeps the last
// good bundle.
func TestFileSourceReload(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("spire.test")
	ca1, ca2 := newCA(t, "spire.test"), newCA(t, "spire.test")
	path := filepath.Join(t.TempDir(), "bundle.pem")
	writePEM(t, path, ca1.cert)
	src, err := NewFileSource(td, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Trust{TD: td, Bundles: src}
	now := time.Now()
	leaf2 := []*x509.Certificate{ca2.leaf(t, "spiffe://spire.test/n", now.Add(time.Hour))}
	if _, err := tr.Verify(leaf2, now); err == nil {
		t.Fatal("a certificate of the second CA verified before the bundle named it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Watch(ctx, 10*time.Millisecond)

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	writePEM(t, path, ca1.cert, ca2.cert)
	// The modification time may not move within the clock's granularity.
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	waitFor("the reloaded bundle", func() bool { _, err := tr.Verify(leaf2, now); return err == nil })

	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := future.Add(time.Minute)
	os.Chtimes(path, later, later)
	time.Sleep(100 * time.Millisecond) // several polls; the last good bundle must stay
	if _, err := tr.Verify(leaf2, now); err != nil {
		t.Fatalf("a broken file replaced the last good bundle: %v", err)
	}

	if _, err := NewFileSource(td, filepath.Join(t.TempDir(), "missing.pem"), nil); err == nil {
		t.Error("NewFileSource accepted a missing file")
	}
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("x.test")); err == nil {
		t.Error("a bundle for another trust domain")
	}
}
