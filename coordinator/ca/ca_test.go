package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.test")
	otherTD = spiffeid.RequireTrustDomainFromString("other.test")
	t0      = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

func newCA(t *testing.T, td spiffeid.TrustDomain, clock ca.Clock) *ca.CA {
	t.Helper()
	c, err := ca.Open(filepath.Join(t.TempDir(), "ca"), td, clock)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c
}

// newCSR makes a key and a CSR for it that asks for identities the CA must
// ignore.
func newCSR(t *testing.T) ([]byte, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil, _ := url.Parse("spiffe://example.test/latch/coordinator")
	other, _ := url.Parse("spiffe://other.test/latch/node/admin")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"root"}},
		DNSNames:    []string{"coordinator.example.test"},
		IPAddresses: []net.IP{net.ParseIP("100.64.0.1")},
		URIs:        []*url.URL{evil, other},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func rootPool(c *ca.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Root())
	return p
}

func signNode(t *testing.T, c *ca.CA, name string, ttl time.Duration) (*x509svid.SVID, crypto.Signer) {
	t.Helper()
	csr, key := newCSR(t)
	svid, err := c.SignNode(csr, name, ttl)
	if err != nil {
		t.Fatalf("SignNode(%q): %v", name, err)
	}
	return svid, key
}

func TestOpenCreatesAndReopens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ca")
	clock := ca.NewFakeClock(t0)
	c, err := ca.Open(dir, td, clock)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for file, want := range map[string]os.FileMode{ca.KeyFile: 0o600, ca.CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %04o, want %04o", file, got, want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	root := c.Root()
	if !root.IsCA || !root.BasicConstraintsValid || !root.MaxPathLenZero {
		t.Errorf("root: IsCA=%v BasicConstraintsValid=%v MaxPathLenZero=%v", root.IsCA, root.BasicConstraintsValid, root.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; root.KeyUsage != want {
		t.Errorf("root key usage = %v, want %v", root.KeyUsage, want)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.test" {
		t.Errorf("root URIs = %v, want [spiffe://example.test]", root.URIs)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("root key is %T, want ECDSA", root.PublicKey)
	}
	if got := root.NotAfter.Sub(t0); got < 365*24*time.Hour*10-time.Hour || got > 3660*24*time.Hour {
		t.Errorf("root valid for %v after now, want about 10 years", got)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(c.Fingerprint()) {
		t.Errorf("Fingerprint() = %q", c.Fingerprint())
	}
	if c.TrustDomain() != td {
		t.Errorf("TrustDomain() = %v", c.TrustDomain())
	}
	if b := c.Bundle(); b.TrustDomain() != td || len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(root) {
		t.Errorf("Bundle() = %v %v", b.TrustDomain(), b.X509Authorities())
	}
	if _, err := c.GetX509BundleForTrustDomain(otherTD); err == nil {
		t.Error("GetX509BundleForTrustDomain(other.test) succeeded")
	}

	again, err := ca.Open(dir, td, clock)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if !again.Root().Equal(root) || again.Fingerprint() != c.Fingerprint() {
		t.Error("reopened CA has a different root")
	}
	// Certificates issued before a restart verify after it.
	svid, _ := signNode(t, c, "node-1", time.Hour)
	if name, _, err := again.VerifyNode(svid.Certificates); err != nil || name != "node-1" {
		t.Errorf("VerifyNode after reopen = %q, %v", name, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		td     spiffeid.TrustDomain
		want   string
	}{
		{"group readable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, ca.KeyFile), 0o640) }, td, "chmod 600"},
		{"world readable key", func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, ca.KeyFile), 0o604) }, td, "chmod 600"},
		{"missing cert", func(t *testing.T, dir string) { remove(t, filepath.Join(dir, ca.CertFile)) }, td, "restore ca.crt"},
		{"missing key", func(t *testing.T, dir string) { remove(t, filepath.Join(dir, ca.KeyFile)) }, td, "restore ca.key"},
		{"other trust domain", func(*testing.T, string) {}, otherTD, `trust domain "other.test"`},
		{"cert of another key", func(t *testing.T, dir string) {
			other := newCA(t, td, nil)
			pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Root().Raw})
			if err := os.WriteFile(filepath.Join(dir, ca.CertFile), pemCert, 0o644); err != nil {
				t.Fatal(err)
			}
		}, td, "does not match the private key"},
		{"garbage key", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, ca.KeyFile), []byte("nope"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, td, "no PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if _, err := ca.Open(dir, td, nil); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			_, err := ca.Open(dir, tc.td, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := ca.Open(t.TempDir(), spiffeid.TrustDomain{}, nil); err == nil {
		t.Error("Open with empty trust domain succeeded")
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestSignNode(t *testing.T) {
	clock := ca.NewFakeClock(t0)
	c := newCA(t, td, clock)
	svid, _ := signNode(t, c, "web-1", 2*time.Hour)

	wantID := spiffeid.RequireFromString("spiffe://example.test/latch/node/web-1")
	if svid.ID != wantID {
		t.Errorf("ID = %v, want %v", svid.ID, wantID)
	}
	if len(svid.Certificates) != 2 || !svid.Certificates[1].Equal(c.Root()) {
		t.Fatalf("chain has %d certificates, want leaf and root", len(svid.Certificates))
	}
	leaf := svid.Certificates[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID.String() {
		t.Errorf("leaf URIs = %v, want exactly [%v] (CSR SANs must be ignored)", leaf.URIs, wantID)
	}
	if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf copied SANs from the CSR: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	// No CN (curl falls back to it for a host name when there is no DNS
	// SAN) and client authentication only: a node's certificate must not
	// pass as a server, least of all as the coordinator.
	if leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "Latch" ||
		len(leaf.Subject.Names) != 1 {
		t.Errorf("leaf subject %q, want O=Latch and nothing else (not the CSR's, and no CN)", leaf.Subject)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf IsCA=%v KeyUsage=%v", leaf.IsCA, leaf.KeyUsage)
	}
	if got := leaf.ExtKeyUsage; len(got) != 1 || got[0] != x509.ExtKeyUsageClientAuth || len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("ExtKeyUsage = %v %v, want clientAuth only", got, leaf.UnknownExtKeyUsage)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: rootPool(c), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the node certificate verifies for server authentication")
	}
	if !leaf.NotBefore.Equal(t0.Add(-time.Minute)) || !leaf.NotAfter.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("validity %v .. %v, want now-1m .. now+2h", leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", leaf.SerialNumber)
	}
	if svid.PrivateKey != nil {
		t.Error("SignNode returned a private key")
	}

	// go-spiffe accepts it, against the CA as a source and against the bundle.
	for _, src := range []struct {
		name   string
		verify func() (spiffeid.ID, error)
	}{
		{"CA", func() (spiffeid.ID, error) {
			id, _, err := x509svid.Verify(svid.Certificates, c, x509svid.WithTime(t0))
			return id, err
		}},
		{"Bundle", func() (spiffeid.ID, error) {
			id, _, err := x509svid.Verify(svid.Certificates[:1], c.Bundle(), x509svid.WithTime(t0))
			return id, err
		}},
	} {
		id, err := src.verify()
		if err != nil || id != wantID {
			t.Errorf("x509svid.Verify with %s = %v, %v", src.name, id, err)
		}
	}

	other, _ := signNode(t, c, "web-1", time.Hour)
	if other.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two certificates got the same serial")
	}
}

func TestSignNodeTTLCappedByRoot(t *testing.T) {
	c := newCA(t, td, ca.NewFakeClock(t0))
	svid, _ := signNode(t, c, "n", 20*365*24*time.Hour)
	if got := svid.Certificates[0].NotAfter; got.After(c.Root().NotAfter) {
		t.Errorf("leaf NotAfter %v is after the root's %v", got, c.Root().NotAfter)
	}
}

func TestSignNodeRefuses(t *testing.T) {
	c := newCA(t, td, ca.NewFakeClock(t0))
	good, _ := newCSR(t)
	bad := append([]byte(nil), good...)
	bad[len(bad)-3] ^= 0xff // inside the signature
	if _, err := x509.ParseCertificateRequest(bad); err != nil {
		t.Fatalf("tampered CSR does not parse, test is broken: %v", err)
	}

	for _, tc := range []struct {
		name, node string
		csr        []byte
		ttl        time.Duration
		want       string
	}{
		{"bad signature", "n1", bad, time.Hour, "signature"},
		{"not a CSR", "n1", []byte("garbage"), time.Hour, "parsing CSR"},
		{"empty name", "", good, time.Hour, "empty node name"},
		{"upper case", "Node1", good, time.Hour, "invalid node name"},
		{"slash", "a/b", good, time.Hour, "invalid node name"},
		{"dot", "a.b", good, time.Hour, "invalid node name"},
		{"leading dash", "-a", good, time.Hour, "invalid node name"},
		{"trailing dash", "a-", good, time.Hour, "invalid node name"},
		{"too long", strings.Repeat("a", 64), good, time.Hour, "at most 63"},
		{"zero ttl", "n1", good, 0, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SignNode(tc.csr, tc.node, tc.ttl)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SignNode = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := c.SignNode(good, strings.Repeat("a", 63), time.Hour); err != nil {
		t.Errorf("63-character name refused: %v", err)
	}
}

func TestServerSVID(t *testing.T) {
	c := newCA(t, td, ca.NewFakeClock(t0))
	svid, err := c.ServerSVID([]string{"coord.example.test"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := svid.Certificates[0]
	if svid.ID.String() != "spiffe://example.test/latch/coordinator" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != svid.ID.String() {
		t.Errorf("ID %v, URIs %v", svid.ID, leaf.URIs)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "coord.example.test" || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if svid.PrivateKey == nil {
		t.Fatal("no private key")
	}
	// A complete go-spiffe SVID: key matches, chain verifies.
	certDER, keyDER, err := svid.MarshalRaw()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509svid.ParseRaw(certDER, keyDER); err != nil {
		t.Errorf("x509svid.ParseRaw: %v", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, c, x509svid.WithTime(t0)); err != nil {
		t.Errorf("x509svid.Verify: %v", err)
	}
}

func TestVerifyNode(t *testing.T) {
	clock := ca.NewFakeClock(t0)
	c := newCA(t, td, clock)
	node, _ := signNode(t, c, "db-7", time.Hour)
	coord, err := c.ServerSVID(nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := signNode(t, newCA(t, otherTD, clock), "db-7", time.Hour)
	impostor, _ := signNode(t, newCA(t, td, clock), "db-7", time.Hour) // same td, other key

	name, id, err := c.VerifyNode(node.Certificates)
	if err != nil || name != "db-7" || id.String() != "spiffe://example.test/latch/node/db-7" {
		t.Fatalf("VerifyNode = %q, %v, %v", name, id, err)
	}
	if name, _, err := c.VerifyNode(node.Certificates[:1]); err != nil || name != "db-7" {
		t.Errorf("VerifyNode(leaf only) = %q, %v", name, err)
	}

	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
		want  error
		msg   string
	}{
		{"expired", node.Certificates, t0.Add(time.Hour + time.Second), ca.ErrExpired, "must re-enroll with a new join token"},
		{"not yet valid", node.Certificates, t0.Add(-2 * time.Minute), ca.ErrNotYetValid, "check the clocks"},
		{"foreign trust domain", foreign.Certificates, t0, ca.ErrForeignTrustDomain, `"example.test"`},
		{"coordinator as node", coord.Certificates, t0, ca.ErrNotANode, "not a node identity"},
		{"other CA same trust domain", impostor.Certificates, t0, ca.ErrUntrusted, "not signed by this coordinator's CA"},
		{"impostor leaf with our root", []*x509.Certificate{impostor.Certificates[0], c.Root()}, t0, ca.ErrUntrusted, "not signed"},
		{"root as leaf", []*x509.Certificate{c.Root()}, t0, ca.ErrUntrusted, "CA"},
		{"no certificate", nil, t0, ca.ErrUntrusted, "no client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.Set(tc.at)
			defer clock.Set(t0)
			name, _, err := c.VerifyNode(tc.chain)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyNode = %q, %v; want %v", name, err, tc.want)
			}
			if name != "" {
				t.Errorf("name %q returned with error", name)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
}
