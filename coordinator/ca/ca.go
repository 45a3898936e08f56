// Package ca is the coordinator's embedded SPIFFE certificate authority: it
// keeps the CA key and self-signed root on disk, signs short-lived node
// X.509-SVIDs (spiffe://<td>/latch/node/<name>) from CSRs, issues the
// coordinator's own serving SVID (spiffe://<td>/latch/coordinator), verifies
// the certificates nodes present over mTLS, and makes and parses the join
// tokens ("latch1.<id>.<secret>.<ca-hash>") that nodes enroll with.
//
// Only packages coordinator and coordinator/api, and tests (the CA of
// their test coordinators), import it: it holds the CA
// private key. Nodes use go-spiffe sources and the pinned enrollment
// handshake in node/pin.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/latchnet/latch/internal/atomicfile"
	"github.com/latchnet/latch/wire"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Files in the CA directory.
const (
	KeyFile  = "ca.key" // PKCS#8 PEM private key, mode 0600
	CertFile = "ca.crt" // PEM self-signed root certificate, mode 0644
)

const (
	rootValidity = 10 * 365 * 24 * time.Hour
	// backdate allows for clock skew between the coordinator and nodes.
	backdate = time.Minute

	nodePathPrefix  = "/latch/node/"
	coordinatorPath = "/latch/coordinator"
)

// CA is the coordinator's certificate authority for one trust domain. It is
// safe for concurrent use: after Open it holds only immutable state.
type CA struct {
	td     spiffeid.TrustDomain
	key    crypto.Signer
	root   *x509.Certificate
	bundle *x509bundle.Bundle
	clock  Clock
}

var _ x509bundle.Source = (*CA)(nil)

// Open loads the CA from dir, or creates it there on first start.
//
// dir holds ca.key (must not be readable by group or others) and ca.crt. If
// neither exists, Open creates dir (0700), an ECDSA P-256 key and a
// self-signed root valid for 10 years whose only URI SAN is spiffe://<td>.
// If only one of the two files exists, or the files do not belong together or
// to td, Open refuses rather than silently making a new CA, because a new CA
// would cut off every enrolled node. A nil clock means the system clock.
func Open(dir string, td spiffeid.TrustDomain, clock Clock) (*CA, error) {
	if td.IsZero() {
		return nil, errors.New("ca: empty trust domain: configure one, e.g. example.test")
	}
	if clock == nil {
		clock = SystemClock{}
	}
	keyPath := filepath.Join(dir, KeyFile)
	certPath := filepath.Join(dir, CertFile)
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	switch {
	case !keyExists && !certExists:
		return create(dir, td, clock)
	case keyExists && !certExists:
		return nil, fmt.Errorf("ca: %s exists but %s does not: restore %s from a backup, or remove %s to create a new CA (every node must then re-enroll)", keyPath, certPath, CertFile, keyPath)
	case !keyExists && certExists:
		return nil, fmt.Errorf("ca: %s exists but %s does not: restore %s from a backup, or remove %s to create a new CA (every node must then re-enroll)", certPath, keyPath, KeyFile, certPath)
	}
	return load(keyPath, certPath, td, clock)
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("ca: %w", err)
	}
}

func create(dir string, td spiffeid.TrustDomain, clock Clock) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generating key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Latch"}, CommonName: "Latch CA " + td.Name()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootValidity),
		URIs:                  []*url.URL{td.ID().URL()},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // nodes are signed by the root directly
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: creating root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parsing new root certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: encoding key: %w", err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: creating CA directory: %w", err)
	}
	// Key first: a crash in between leaves a key without a certificate,
	// which Open reports instead of overwriting.
	if err := atomicfile.Create(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Create(filepath.Join(dir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return newCA(td, key, root, clock), nil
}

func load(keyPath, certPath string, td spiffeid.TrustDomain, clock Clock) (*CA, error) {
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: %s is not a regular file", keyPath)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca: refusing CA key %s: it is readable or writable by group or others (mode %04o): run chmod 600 %s", keyPath, fi.Mode().Perm(), keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: reading %s: %w", keyPath, err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("ca: reading %s: no PEM CERTIFICATE block", certPath)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: reading %s: %w", certPath, err)
	}
	if err := checkRoot(root, key, td, clock.Now()); err != nil {
		return nil, fmt.Errorf("ca: %s: %w", certPath, err)
	}
	return newCA(td, key, root, clock), nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
}

// checkRoot makes sure a loaded root is a CA for td that belongs to key.
func checkRoot(root *x509.Certificate, key crypto.Signer, td spiffeid.TrustDomain, now time.Time) error {
	pub, ok := root.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("certificate does not match the private key in %s", KeyFile)
	}
	if !root.BasicConstraintsValid || !root.IsCA || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("not a CA certificate (needs basic constraints CA:TRUE and keyCertSign)")
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("not a self-signed root: %w", err)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != td.IDString() {
		return fmt.Errorf("not a CA for trust domain %q (URI SANs %v): the trust domain in the configuration must match the one the CA was created with", td.Name(), root.URIs)
	}
	if now.After(root.NotAfter) {
		return fmt.Errorf("root expired at %s: create a new CA (move %s and %s away) and re-enroll every node", root.NotAfter.UTC().Format(time.RFC3339), KeyFile, CertFile)
	}
	return nil
}

func newCA(td spiffeid.TrustDomain, key crypto.Signer, root *x509.Certificate, clock Clock) *CA {
	return &CA{
		td:     td,
		key:    key,
		root:   root,
		bundle: x509bundle.FromX509Authorities(td, []*x509.Certificate{root}),
		clock:  clock,
	}
}

