package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Reasons VerifyNode refuses a certificate. The returned errors wrap one of
// these and say what the node must do; match them with errors.Is.
var (
	// ErrUntrusted: no certificate, or one not signed by this CA.
	ErrUntrusted = errors.New("certificate not trusted")
	// ErrExpired: the certificate's NotAfter has passed.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: the certificate's NotBefore is in the future.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrForeignTrustDomain: the SPIFFE ID is in another trust domain.
	ErrForeignTrustDomain = errors.New("foreign trust domain")
	// ErrNotANode: the certificate has no SPIFFE ID of the form
	// spiffe://<td>/latch/node/<name>.
	ErrNotANode = errors.New("not a node identity")
)

// VerifyNode verifies a certificate chain a node presented (leaf first, as
// in tls.ConnectionState.PeerCertificates) and returns the node's name and
// SPIFFE ID. The leaf must be signed by this CA's root, be valid at the CA
// clock's now, and carry exactly one URI SAN spiffe://<td>/latch/node/<name>
// in this CA's trust domain. Certificates after the leaf are ignored: nodes
// are signed by the root directly.
//
// The identity of a node is what VerifyNode returns, never anything in a
// request body.
func (c *CA) VerifyNode(chain []*x509.Certificate) (name string, id spiffeid.ID, err error) {
	if len(chain) == 0 || chain[0] == nil {
		return "", spiffeid.ID{}, fmt.Errorf("%w: no client certificate: the node must present its SVID, or enroll with a join token first", ErrUntrusted)
	}
	leaf := chain[0]
	id, err = x509svid.IDFromCert(leaf)
	if err != nil {
		return "", spiffeid.ID{}, fmt.Errorf("%w: certificate %s has no valid SPIFFE ID: %v", ErrNotANode, describe(leaf), err)
	}
	if id.TrustDomain() != c.td {
		return "", id, fmt.Errorf("%w: certificate is for %s, this coordinator serves trust domain %q: enroll the node with a join token from this coordinator", ErrForeignTrustDomain, id, c.td.Name())
	}
	if err := leaf.CheckSignatureFrom(c.root); err != nil {
		return "", id, fmt.Errorf("%w: certificate for %s is not signed by this coordinator's CA (%s): %v; enroll the node again with a join token from this coordinator", ErrUntrusted, id, c.Fingerprint(), err)
	}
	now := c.clock.Now()
	if now.After(leaf.NotAfter) {
		return "", id, fmt.Errorf("%w: the node's certificate for %s expired at %s: it must re-enroll with a new join token", ErrExpired, id, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return "", id, fmt.Errorf("%w: the node's certificate for %s is valid only from %s (now %s): check the clocks of the coordinator and the node", ErrNotYetValid, id, leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	// The full SPIFFE and X.509 checks (not a CA, key usages, critical
	// extensions, root validity) on the leaf alone against our root.
	if _, _, err := x509svid.Verify(chain[:1], c, x509svid.WithTime(now)); err != nil {
		return "", id, fmt.Errorf("%w: certificate for %s: %v", ErrUntrusted, id, err)
	}
	name, ok := strings.CutPrefix(id.Path(), nodePathPrefix)
	if !ok || ValidateNodeName(name) != nil {
		return "", id, fmt.Errorf("%w: %s is not a node identity (want spiffe://%s%s<name>)", ErrNotANode, id, c.td.Name(), nodePathPrefix)
	}
	return name, id, nil
}

func describe(cert *x509.Certificate) string {
	return fmt.Sprintf("(subject %q, serial %x)", cert.Subject.String(), cert.SerialNumber)
}

// ServerTLSConfig returns the TLS 1.3 configuration for the coordinator's
// node listener. It presents svid (from ServerSVID) with its full chain,
// leaf and root, so that a node holding only a join token can pin the root
// by its fingerprint (see node/pin).
//
// Client certificates are requested but not required, so the enrollment
// endpoint works for a node that has no certificate yet. A certificate that
// is presented is verified during the handshake by VerifyNode (against the
// CA's clock), on every connection including resumed ones, and the
// handshake fails if it does not pass. The TLS layer cannot tell endpoints
// apart, so every endpoint other than enrollment MUST itself require a
// certificate and take the node's identity from it, e.g.
//
//	name, id, err := ca.VerifyNode(r.TLS.PeerCertificates) // ErrUntrusted if none
//
// It uses tls.RequestClientCert and VerifyConnection rather than
// tls.VerifyClientCertIfGiven: the latter would first run crypto/tls's own
// verification (wall clock, generic errors) before ours.
func (c *CA) ServerTLSConfig(svid *x509svid.SVID) *tls.Config {
	chain := make([][]byte, 0, len(svid.Certificates)+1)
	hasRoot := false
	for _, cert := range svid.Certificates {
		chain = append(chain, cert.Raw)
		hasRoot = hasRoot || cert.Equal(c.root)
	}
	if !hasRoot {
		chain = append(chain, c.root.Raw)
	}
	var leaf *x509.Certificate
	if len(svid.Certificates) > 0 {
		leaf = svid.Certificates[0]
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.root)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: chain,
			PrivateKey:  svid.PrivateKey,
			Leaf:        leaf,
		}},
		ClientAuth: tls.RequestClientCert,
		// Only advertised to clients as the acceptable issuer; crypto/tls
		// does not verify with it under RequestClientCert.
		ClientCAs: pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil // enrollment; other endpoints check for a certificate
			}
			_, _, err := c.VerifyNode(cs.PeerCertificates)
			return err
		},
	}
}
