package pin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)

type keyCert struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func issue(t *testing.T, tmpl *x509.Certificate, parent *keyCert) keyCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
	}
	signer, parentCert := key, tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return keyCert{key, cert}
}

func newRoot(t *testing.T, uri string) keyCert {
	return issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "test CA"},
		URIs:                  []*url.URL{mustURL(t, uri)},
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil)
}

func newLeaf(t *testing.T, ca keyCert, uri string, eku x509.ExtKeyUsage) keyCert {
	return issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "leaf"},
		URIs:        []*url.URL{mustURL(t, uri)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{eku},
	}, &ca)
}

func TestVerify(t *testing.T) {
	root := newRoot(t, "spiffe://example.test")
	other := newRoot(t, "spiffe://example.test")
	notSpiffe := newRoot(t, "https://example.test")
	good := newLeaf(t, root, "spiffe://example.test/latch/coordinator", x509.ExtKeyUsageServerAuth)
	node := newLeaf(t, root, "spiffe://example.test/latch/node/n1", x509.ExtKeyUsageServerAuth)
	otherTD := newLeaf(t, root, "spiffe://other.test/latch/coordinator", x509.ExtKeyUsageServerAuth)
	clientOnly := newLeaf(t, root, "spiffe://example.test/latch/coordinator", x509.ExtKeyUsageClientAuth)
	forged := newLeaf(t, other, "spiffe://example.test/latch/coordinator", x509.ExtKeyUsageServerAuth)
	badCA := newLeaf(t, notSpiffe, "spiffe://example.test/latch/coordinator", x509.ExtKeyUsageServerAuth)
	want := Fingerprint(root.cert)

	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		fp    string
		at    time.Time
		err   string
	}{
		{"good", []*x509.Certificate{good.cert, root.cert}, want, now, ""},
		{"expired", []*x509.Certificate{good.cert, root.cert}, want, now.Add(2 * time.Hour), "expired"},
		{"leaf only", []*x509.Certificate{good.cert}, want, now, "sent no self-signed CA certificate"},
		{"other CA", []*x509.Certificate{forged.cert, other.cert}, want, now, "the token was made for another coordinator (want " + want + ", got " + Fingerprint(other.cert) + ")"},
		{"leaf of other CA with pinned root", []*x509.Certificate{forged.cert, root.cert}, want, now, "does not verify against its pinned CA"},
		{"root only", []*x509.Certificate{root.cert}, want, now, "only its CA certificate"},
		{"node, not coordinator", []*x509.Certificate{node.cert, root.cert}, want, now, "it is not the coordinator"},
		{"other trust domain", []*x509.Certificate{otherTD.cert, root.cert}, want, now, "want exactly spiffe://example.test/latch/coordinator"},
		{"client-only key usage", []*x509.Certificate{clientOnly.cert, root.cert}, want, now, "does not verify"},
		{"CA without SPIFFE ID", []*x509.Certificate{badCA.cert, notSpiffe.cert}, Fingerprint(notSpiffe.cert), now, "not a SPIFFE trust domain"},
		{"nothing", nil, want, now, "presented no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := verify(tc.chain, tc.fp, tc.at)
			if tc.err == "" {
				if err != nil || !ca.Equal(root.cert) {
					t.Fatalf("verify = %v, %v", ca, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("verify = %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestClientConfig(t *testing.T) {
	root := newRoot(t, "spiffe://example.test")
	leaf := newLeaf(t, root, "spiffe://example.test/latch/coordinator", x509.ExtKeyUsageServerAuth)
	state := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf.cert, root.cert}}
	fp := Fingerprint(root.cert)

	for _, f := range []string{fp, strings.TrimPrefix(fp, "sha256:"), strings.ToUpper(strings.TrimPrefix(fp, "sha256:"))} {
		cfg := ClientConfig(f)
		cfg.Time = func() time.Time { return now }
		if cfg.MinVersion != tls.VersionTLS13 || cfg.RootCAs != nil {
			t.Errorf("MinVersion %x, RootCAs %v", cfg.MinVersion, cfg.RootCAs)
		}
		if err := cfg.VerifyConnection(state); err != nil {
			t.Errorf("ClientConfig(%q) refused a good chain: %v", f, err)
		}
	}
	late := ClientConfig(fp)
	late.Time = func() time.Time { return now.Add(24 * time.Hour) }
	if err := late.VerifyConnection(state); err == nil {
		t.Error("expired serving certificate accepted: cfg.Time not honoured")
	}
	if err := ClientConfig("sha256:abcd").VerifyConnection(state); err == nil || !strings.Contains(err.Error(), "64 hex characters") {
		t.Errorf("malformed fingerprint: %v", err)
	}
	mismatch := ClientConfig(Fingerprint(newRoot(t, "spiffe://example.test").cert))
	mismatch.Time = func() time.Time { return now }
	if err := mismatch.VerifyConnection(state); !errors.Is(err, ErrMismatch) {
		t.Errorf("mismatch: %v, want ErrMismatch", err)
	}

	got, err := RootFromState(state, fp)
	if err != nil || !got.Equal(root.cert) {
		t.Errorf("RootFromState = %v, %v", got, err)
	}
	if _, err := RootFromState(tls.ConnectionState{}, fp); err == nil {
		t.Error("RootFromState of an empty state succeeded")
	}
}
