// Package pin makes the TLS client configuration for a node's first call to
// the coordinator, when all it has is a join token: instead of system roots
// it trusts exactly the coordinator CA whose SubjectPublicKeyInfo hash the
// token carries (as kubeadm's discovery token CA cert hash does), and checks
// that the server is that CA's coordinator (SPIFFE ID
// spiffe://<td>/latch/coordinator).
//
// Only package node/agent, and tests (whose test coordinators enroll
// nodes), import it. It uses only the standard library and imports no
// coordinator package.
package pin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

const (
	prefix          = "sha256:"
	coordinatorPath = "/latch/coordinator"
)

// ErrMismatch is wrapped by the error a handshake fails with when the
// coordinator's CA is not the one the token was made for.
var ErrMismatch = errors.New("coordinator CA fingerprint mismatch")

// Fingerprint returns "sha256:" + lowercase hex SHA-256 of cert's DER
// SubjectPublicKeyInfo.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return prefix + hex.EncodeToString(sum[:])
}

// ClientConfig returns a TLS 1.3 client configuration that trusts only the
// coordinator CA with the given fingerprint ("sha256:<hex>" or bare hex, as
// in a join token). During the handshake it requires that the server's
// chain contains a self-signed CA certificate with that fingerprint, that
// the leaf chains to it, is valid now (cfg.Time if set) for server
// authentication, and carries exactly the SPIFFE ID
// spiffe://<td>/latch/coordinator, where <td> is the trust domain in the CA's
// URI SAN. Host names and IP addresses are not checked: the SPIFFE ID under
// the pinned CA is the coordinator's identity.
//
// Session resumption is off (no ClientSessionCache), so every connection is
// verified in full. Callers may set Certificates (for a node's SVID) and
// ServerName on the returned config.
func ClientConfig(fingerprint string) *tls.Config {
	want, fpErr := normalize(fingerprint)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The standard verification (system roots, host name) is replaced by
		// VerifyConnection below, which runs on every connection.
		InsecureSkipVerify: true,
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if fpErr != nil {
			return fpErr
		}
		now := time.Now()
		if cfg.Time != nil {
			now = cfg.Time()
		}
		_, err := verify(cs.PeerCertificates, want, now)
		return err
	}
	return cfg
}

// RootFromState returns the coordinator CA certificate that a handshake made
// with ClientConfig(fingerprint) saw, so that the node can save it as its
// trust bundle after enrolling. It checks the fingerprint again, so a state
// from any other connection yields an error, never an unpinned root.
func RootFromState(cs tls.ConnectionState, fingerprint string) (*x509.Certificate, error) {
	want, err := normalize(fingerprint)
	if err != nil {
		return nil, err
	}
	ca, err := findCA(cs.PeerCertificates, want)
	if err != nil {
		return nil, err
	}
	return ca, nil
}

func normalize(fp string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(fp), prefix))
	if len(h) != 2*sha256.Size {
		return "", fmt.Errorf("pin: coordinator CA fingerprint must be sha256: and %d hex characters, got %d characters", 2*sha256.Size, len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", errors.New("pin: coordinator CA fingerprint is not hexadecimal")
	}
	return prefix + h, nil
}

// findCA returns the self-signed CA certificate in certs whose fingerprint
// is want.
func findCA(certs []*x509.Certificate, want string) (*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("pin: the coordinator presented no certificate")
	}
	var got []string
	for _, c := range certs {
		if !isSelfSignedCA(c) {
			continue
		}
		fp := Fingerprint(c)
		if subtle.ConstantTimeCompare([]byte(fp), []byte(want)) == 1 {
			return c, nil
		}
		got = append(got, fp)
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("%w: the coordinator sent no self-signed CA certificate with its own (want %s, got sha256 of its last certificate %s); the coordinator must send its full chain", ErrMismatch, want, Fingerprint(certs[len(certs)-1]))
	}
	return nil, fmt.Errorf("%w: the token was made for another coordinator (want %s, got %s)", ErrMismatch, want, strings.Join(got, ", "))
}

func isSelfSignedCA(c *x509.Certificate) bool {
	return c.BasicConstraintsValid && c.IsCA &&
		string(c.RawSubject) == string(c.RawIssuer) &&
		c.CheckSignatureFrom(c) == nil
}

// verify checks a server chain against the pinned CA and returns the CA.
func verify(certs []*x509.Certificate, want string, now time.Time) (*x509.Certificate, error) {
	ca, err := findCA(certs, want)
	if err != nil {
		return nil, err
	}
	td, err := trustDomain(ca)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if leaf.Equal(ca) {
		return nil, errors.New("pin: the coordinator presented only its CA certificate, no serving certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if !c.Equal(ca) {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("pin: the coordinator's certificate does not verify against its pinned CA %s: %w", want, err)
	}
	wantID := "spiffe://" + td + coordinatorPath
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID {
		return nil, fmt.Errorf("pin: the server's certificate has URI SANs %v, want exactly %s: it is not the coordinator", leaf.URIs, wantID)
	}
	return ca, nil
}

// trustDomain returns the trust domain name in the CA's only URI SAN,
// spiffe://<td>.
func trustDomain(ca *x509.Certificate) (string, error) {
	if len(ca.URIs) != 1 {
		return "", fmt.Errorf("pin: the coordinator CA has %d URI SANs, want exactly one spiffe://<trust-domain>", len(ca.URIs))
	}
	u := ca.URIs[0]
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.Port() != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" ||
		u.Host != strings.ToLower(u.Host) {
		return "", fmt.Errorf("pin: the coordinator CA's URI SAN %q is not a SPIFFE trust domain spiffe://<trust-domain>", u)
	}
	return u.Host, nil
}