// TrustDomain returns the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Root returns the CA's self-signed root certificate. Callers must not
// modify it.
func (c *CA) Root() *x509.Certificate { return c.root }

// Bundle returns the CA's X.509 bundle (its root, for its trust domain). The
// bundle is a copy: changing it does not change the CA.
func (c *CA) Bundle() *x509bundle.Bundle { return c.bundle.Clone() }

// GetX509BundleForTrustDomain implements x509bundle.Source: it returns the
// CA's bundle for its own trust domain and an error for any other.
func (c *CA) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return c.bundle.GetX509BundleForTrustDomain(td)
}

// Fingerprint returns "sha256:" and the lowercase hex SHA-256 of the root's
// DER SubjectPublicKeyInfo, the same hash kubeadm's
// --discovery-token-ca-cert-hash uses. It depends only on the CA key, so it
// survives re-issuing the root with the same key. Join tokens carry it so a
// node can pin the coordinator before it trusts anything else.
func (c *CA) Fingerprint() string { return SPKIFingerprint(c.root) }

// SPKIFingerprint returns "sha256:" + hex SHA-256 of cert's
// SubjectPublicKeyInfo.
func SPKIFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ValidateNodeName reports whether name can be a node name: a DNS-1123 label
// (1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter
// or digit).
func ValidateNodeName(name string) error { return wire.CheckNodeName(name) }

// NodeID returns spiffe://<td>/latch/node/<name>.
func (c *CA) NodeID(name string) (spiffeid.ID, error) {
	if err := ValidateNodeName(name); err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(c.td, nodePathPrefix+name)
}

// CoordinatorID returns spiffe://<td>/latch/coordinator, the SPIFFE ID of
// the coordinator's serving certificate.
func (c *CA) CoordinatorID() spiffeid.ID {
	id, err := spiffeid.FromPath(c.td, coordinatorPath)
	if err != nil {
		panic(err) // constant path; cannot fail
	}
	return id
}

// SignNode checks the signature of the DER CSR and issues a node X.509-SVID
// for spiffe://<td>/latch/node/<name>, valid from now-1m until now+ttl (but
// never past the root's expiry), with a random 128-bit serial, key usage
// digitalSignature and the extended key usage clientAuth only.
//
// A node certificate is for client authentication and nothing else: no
// serverAuth and no common name, so that it cannot pass as a server. curl
// (OpenSSL) takes the CN as the host name when a certificate has no DNS or
// IP SAN, so a node enrolled as "coord" or "localhost" could otherwise serve
// the install script for a coordinator reached by that name. The subject is
// O=Latch only, as the X.509-SVID specification allows; the SPIFFE ID is the
// URI SAN. Nodes never serve TLS with it (the coordinator is the only
// server; node-to-node traffic is WireGuard).
//
// Everything in the CSR except its public key is ignored: the identity comes
// only from name, which the caller took from a verified join token or
// certificate. The returned SVID has no private key (the node keeps it);
// Certificates is [leaf, root].
func (c *CA) SignNode(csrDER []byte, name string, ttl time.Duration) (*x509svid.SVID, error) {
	id, err := c.NodeID(name)
	if err != nil {
		return nil, fmt.Errorf("ca: signing node: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("ca: signing node %s: parsing CSR: %w", name, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: signing node %s: CSR signature is invalid (the node must sign the CSR with the key it asks a certificate for): %w", name, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: signing node %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Latch"}},
		URIs:        []*url.URL{id.URL()},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leaf, err := c.issue(tmpl, csr.PublicKey, ttl)
	if err != nil {
		return nil, fmt.Errorf("ca: signing node %s: %w", name, err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf, c.root}}, nil
}

// ServerSVID makes a new ECDSA P-256 key and issues the coordinator's own
// serving X.509-SVID for it: URI SAN spiffe://<td>/latch/coordinator plus the
// given DNS names and IP addresses, extended key usage serverAuth, valid
// until now+ttl. Certificates is [leaf, root]; the root must be sent in the
// handshake so that a node holding only a join token can pin it.
func (c *CA) ServerSVID(dnsNames []string, ips []net.IP, ttl time.Duration) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: server SVID: generating key: %w", err)
	}
	for _, n := range dnsNames {
		if n == "" {
			return nil, errors.New("ca: server SVID: empty DNS name")
		}
	}
	id := c.CoordinatorID()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"Latch"}, CommonName: "latch coordinator"},
		URIs:        []*url.URL{id.URL()},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leaf, err := c.issue(tmpl, key.Public(), ttl)
	if err != nil {
		return nil, fmt.Errorf("ca: server SVID: %w", err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf, c.root}, PrivateKey: key}, nil
}

// issue fills in serial and validity, signs tmpl with the CA key and parses
// the result.
func (c *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, ttl time.Duration) (*x509.Certificate, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("ttl %s must be positive", ttl)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(ttl)
	if tmpl.NotAfter.After(c.root.NotAfter) {
		tmpl.NotAfter = c.root.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// checkPublicKey accepts the key types and sizes a node may use.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s is not allowed: use P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too short: use at least 2048 bits, or ECDSA P-256", k.N.BitLen())
		}
	default:
		return fmt.Errorf("public key type %T is not allowed: use ECDSA P-256", pub)
	}
	return nil
}

// newSerial returns a random, positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("ca: serial number: %w", err)
	}
	s := new(big.Int).SetBytes(b)
	if s.Sign() == 0 {
		s.SetInt64(1)
	}
	return s, nil
}
