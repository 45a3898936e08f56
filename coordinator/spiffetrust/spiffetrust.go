// Package spiffetrust lets the coordinator trust a SPIRE deployment beside
// its own CA: it verifies the X.509-SVIDs that SPIRE issued to nodes
// against SPIRE's trust bundle, taken from any x509bundle.Source (the
// coordinator's own SPIRE agent through the Workload API, or a PEM file
// that FileSource reloads when it changes).
//
// Only packages coordinator and coordinator/api, and tests, import it.
package spiffetrust

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrUntrusted wraps every refusal of Verify.
var ErrUntrusted = errors.New("SPIFFE certificate not trusted")

// Trust is a trusted SPIRE trust domain.
type Trust struct {
	TD      spiffeid.TrustDomain
	Bundles x509bundle.Source
}

// Verify verifies a certificate chain a node presented (leaf first, as in
// tls.ConnectionState.PeerCertificates) against the trust domain's current
// bundle at now and returns the leaf's SPIFFE ID.
func (t *Trust) Verify(chain []*x509.Certificate, now time.Time) (spiffeid.ID, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if id.TrustDomain() != t.TD {
		return id, fmt.Errorf("%w: %s is not in the SPIRE trust domain %q", ErrUntrusted, id, t.TD.Name())
	}
	if _, _, err := x509svid.Verify(chain, t.Bundles, x509svid.WithTime(now)); err != nil {
		return id, fmt.Errorf("%w: the SVID %s does not verify against SPIRE's trust bundle for %q (expired, or the bundle is stale?): %v", ErrUntrusted, id, t.TD.Name(), err)
	}
	return id, nil
}
