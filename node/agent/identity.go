package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/latchnet/latch/wire"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const (
	nodePathPrefix  = "/latch/node/"
	coordinatorPath = "/latch/coordinator"
)

// identity is the node's SVID with its key and the trust bundle it was
// issued under. It is immutable once made.
type identity struct {
	chain  []*x509.Certificate // leaf first
	key    crypto.Signer
	bundle []*x509.Certificate
	svid   *x509svid.SVID
	name   string // the node name in the SPIFFE ID
}

// newIdentity checks that chain and key belong together, that the leaf is
// a node SVID spiffe://<td>/latch/node/<name> and that it chains to the
// bundle. Validity in time is not checked here: an expired SVID is still
// the node's identity (renewal and the coordinator decide what it is worth).
func newIdentity(chain []*x509.Certificate, key crypto.Signer, bundle []*x509.Certificate) (*identity, error) {
	if len(chain) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	if len(bundle) == 0 {
		return nil, errors.New("empty trust bundle")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	var raw []byte
	for _, c := range chain {
		raw = append(raw, c.Raw...)
	}
	svid, err := x509svid.ParseRaw(raw, keyDER)
	if err != nil {
		return nil, err
	}
	name, ok := strings.CutPrefix(svid.ID.Path(), nodePathPrefix)
	if !ok || validateName(name) != nil {
		return nil, fmt.Errorf("SPIFFE ID %s is not a node identity (want spiffe://<td>%s<name>)", svid.ID, nodePathPrefix)
	}
	b := x509bundle.FromX509Authorities(svid.ID.TrustDomain(), bundle)
	leaf := chain[0]
	if _, _, err := x509svid.Verify(chain, b, x509svid.WithTime(leaf.NotBefore)); err != nil {
		return nil, fmt.Errorf("SVID does not chain to the trust bundle: %w", err)
	}
	return &identity{chain: chain, key: key, bundle: bundle, svid: svid, name: name}, nil
}

// fromResponse makes an identity from the coordinator's answer and the key
// the CSR was made with.
func fromResponse(resp *wire.SVIDResponse, key crypto.Signer) (*identity, error) {
	parse := func(what string, ders [][]byte) ([]*x509.Certificate, error) {
		out := make([]*x509.Certificate, 0, len(ders))
		for i, der := range ders {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("%s certificate %d: %w", what, i, err)
			}
			out = append(out, c)
		}
		return out, nil
	}
	chain, err := parse("chain", resp.Chain)
	if err != nil {
		return nil, err
	}
	bundle, err := parse("bundle", resp.Bundle)
	if err != nil {
		return nil, err
	}
	if len(chain) > 0 && !chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		return nil, errors.New("the certificate is not for the key the node asked for")
	}
	return newIdentity(chain, key, bundle)
}

func (id *identity) spiffeID() spiffeid.ID             { return id.svid.ID }
func (id *identity) notAfter() time.Time               { return id.chain[0].NotAfter }
func (id *identity) trustDomain() spiffeid.TrustDomain { return id.svid.ID.TrustDomain() }

// coordinatorID is spiffe://<td>/latch/coordinator for the node's trust
// domain.
func (id *identity) coordinatorID() spiffeid.ID {
	cid, err := spiffeid.FromPath(id.trustDomain(), coordinatorPath)
	if err != nil {
		panic(err) // constant path
	}
	return cid
}

// newKeyAndCSR makes an ECDSA P-256 key and a CSR for it (DER). The
// coordinator takes only the public key from the CSR.
func newKeyAndCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating SVID key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making CSR: %w", err)
	}
	return key, csr, nil
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// source serves the current identity to go-spiffe's TLS configuration;
// swap replaces it for every later handshake.
type source struct {
	mu sync.RWMutex
	id *identity // guarded by mu
}

var (
	_ x509svid.Source   = (*source)(nil)
	_ x509bundle.Source = (*source)(nil)
)

func (s *source) get() *identity {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.id
}

func (s *source) swap(id *identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id = id
}

// GetX509SVID implements x509svid.Source.
func (s *source) GetX509SVID() (*x509svid.SVID, error) {
	return s.get().svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source: the saved
// bundle, for the node's own trust domain only.
func (s *source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	id := s.get()
	if td != id.trustDomain() {
		return nil, fmt.Errorf("no trust bundle for trust domain %q (the node is in %q)", td.Name(), id.trustDomain().Name())
	}
	return x509bundle.FromX509Authorities(td, id.bundle), nil
}
