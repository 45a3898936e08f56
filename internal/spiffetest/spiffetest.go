// Package spiffetest stands in for a SPIRE server's CA in unit tests: a CA
// of one trust domain that issues X.509 SVIDs. The end-to-end tests use a
// real SPIRE server (e2e, `make e2e-spire`). Only tests import it.
package spiffetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA is a self-signed CA for TD, valid from an hour ago for a day.
type CA struct {
	TD   spiffeid.TrustDomain
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a CA for the trust domain td (such as "spire.test").
func NewCA(tb testing.TB, td string) *CA {
	tb.Helper()
	trust := spiffeid.RequireTrustDomainFromString(td)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spire"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, URIs: []*url.URL{trust.ID().URL()}, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{TD: trust, Cert: c, Key: key}
}

// Issue signs an X.509 SVID for id valid for ttl, as a SPIRE agent hands
// one to a workload (client and server authentication).
func (ca *CA) Issue(tb testing.TB, id string, ttl time.Duration) *x509svid.SVID {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sid := spiffeid.RequireFromString(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(ttl), URIs: []*url.URL{sid.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &x509svid.SVID{ID: sid, Certificates: []*x509.Certificate{c}, PrivateKey: key}
}

// Bundle is the CA as the trust domain's X.509 bundle.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.TD, []*x509.Certificate{ca.Cert})
}

// Static is an x509svid.Source that always returns SVID.
type Static struct{ SVID *x509svid.SVID }

var _ x509svid.Source = Static{}

// GetX509SVID implements x509svid.Source.
func (s Static) GetX509SVID() (*x509svid.SVID, error) { return s.SVID, nil }
