package ca_test

import (
	"crypto"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/latchnet/latch/coordinator/ca"
	"github.com/latchnet/latch/node/pin"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type handshakeResult struct {
	server    tls.ConnectionState
	serverErr error
	client    tls.ConnectionState
	clientErr error
}

// handshake runs one TLS connection over loopback TCP between the two
// configurations; the server writes "ok" once its handshake succeeds and the
// client reads it, so a refusal by the server reaches the client too.
func handshake(t *testing.T, srv, cli *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	type side struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		s := tls.Server(c, srv)
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte("ok"))
		}
		done <- side{s.ConnectionState(), err}
	}()

	var r handshakeResult
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(deadline)
	cl := tls.Client(c, cli)
	r.clientErr = cl.Handshake()
	if r.clientErr == nil {
		buf := make([]byte, 2)
		_, r.clientErr = io.ReadFull(cl, buf)
	}
	r.client = cl.ConnectionState()
	cl.Close()

	select {
	case s := <-done:
		r.server, r.serverErr = s.state, s.err
	case <-time.After(10 * time.Second):
		t.Fatal("server side of the handshake did not finish")
	}
	return r
}

func serverConfig(t *testing.T, c *ca.CA) *tls.Config {
	t.Helper()
	svid, err := c.ServerSVID([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c.ServerTLSConfig(svid)
}

// withClientCert makes cfg always send svid, also when the server names
// other acceptable CAs (crypto/tls would otherwise quietly send nothing).
func withClientCert(cfg *tls.Config, svid *x509svid.SVID, key crypto.Signer) *tls.Config {
	cert := &tls.Certificate{Certificate: [][]byte{svid.Certificates[0].Raw}, PrivateKey: key, Leaf: svid.Certificates[0]}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	return cfg
}

func TestPinnedEnrollmentHandshake(t *testing.T) {
	c := newCA(t, td, nil)
	r := handshake(t, serverConfig(t, c), pin.ClientConfig(c.Fingerprint()))
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	if r.server.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", r.server.Version)
	}
	if len(r.server.PeerCertificates) != 0 {
		t.Error("server saw a client certificate")
	}
	if _, _, err := c.VerifyNode(r.server.PeerCertificates); !errors.Is(err, ca.ErrUntrusted) {
		t.Errorf("VerifyNode without a certificate = %v, want ErrUntrusted", err)
	}
	// The bare hex form from a token works too.
	tok, _, err := ca.NewToken(c.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ca.ParseToken(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, serverConfig(t, c), pin.ClientConfig(strings.TrimPrefix(parsed.CAFingerprint, "sha256:"))); r.clientErr != nil {
		t.Errorf("handshake with the token's fingerprint: %v", r.clientErr)
	}

	root, err := pin.RootFromState(r.client, c.Fingerprint())
	if err != nil || !root.Equal(c.Root()) {
		t.Errorf("RootFromState = %v, %v; want the CA root", root, err)
	}
	other := newCA(t, td, nil)
	if _, err := pin.RootFromState(r.client, other.Fingerprint()); !errors.Is(err, pin.ErrMismatch) {
		t.Errorf("RootFromState with another fingerprint = %v, want ErrMismatch", err)
	}
}

func TestPinnedHandshakeWrongFingerprint(t *testing.T) {
	c := newCA(t, td, nil)
	other := newCA(t, td, nil)
	r := handshake(t, serverConfig(t, c), pin.ClientConfig(other.Fingerprint()))
	if !errors.Is(r.clientErr, pin.ErrMismatch) {
		t.Fatalf("client error = %v, want ErrMismatch", r.clientErr)
	}
	want := "coordinator CA fingerprint mismatch: the token was made for another coordinator (want " + other.Fingerprint() + ", got " + c.Fingerprint() + ")"
	if !strings.Contains(r.clientErr.Error(), want) {
		t.Errorf("client error %q\nwant it to contain %q", r.clientErr, want)
	}
	if r.serverErr == nil {
		t.Error("server handshake succeeded although the client refused")
	}
}

func TestPinnedHandshakeRefusesNodeAsServer(t *testing.T) {
	// A node SVID signed by the right CA is not the coordinator.
	c := newCA(t, td, nil)
	node, key := signNode(t, c, "n1", time.Hour)
	node.PrivateKey = key
	r := handshake(t, c.ServerTLSConfig(node), pin.ClientConfig(c.Fingerprint()))
	// Its certificate is for client authentication only, and its SPIFFE
	// ID is not the coordinator's (node/pin's tests check the ID alone).
	if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), "incompatible key usage") {
		t.Fatalf("client error = %v, want it to refuse a certificate not made for serving", r.clientErr)
	}
}

func TestMTLSHandshakeVerifiesNode(t *testing.T) {
	clock := ca.NewFakeClock(time.Now())
	c := newCA(t, td, clock)
	srv := serverConfig(t, c)
	node, key := signNode(t, c, "node-1", time.Hour)

	r := handshake(t, srv, withClientCert(pin.ClientConfig(c.Fingerprint()), node, key))
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	name, id, err := c.VerifyNode(r.server.PeerCertificates)
	if err != nil || name != "node-1" || id != node.ID {
		t.Errorf("VerifyNode(peer certificates) = %q, %v, %v", name, id, err)
	}

	// Plain tls.Config.Certificates is chosen by crypto/tls because the
	// server advertises our root as acceptable issuer.
	plain := pin.ClientConfig(c.Fingerprint())
	plain.Certificates = []tls.Certificate{{Certificate: [][]byte{node.Certificates[0].Raw}, PrivateKey: key}}
	if r := handshake(t, srv, plain); r.serverErr != nil || len(r.server.PeerCertificates) != 1 {
		t.Errorf("handshake with Certificates: %v, %d peer certificates", r.serverErr, len(r.server.PeerCertificates))
	}

	impostor, ikey := signNode(t, newCA(t, td, clock), "node-1", time.Hour)
	foreign, fkey := signNode(t, newCA(t, otherTD, clock), "node-1", time.Hour)
	coord, err := c.ServerSVID(nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		advance time.Duration
		want    error
	}{
		{"expired", withClientCert(pin.ClientConfig(c.Fingerprint()), node, key), 2 * time.Hour, ca.ErrExpired},
		{"other CA same trust domain", withClientCert(pin.ClientConfig(c.Fingerprint()), impostor, ikey), 0, ca.ErrUntrusted},
		{"foreign trust domain", withClientCert(pin.ClientConfig(c.Fingerprint()), foreign, fkey), 0, ca.ErrForeignTrustDomain},
		{"coordinator certificate", withClientCert(pin.ClientConfig(c.Fingerprint()), coord, coord.PrivateKey), 0, ca.ErrNotANode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			defer clock.Advance(-tc.advance)
			r := handshake(t, srv, tc.cfg)
			if !errors.Is(r.serverErr, tc.want) {
				t.Fatalf("server error = %v, want %v", r.serverErr, tc.want)
			}
			if r.clientErr == nil {
				t.Error("client did not notice that the server refused it")
			}
		})
	}
}
